"""Statistics of `compare` and `regress`: the t-interval over prompts, its duality with the p-value
and the verdict, the regression gate's counts and failures, and clear errors. The error rates over
many simulated tables are in test_stats_validity.py."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import ResultsError, simulate, stats
from analysis.compare import compare
from analysis.regress import FAILURES, gate_outcome, regress
from animagine_batch import cli

METRICS = ["score"]
DIRS = {"score": True}


def table(n_prompts=20, n_seeds=4, levels=("a", "b"), effect=None, noise=0.1, seed=0,
          model="m") -> pd.DataFrame:
    """A results table: one prompt effect per prompt, `effect[level]` added, seed noise."""
    rng = np.random.default_rng(seed)
    effect = effect or {}
    prompt_effect = rng.normal(0, 0.15, n_prompts)
    rows = []
    for p in range(n_prompts):
        for s in range(n_seeds):
            for level in levels:
                rows.append({"task_id": f"{model}-{p}-{s}-{level}", "status": "ok",
                             "model": model, "prompt_key": f"p{p}", "prompt": f"prompt {p}",
                             "negative_prompt": "", "seed": s, "sampler": "Euler a", "steps": 28,
                             "cfg": 7.0, "width": 832, "height": 1216, "strategy": level,
                             "score": 0.5 + prompt_effect[p] + effect.get(level, 0.0)
                             + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def by_prompt(per_prompt: list[float], seeds: int = 3) -> pd.DataFrame:
    """Two levels whose per-prompt mean difference is exactly `per_prompt`."""
    df = table(len(per_prompt), seeds, noise=0.0)
    lift = df.prompt_key.map({f"p{i}": d for i, d in enumerate(per_prompt)})
    return df.assign(score=df.score + np.where(df.strategy == "b", lift, 0.0))


def run_cli(capsys, *args):
    code = cli.main([*map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- the method ----------------------------------------------------------------------------

def test_interval_and_p_value_are_students_t_over_prompt_means():
    rng = np.random.default_rng(1)
    d = rng.normal(0.02, 0.05, 12)
    for family in (1, 4):
        inf = stats.t_inference(d, family)
        t = sps.ttest_1samp(d, 0.0)
        ci = t.confidence_interval(1 - 0.05 / family)
        assert float(inf.ci_low) == pytest.approx(ci.low) and \
            float(inf.ci_high) == pytest.approx(ci.high)
        assert float(inf.p_value) == pytest.approx(t.pvalue)
        assert float(inf.p_adj) == pytest.approx(min(1.0, family * t.pvalue))
        assert inf.level == pytest.approx(1 - 0.05 / family) and int(inf.n_prompts) == 12


def test_verdict_is_given_exactly_when_the_interval_excludes_zero():
    rng = np.random.default_rng(2)
    d = rng.normal(rng.normal(0, 0.03, (4000, 1)), 0.05, (4000, 8))  # 4000 comparisons
    for family in (1, 3):
        inf = stats.t_inference(d, family)
        verdict = stats.compare_verdicts(inf)
        excludes = (inf.ci_low > 0) | (inf.ci_high < 0)
        assert 200 < excludes.sum() < 3800  # both kinds occur
        assert np.array_equal(verdict != "no difference", excludes)
        assert np.array_equal(inf.p_adj < 0.05, excludes)
        assert np.array_equal(verdict == "better", inf.ci_low > 0)


def test_identical_or_all_failed_runs_give_zero_width_intervals():
    same = stats.t_inference(np.zeros(6))
    assert (float(same.ci_low), float(same.ci_high), float(same.p_value)) == (0.0, 0.0, 1.0)
    assert str(stats.compare_verdicts(same)) == "no difference"
    every = stats.t_inference(np.ones(6))  # every candidate task failed, none of the baseline's
    assert (float(every.ci_low), float(every.ci_high), float(every.p_value)) == (1.0, 1.0, 0.0)
    assert str(stats.gate_verdicts(every, higher_is_better=False)) == "regressed"


def test_the_unit_is_the_prompt_not_the_image():
    # one prompt with many seeds and a large shift: pooled over images it would dominate
    df = by_prompt([0.5, 0.0, 0.01, -0.01, 0.0, 0.0], seeds=2)
    heavy = df[df.prompt_key == "p0"]
    df = pd.concat([df] + [heavy.assign(seed=heavy.seed + 10 * k,
                                        task_id=heavy.task_id + f"-{k}") for k in range(1, 20)])
    row = compare(df, "strategy", METRICS, DIRS, ["strategy"]).iloc[0]
    assert row.n_pairs == 12 + 19 * 2 and row.n_prompts == 6
    assert row.mean_diff == pytest.approx(0.5 / 6)  # each prompt counts once
    assert row.verdict == "no difference"  # one prompt is not evidence


def test_planted_effect_found_with_the_right_sign_and_a_covering_interval():
    df = table(40, 4, ("a", "b", "c", "d"), {"b": 0.1, "c": -0.08})
    out = compare(df, "strategy", METRICS, DIRS, ["strategy"]).set_index("level")
    assert list(out.index) == ["b", "c", "d"] and (out.reference == "a").all()
    assert list(out.verdict) == ["better", "worse", "no difference"]
    assert out.loc["b", "ci_low"] < 0.1 < out.loc["b", "ci_high"]
    assert out.loc["c", "ci_low"] < -0.08 < out.loc["c", "ci_high"]
    assert (out.family == 3).all() and out.ci_level.iloc[0] == pytest.approx(1 - 0.05 / 3)
    assert out.loc["b", "n_pairs"] == 160 and out.loc["b", "n_prompts"] == 40
    assert out.loc["b", "mean_level"] - out.loc["b", "mean_reference"] == \
        pytest.approx(out.loc["b", "mean_diff"])
    flipped = compare(df, "strategy", METRICS, {"score": False}, ["strategy"]).set_index("level")
    assert list(flipped.verdict) == ["worse", "better", "no difference"]


# ---- point 1: intervals with few prompts ---------------------------------------------------

def test_point1_one_prompt_is_too_few_not_a_zero_width_interval():
    # the three pairs of one prompt: -0.01, 0.02, -0.03
    df = by_prompt([0.0], seeds=3)
    df.loc[df.strategy == "b", "score"] += [-0.01, 0.02, -0.03]
    row = compare(df, "strategy", METRICS, DIRS, ["strategy"]).iloc[0]
    assert row.verdict == "too few prompts" and row.n_prompts == 1
    assert np.isnan(row.ci_low) and np.isnan(row.ci_high) and np.isnan(row.p_adj)
    assert row.mean_diff == pytest.approx(-0.02 / 3)


def test_point1_two_prompts_are_too_few_not_min_max():
    row = compare(by_prompt([0.1, 0.3]), "strategy", METRICS, DIRS, ["strategy"]).iloc[0]
    assert row.verdict == "too few prompts" and row.n_prompts == 2 and np.isnan(row.ci_low)


def test_point1_regress_with_one_prompt_cannot_decide(tmp_path, capsys):
    base = table(1, 8, ("a",), seed=3)
    cand = table(1, 8, ("a",), seed=4)  # same prompt and settings, fresh noise: no real change
    simulate.write_run(tmp_path / "runs" / "b", base, {"strategy": ["a"]}, DIRS)
    simulate.write_run(tmp_path / "runs" / "c", cand, {"strategy": ["a"]}, DIRS)
    code, out, err = run_cli(capsys, "regress", tmp_path / "runs" / "b", tmp_path / "runs" / "c")
    assert code == 2 and "regressed" not in out
    assert "cannot decide: the runs have 1 matched prompts; a verdict needs at least 5" in err


# ---- point 2: one method for test, direction and interval ----------------------------------

def test_point2_nineteen_small_gains_and_one_large_loss_is_no_difference():
    row = compare(by_prompt([0.01] * 19 + [-0.5]), "strategy", METRICS, DIRS,
                  ["strategy"]).iloc[0]
    assert row.mean_diff == pytest.approx((19 * 0.01 - 0.5) / 20)
    assert row.win_rate == pytest.approx(0.95)  # descriptive, shown as it is
    assert row.ci_low < 0 < row.ci_high and row.p_value > 0.05
    assert row.verdict == "no difference"  # not `worse` with p = 0.0004


def test_point2_five_prompts_can_reach_a_verdict_that_matches_the_interval():
    row = compare(by_prompt([0.09, 0.1, 0.11, 0.1, 0.12]), "strategy", METRICS, DIRS,
                  ["strategy"]).iloc[0]
    assert row.n_prompts == 5 and row.verdict == "better"
    assert row.ci_low > 0 and row.p_adj < 0.05
    weak = compare(by_prompt([0.1, -0.05, 0.2, 0.0, -0.1]), "strategy", METRICS, DIRS,
                   ["strategy"]).iloc[0]
    assert weak.verdict == "no difference" and weak.ci_low < 0 < weak.ci_high
    assert weak.p_adj >= 0.05


# ---- point 3: a broken candidate cannot pass the gate --------------------------------------

def gate_runs(tmp_path, cand: pd.DataFrame, base: pd.DataFrame | None = None):
    base = table(20, 4, ("a", "b"), seed=5) if base is None else base
    simulate.write_run(tmp_path / "runs" / "base", base, {"strategy": ["a", "b"]}, DIRS)
    simulate.write_run(tmp_path / "runs" / "cand", cand, {"strategy": ["a", "b"]}, DIRS)
    return base, tmp_path / "runs" / "base", tmp_path / "runs" / "cand"


def test_point3_all_nan_candidate_regresses_on_failures(tmp_path, capsys):
    base = table(20, 4, ("a", "b"), seed=5)
    base, b, c = gate_runs(tmp_path, base.assign(status="nan", score=np.nan), base)
    code, out, _ = run_cli(capsys, "regress", b, c, "--out", tmp_path / "r.csv")
    assert code == 1 and "verdict: REGRESSED on failures" in out
    assert "160 nan" in out
    r = pd.read_csv(tmp_path / "r.csv")
    overall = r[r.scope == "all"].set_index("metric")
    assert overall.loc[FAILURES, "verdict"] == "regressed"
    assert overall.loc[FAILURES, "mean_candidate"] == 1.0 and overall.loc[FAILURES, "delta"] == 1
    assert overall.loc["score", "n_pairs"] == 0 and overall.loc["score", "verdict"] == \
        "too few prompts"
    assert (r.candidate_nan[r.scope == "all"] == 160).all()


def test_point3_half_blank_candidate_regresses_on_failures(tmp_path, capsys):
    base = table(20, 4, ("a", "b"), seed=5)
    blank = base.index % 2 == 0
    cand = base.assign(status=np.where(blank, "nan", "ok"),
                       score=np.where(blank, np.nan, base.score))
    _, b, c = gate_runs(tmp_path, cand, base)
    code, out, _ = run_cli(capsys, "regress", b, c)
    assert code == 1 and "REGRESSED on failures" in out
    assert "0 error, 80 nan" in out
    t = regress(base, cand, METRICS, DIRS, ["strategy"]).set_index(["scope", "metric"])
    assert t.loc[("all", "score"), "verdict"] == "no regression"  # identical where both ok
    assert t.loc[("all", FAILURES), "delta"] == pytest.approx(0.5)


def test_point3_missing_scores_count_as_failures(tmp_path):
    base = table(20, 4, ("a",), seed=6)
    cand = base.assign(score=np.where(base.index % 4 == 0, np.nan, base.score))
    t = regress(base, cand, METRICS, DIRS, []).set_index("metric")
    assert t.loc[FAILURES, "candidate_missing"] == 20 and t.loc["score", "candidate_missing"] == 20
    assert t.loc[FAILURES, "verdict"] == "regressed"


def test_point3_unmatched_tasks_are_counted_in_every_output(tmp_path, capsys):
    base = table(20, 4, ("a", "b"), seed=5)
    cand = base[base.seed == 0]  # 40 of the 160 tasks
    _, b, c = gate_runs(tmp_path, cand, base)
    code, out, _ = run_cli(capsys, "regress", b, c, "--out", tmp_path / "r.csv")
    assert code == 0
    assert "matched 40 of 160 baseline tasks (120 unmatched; 0 candidate tasks not in the " \
           "baseline)" in out
    r = pd.read_csv(tmp_path / "r.csv")
    overall = r[r.scope == "all"]
    assert (overall.baseline_tasks == 160).all() and (overall.matched == 40).all()
    assert (overall.unmatched == 120).all()
    per_level = r[r.scope == "strategy"]
    assert (per_level.baseline_tasks == 80).all() and (per_level.unmatched == 60).all()


# ---- point 4: model is matched when it is an axis of both runs -----------------------------

def test_point4_models_are_matched_and_a_drop_on_one_model_is_caught(tmp_path, capsys):
    parts = [table(20, 4, ("a", "b"), seed=7 + i, model=name) for i, name in enumerate("xy")]
    base = pd.concat(parts, ignore_index=True)
    cand = base.assign(task_id=base.task_id + "-c",
                       score=base.score - np.where(base.model == "y", 0.1, 0.0))
    axes = {"model": ["x", "y"], "strategy": ["a", "b"]}
    simulate.write_run(tmp_path / "runs" / "b", base, axes, DIRS)
    simulate.write_run(tmp_path / "runs" / "c", cand, axes, DIRS)
    code, out, _ = run_cli(capsys, "regress", tmp_path / "runs" / "b", tmp_path / "runs" / "c",
                           "--out", tmp_path / "r.csv")
    r = pd.read_csv(tmp_path / "r.csv").set_index(["scope", "level", "metric"])
    assert r.loc[("all", np.nan, "score"), "n_pairs"] == 320  # not 640: models are not crossed
    assert r.loc[("model", "x", "score"), "verdict"] == "no regression"
    assert r.loc[("model", "y", "score"), "verdict"] == "regressed"
    assert r.loc[("model", "y", "score"), "delta"] == pytest.approx(-0.1)
    assert r.loc[("model", "y", "score"), "gate"]
    assert code == 1 and "REGRESSED on score, score (model y) " in out
    # the gate family: overall and both models, each with score and failures
    assert (r[r.gate].family == 6).all()


# ---- point 5: one correction across metrics decides the exit status ------------------------

def test_point5_the_gate_is_corrected_across_metrics():
    base = table(20, 4, ("a",), seed=8)
    names = [f"m{k}" for k in range(5)]
    base = base.assign(**{n: base.score + k for k, n in enumerate(names)})
    t = regress(base, base.assign(task_id=base.task_id + "c"), names, {}, [])
    assert list(t.metric) == [FAILURES, *names]
    assert (t.family == 6).all() and t.ci_level.iloc[0] == pytest.approx(1 - 0.05 / 6)
    assert gate_outcome(t) == (0, "no regression")


def test_margin_and_direction_of_the_gate(tmp_path, capsys):
    base = table(20, 4, ("a",), seed=9)
    noise = np.random.default_rng(1).normal(0, 0.01, len(base))
    worse = base.assign(task_id=base.task_id + "c", score=base.score - 0.05 + noise)

    def overall(cand, margin=0.0, dirs=DIRS):
        t = regress(base, cand, METRICS, dirs, [], margin)
        return t.set_index("metric").loc["score"]

    row = overall(worse)
    assert row.verdict == "regressed" and row.ci_high < 0
    assert row.delta == pytest.approx(-0.05, abs=0.005)
    within = overall(worse, margin=0.1)
    assert within.verdict == "within margin" and -0.1 < within.ci_low and within.ci_high < 0
    assert overall(worse, dirs={"score": False}).verdict == "improved"
    better = base.assign(score=base.score + 0.05 + noise)
    assert overall(better).verdict == "improved"
    assert overall(base.assign(score=base.score + noise)).verdict == "no regression"
    simulate.write_run(tmp_path / "runs" / "b", base, {}, DIRS)
    simulate.write_run(tmp_path / "runs" / "c", worse, {}, DIRS)
    code, out, _ = run_cli(capsys, "regress", tmp_path / "runs" / "b", tmp_path / "runs" / "c",
                           "--margin", "0.1")
    assert code == 0 and "within margin" in out and "verdict: no regression (margin 0.1)" in out


# ---- point 6: clear errors instead of crashes ----------------------------------------------

def test_point6_a_table_without_ok_rows_is_a_clear_error(tmp_path, capsys):
    df = table(6, 2).assign(status="error", score=np.nan)
    simulate.write_run(tmp_path / "runs" / "r", df, {"strategy": ["a", "b"]}, DIRS)
    code, _, err = run_cli(capsys, "compare", tmp_path / "runs" / "r", "--metric", "score")
    assert code == 2 and "has no finished (status ok) rows (error 24)" in err
    run = tmp_path / "runs" / "r"
    code, _, err = run_cli(capsys, "regress", run, run, "--metric", "score")
    assert code == 2 and "the baseline has no finished (status ok) rows" in err


def test_point6_an_empty_run_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "runs" / "empty" / "results").mkdir(parents=True)
    full = simulate.write_run(tmp_path / "runs" / "full", table(6, 2), {"strategy": ["a", "b"]},
                              DIRS)
    code, _, err = run_cli(capsys, "compare", tmp_path / "runs" / "empty")
    assert code == 2 and "empty has no result rows: run its job first" in err
    code, _, err = run_cli(capsys, "regress", full, tmp_path / "runs" / "empty")
    assert code == 2 and "the candidate" in err and "has no result rows" in err


def test_point6_duplicate_tasks_are_named(tmp_path, capsys):
    df = table(6, 2).assign(weighting="a1111")
    twice = pd.concat([df, df.iloc[:1].assign(task_id="extra1", weighting="none")])
    simulate.write_run(tmp_path / "runs" / "r", twice, {"strategy": ["a", "b"]}, DIRS)
    simulate.write_run(tmp_path / "runs" / "ok", df, {"strategy": ["a", "b"]}, DIRS)
    code, out, err = run_cli(capsys, "compare", tmp_path / "runs" / "r", "--by", "strategy")
    assert code == 2 and out == ""
    assert "2 tasks share their match key with another task" in err
    assert "m-0-0-a, extra1" in err and "they differ in weighting" in err
    ok, r = tmp_path / "runs" / "ok", tmp_path / "runs" / "r"
    for pair in ((ok, r), (r, ok)):
        code, _, err = run_cli(capsys, "regress", *pair, "--out", tmp_path / "x.csv")
        assert code == 2 and "m-0-0-a, extra1" in err and "regress one configuration" in err
    assert not (tmp_path / "x.csv").exists()


def test_unknown_metric_or_comparing_prompts_is_bad_input(tmp_path, capsys):
    run = simulate.write_run(tmp_path / "runs" / "r", table(6, 2), {"strategy": ["a", "b"]}, DIRS)
    code, _, err = run_cli(capsys, "compare", run, "--metric", "colour")
    assert code == 2 and "--metric colour: no such column in" in err and "its metrics: score" in err
    code, _, err = run_cli(capsys, "regress", run, run, "--metric", "colour")
    assert code == 2 and "--metric colour: no such column" in err
    code, _, err = run_cli(capsys, "compare", run, "--by", "prompt_key")
    assert code == 2 and "--by prompt_key: the prompt-set entry is the unit of inference" in err


def test_point6_missing_prompt_key_is_named(tmp_path, capsys):
    simulate.write_run(tmp_path / "runs" / "r", table(6, 2).drop(columns="prompt_key"),
                       {"strategy": ["a", "b"]}, DIRS)
    code, _, err = run_cli(capsys, "compare", tmp_path / "runs" / "r", "--by", "strategy")
    assert code == 2 and "has no column prompt_key" in err and "unit of inference" in err
    code, _, err = run_cli(capsys, "regress", tmp_path / "runs" / "r", tmp_path / "runs" / "r")
    assert code == 2 and "the baseline has no column prompt_key" in err
    with pytest.raises(ResultsError, match="the candidate has no column score"):
        regress(table(6, 2), table(6, 2).drop(columns="score"), METRICS, DIRS, [])
    with pytest.raises(ResultsError, match="the candidate has no rows"):
        regress(table(6, 2), table(6, 2).iloc[:0], METRICS, DIRS, [])


# ---- point 7: memory does not grow with resamples x prompts --------------------------------

def test_point7_memory_is_linear_in_prompts():
    import tracemalloc

    n = 50_000  # 100,000 rows, 50,000 distinct prompts
    df = pd.DataFrame({"task_id": np.arange(2 * n).astype(str), "status": "ok",
                       "prompt_key": np.repeat(np.arange(n).astype(str), 2), "seed": 0,
                       "strategy": np.tile(["a", "b"], n),
                       "score": np.random.default_rng(0).random(2 * n)})
    tracemalloc.start()
    row = compare(df, "strategy", METRICS, DIRS, ["strategy"]).iloc[0]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert row.n_prompts == n and row.verdict == "no difference"
    assert peak < 80 * 2 ** 20  # a 2,000-resample bootstrap matrix alone would be 800 MB
