"""Error rates of `compare --metric human` and `agreement` over simulated votes with planted
preferences (analysis/simulate_votes.py), and the table path against the simulated numbers.
Seeded; benchmarks/human_validity.py runs more sets of votes."""

import numpy as np
import pandas as pd
import pytest

from analysis import human, simulate_votes as sv, stats
from analysis.agreement import agreement_table, inter_rater, metric_agreement
from analysis.human import compare_human, rated_votes

# (prompts, votes per prompt, planted strengths, prompt-to-prompt sd of the strengths)
CELLS = [(5, 12, [0.0, 0.8], 0.0), (10, 12, [0.0, 0.5, 1.0], 0.3),
         (20, 10, [0.0, 0.4, -0.4, 0.0], 0.3), (50, 10, [0.0, 0.3, 0.0, 0.6, 0.0], 0.3)]
REPS = 1500


def test_vectorised_solver_is_choix():
    """The simulations' Newton solver and choix find the same maximum of the same likelihood."""
    wins, _ = sv.simulate(np.random.default_rng(0), 20, 12, 10, [0, 0.5, 1.0, -2.0], 0.3)
    assert np.abs(sv.bt_batch(wins) - human.fit_each(wins)).max() < 1e-6
    assert np.abs(sv.bt_batch(wins.sum(1)) - human.fit_each(wins.sum(1))).max() < 1e-6


@pytest.mark.parametrize("prompts,votes,strengths,sd", CELLS)
def test_interval_covers_the_planted_strength(prompts, votes, strengths, sd):
    r = sv.human_cell(prompts, votes, strengths, REPS, prompt_sd=sd, seed=prompts)
    assert min(r["coverage_95"]) >= 0.93, r  # 95% interval, the pooled population strength
    assert min(r["coverage_planted"]) >= 0.93, r  # the printed (corrected) interval, planted
    assert r["false_verdicts"] <= 0.05, r  # a wrong sign, or a verdict on a null level
    assert r["disagreements"] == 0  # verdict <=> p_adj < alpha <=> 0 outside the interval


def test_planted_preference_is_found_with_the_right_sign():
    r = sv.human_cell(20, 10, [0.0, 0.8], 1000, prompt_sd=0.3, seed=7)  # preferred 69% of the time
    assert r["detected"][0] >= 0.9 and r["false_verdicts"] == 0, r
    null = sv.human_cell(8, 10, [0.0, 0.0, 0.0], 2000, prompt_sd=0.3, seed=8)
    assert null["false_verdicts"] <= 0.05, null


def test_a_level_that_wins_almost_always_keeps_its_coverage():
    """Near-unanimous votes on few prompts: the jackknife alone collapses to a zero-width
    interval; the vote-level (Wald) half-width keeps it honest."""
    r = sv.agreement_cell(5, 20, 0.99, 2000, seed=3)
    assert r["coverage"] >= 0.93, r


@pytest.mark.parametrize("prompts,votes,sd", [(5, 10, 0.0), (20, 10, 0.1), (50, 6, 0.1)])
def test_agreement_of_80_percent_is_covered(prompts, votes, sd):
    r = sv.agreement_cell(prompts, votes, 0.8, 2000, prompt_sd=sd, seed=prompts)
    assert r["coverage"] >= 0.93 and abs(r["mean_estimate"] - r["truth"]) < 0.02, r


def test_too_few_prompts_gives_no_verdict():
    wins, _ = sv.simulate(np.random.default_rng(1), 1, 4, 30, [0.0, 3.0])
    inf = human.strength_inference(wins[0])
    assert inf.n_prompts.tolist() == [4] and np.isnan(inf.ci_low).all()
    assert stats.compare_verdicts(inf).tolist() == [stats.TOO_FEW]


def test_the_table_path_gives_the_simulated_numbers():
    """compare_human (choix on votes joined to a results table) and the agreement table give the
    strengths, intervals and verdicts of the vectorised simulation of the same votes."""
    rng = np.random.default_rng(4)
    wins, ties = sv.simulate(rng, 2, 12, 9, [0.0, 0.6, -0.3], 0.2)
    for one, tie in zip(wins, ties):
        df, votes = sv.vote_tables(one, tie, rng, rate=0.8)
        table = compare_human(df, votes, "strategy", ["s0", "s1", "s2"])
        inf = human.strength_inference(one[None], 2, fit=sv.bt_batch)
        assert table.level.tolist() == ["s1", "s2"] and (table.reference == "s0").all()
        assert np.allclose(table.strength, inf.mean[0], atol=1e-6)
        assert np.allclose(table.ci_low, inf.ci_low[0], atol=1e-6)
        assert np.allclose(table.p_adj, inf.p_adj[0], atol=1e-6)
        assert table.verdict.tolist() == list(stats.compare_verdicts(inf)[0])
        assert table.n_votes.sum() == one.sum() + tie.sum() + (one[:, 1, 2] + one[:, 2, 1]).sum() \
            + tie[:, 2].sum()  # each vote counts for both of its levels
        rated = rated_votes(votes, df, "strategy")
        agree = metric_agreement(df, rated, ["metric"], {"metric": True}).iloc[0]
        assert agree.n_votes == one.sum() and 0.6 < agree.agreement < 0.95
        assert agree.ci_low < agree.agreement < agree.ci_high


def test_agreement_table_reports_a_planted_80_percent_within_its_interval():
    rng = np.random.default_rng(9)
    wins, ties = sv.simulate(rng, 1, 30, 20, [0.0, 0.5], 0.0)
    df, votes = sv.vote_tables(wins[0], ties[0], rng, rate=0.8)
    row = agreement_table(df, votes, ["metric"], {"metric": True}).iloc[0]
    assert row.ci_low <= 0.8 <= row.ci_high and row.verdict == "agrees", row
    flipped = agreement_table(df, votes, ["metric"], {"metric": False}).iloc[0]
    assert flipped.agreement == pytest.approx(1 - row.agreement, abs=0.01)
    assert flipped.verdict == "disagrees"


def test_inter_rater_agreement_counts_pairs_rated_twice():
    rng = np.random.default_rng(2)
    wins, ties = sv.simulate(rng, 1, 6, 4, [0.0, 1.0])
    _, votes = sv.vote_tables(wins[0], ties[0], rng)
    flip = {"left": "right", "right": "left", "tie": "tie"}
    # a second rater sees the same pairs with the sides swapped and differs on the first two
    second = votes.assign(rater="b", left_task=votes["right_task"],
                          right_task=votes["left_task"], choice=votes["choice"].map(flip))
    second.loc[:1, "choice"] = np.where(second.loc[:1, "choice"] == "tie", "left", "tie")
    both = pd.concat([votes.assign(rater="a"), second], ignore_index=True)
    out = inter_rater(both)
    assert out["raters"] == 2 and out["shared_pairs"] == len(votes) == 24
    assert out["percent_agreement"] == pytest.approx(22 / 24)
    assert 0 < out["krippendorff_alpha"] < 1
    assert inter_rater(votes)["shared_pairs"] == 0  # one rater: nothing to compare
