"""Error rates of `compare` and `regress` over simulated tables (prompt effect sd 0.15, seed noise
sd 0.1, scores clipped to [0, 1]; analysis/simulate.py), at (prompts, seeds, levels) = (5, 4, 2),
(20, 4, 4), (50, 8, 4) and (66, 8, 5). Seeded; benchmarks/stats_validity.py runs more tables."""

import json
import subprocess
import sys

import numpy as np
import pytest

from analysis import simulate, stats
from analysis.compare import compare
from analysis.regress import FAILURES, regress
from conftest import REPO

CELLS = [(5, 4, 2), (20, 4, 4), (50, 8, 4), (66, 8, 5)]
PLANTED = {2: [0.0, 0.1], 4: [0.0, -0.05, 0.05, 0.0], 5: [0.0, 0.03, -0.03, 0.0, 0.1]}
REPS = 2000  # tables per cell: a 5% rate is estimated to +-0.5%


@pytest.mark.parametrize("prompts,seeds,levels", CELLS)
def test_compare_false_verdicts_and_coverage(prompts, seeds, levels):
    for effects in ([0.0] * levels, PLANTED[levels]):
        r = simulate.compare_cell(prompts, seeds, effects, REPS, seed=prompts + levels)
        assert r["false_verdicts"] <= 0.06, r  # family-wise, at alpha 5%
        assert min(r["coverage"]) >= 0.93, r  # the printed (corrected) interval
        assert min(r["coverage_95"]) >= 0.93, r  # the same method at 95% without correction
        assert r["simultaneous_coverage"] >= 0.93, r  # every interval of the family at once
        assert r["disagreements"] == 0  # verdict <=> p_adj < alpha <=> 0 outside the interval


def test_point1_coverage_holds_at_five_prompts():
    r = simulate.compare_cell(5, 4, [0.0, 0.1], 4000, 0.05, seed=11)
    assert 0.93 <= r["coverage"][0] <= 0.97, r  # the bootstrap covered about 83% here


def test_planted_drop_of_005_at_50_prompts_is_found_by_compare():
    r = simulate.compare_cell(50, 8, PLANTED[4], 1000, 0.05, seed=12)  # prompts differ in effect
    assert r["detected"][0] >= 0.90 and r["detected"][1] >= 0.90, r


@pytest.mark.parametrize("prompts,seeds,levels", CELLS)
def test_point5_regress_false_alarms_with_five_metrics(prompts, seeds, levels):
    r = simulate.regress_cell(prompts, seeds, levels, [0.0] * 5, 500, failure=0.02,
                              interaction_sd=0.05, seed=prompts)
    assert r["false_alarms"] <= 0.05, r  # the uncorrected gate raised about 23%


@pytest.mark.parametrize("interaction_sd", [0.0, 0.05])
def test_regress_detects_a_planted_drop_of_005_at_50_prompts(interaction_sd):
    r = simulate.regress_cell(50, 8, 4, [-0.05, 0, 0, 0, 0], 500, interaction_sd=interaction_sd,
                              seed=13)
    assert r["detected"][0] >= 0.90, r
    assert r["false_alarms"] <= 0.05, r  # the other four metrics and the failure rate


def test_the_table_path_gives_the_simulated_numbers():
    """compare() and regress() on results tables built from simulated replicates give the same
    intervals, p-values and verdicts as the vectorised simulation."""
    rng = np.random.default_rng(5)
    scores = simulate.scores(rng, 3, 20, 4, [0.0, 0.05, -0.05, 0.0], 0.05)
    for one in scores:
        out = compare(simulate.compare_frame(one), "strategy", ["score"], {"score": True},
                      ["strategy"])
        d = (one[..., 1:] - one[..., :1]).mean(axis=1).T
        inf = stats.t_inference(d, 3)
        assert np.allclose(out.ci_low, inf.ci_low) and np.allclose(out.p_adj, inf.p_adj)
        assert list(out.verdict) == list(stats.compare_verdicts(inf))
    base, cand, ok_b, ok_c = simulate.regress_runs(rng, 2, 20, 4, 2, [-0.05, 0, 0, 0, 0], 0.05)
    names = [f"m{k}" for k in range(5)]
    for i in range(2):
        b, c = simulate.regress_frames(base[i], cand[i], ok_b[i], ok_c[i])
        t = regress(b, c, names, {}, ["strategy"])
        overall = t[t.scope == "all"].set_index("metric")
        both = (ok_b[i] & ok_c[i])[None]
        d = np.where(both, cand[i] - base[i], 0).sum(axis=(2, 3)) / both.sum(axis=(2, 3))
        inf = stats.t_inference(d, 6)
        assert np.allclose(overall.loc[names, "ci_low"], inf.ci_low)
        fail = ((~ok_c[i]).astype(float) - (~ok_b[i])).mean(axis=(1, 2))
        assert overall.loc[FAILURES, "p_adj"] == pytest.approx(float(
            stats.t_inference(fail, 6).p_adj))
        assert overall.loc[FAILURES, "candidate_nan"] == (~ok_c[i]).sum()


@pytest.mark.slow
def test_validity_benchmark_prints_one_json_line():
    r = subprocess.run([sys.executable, "benchmarks/stats_validity.py", "--reps", "40"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["benchmark"] == "stats_validity" and result["reps"] == 40
    assert len(result["compare"]) == 16 and len(result["regress"]) == 12
    assert set(result["worst"]) == {"compare_false_verdicts", "compare_coverage",
                                    "compare_coverage_95", "regress_false_alarms",
                                    "regress_detected_005_at_50"}
