"""Statistics on synthetic tables: planted effects are found, null effects stay near alpha."""

import numpy as np
import pandas as pd
import pytest

from analysis import stats
from analysis.compare import compare, regress


def synthetic(effects: dict, n_prompts=40, n_seeds=4, noise=0.5, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    prompt_effect = rng.normal(0, 1.0, n_prompts)
    for p in range(n_prompts):
        for s in range(n_seeds):
            for level, effect in effects.items():
                rows.append({"task_id": f"{p}-{s}-{level}", "status": "ok", "model": "m",
                             "prompt_key": f"p{p}", "prompt": f"prompt {p} {level}",
                             "negative_prompt": "", "seed": s, "sampler": "Euler a", "steps": 28,
                             "cfg": 7.0, "width": 832, "height": 1216, "strategy": level,
                             "score": prompt_effect[p] + effect + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def test_planted_effect_is_found_with_the_right_sign_and_a_covering_ci():
    df = synthetic({"a": 0.0, "b": 0.3, "c": -0.25, "d": 0.0})
    out = compare(df, "strategy", ["score"], {"score": True}, ["strategy"]).set_index("level")
    assert list(out.index) == ["b", "c", "d"] and (out.reference == "a").all()
    assert out.loc["b", "verdict"] == "better" and out.loc["c", "verdict"] == "worse"
    assert out.loc["b", "ci_low"] < 0.3 < out.loc["b", "ci_high"]
    assert out.loc["c", "ci_low"] < -0.25 < out.loc["c", "ci_high"]
    assert out.loc["b", "n_pairs"] == 160 and out.loc["b", "n_prompts"] == 40
    assert out.loc["b", "win_rate"] > 0.55 and out.loc["c", "win_rate"] < 0.45
    assert out.loc["d", "verdict"] == "no difference"
    # lower-is-better flips the verdicts
    flipped = compare(df, "strategy", ["score"], {"score": False}, ["strategy"]).set_index("level")
    assert flipped.loc["b", "verdict"] == "worse" and flipped.loc["c", "verdict"] == "better"


def test_no_effect_keeps_false_verdicts_near_the_nominal_level():
    flagged = 0
    n = 200
    for i in range(n):
        df = synthetic({"a": 0.0, "b": 0.0}, n_prompts=20, n_seeds=2, seed=1000 + i)
        out = compare(df, "strategy", ["score"], {"score": True}, ["strategy"])
        flagged += out.verdict.iloc[0] != "no difference"
    assert flagged / n <= 0.09  # nominal 5%; binomial noise over 200 datasets


def test_bootstrap_resamples_prompts_not_images():
    # one prompt with a huge shift: a CI over images would be narrow, over prompts it is wide
    rng = np.random.default_rng(0)
    diff = np.concatenate([np.full(100, 5.0), rng.normal(0, 0.01, 100)])
    clusters = np.array(["p0"] * 100 + [f"p{i}" for i in range(1, 101)])
    low, high = stats.cluster_bootstrap_ci(diff, clusters)
    assert low < 0.5 and high > 3.0  # p0 drawn 0 times -> ~0; drawn 3 times -> ~3.8
    img_low, img_high = stats.cluster_bootstrap_ci(diff, np.arange(200))
    assert img_high - img_low < 1.5 < high - low


def test_holm():
    p = [0.01, 0.04, 0.03, 0.005]
    assert np.allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])


def test_regression_verdicts_and_margin():
    base = synthetic({"x": 0.0})
    worse = base.assign(score=base.score - 0.4, model="candidate")
    out = regress(base, worse, ["score"], {"score": True}, ["strategy"])
    assert out[out.scope == "all"].verdict.iloc[0] == "regressed"
    assert out[out.scope == "all"].delta.iloc[0] == pytest.approx(-0.4)
    assert regress(base, worse, ["score"], {"score": True}, ["strategy"], margin=1.0) \
        .verdict.iloc[0] == "no regression"
    same = base.assign(model="candidate")
    assert regress(base, same, ["score"], {"score": True}, []).verdict.iloc[0] == "no regression"
    better = base.assign(score=base.score + 0.4)
    assert regress(base, better, ["score"], {"score": True}, []).verdict.iloc[0] == "improved"
    assert regress(base, better, ["score"], {"score": False}, []).verdict.iloc[0] == "regressed"
