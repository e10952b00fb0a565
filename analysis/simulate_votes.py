"""Synthetic pairwise votes with planted preferences: the error rates of `compare --metric human`
and of `agreement`.

Votes: each prompt gets `votes` votes spread evenly over the pairs of levels (as the rating
server's balanced choice does); a vote is a tie with probability `tie_rate`, else the level with
the higher strength wins with the Bradley-Terry probability. Strengths may vary between prompts
(`prompt_sd`); the fit then estimates the population's pooled strength, which
`population_strengths` computes, while the planted values are the prompts' average.

The simulations run `human.strength_inference` (the jackknife t over prompts that `compare
--metric human` runs) on thousands of replicates at once, with `bt_batch`, a vectorised Newton
solver of the same penalised likelihood as `human.fit_strengths` (choix fits one table at a
time, far too slowly for 10^5 refits); a test checks that both give the same strengths, and that
the table path gives the simulated numbers. Used by tests/test_human_stats.py and
benchmarks/human_validity.py.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from . import human, stats
from .agreement import agreement_inference, agreement_verdicts
from .simulate import clipped_mean

CHUNK = 200


def bt_batch(wins: np.ndarray, iters: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Maximum-likelihood strengths (level 0 at 0) of (..., L, L) win matrices with the pseudo
    wins of `human.fit_strengths`, by Newton's method on the concave log-likelihood."""
    n_levels = wins.shape[-1]
    w = np.asarray(wins, float) + human.PSEUDO * (1 - np.eye(n_levels))
    n = w + np.swapaxes(w, -1, -2)
    theta = np.zeros(w.shape[:-1])
    for _ in range(iters):
        s = 1 / (1 + np.exp(theta[..., None, :] - theta[..., :, None]))  # P(i beats j)
        grad = (w - n * s).sum(axis=-1)
        h = n * s * (1 - s)
        info = np.eye(n_levels) * h.sum(axis=-1)[..., None] - h  # minus the Hessian
        step = np.linalg.solve(info[..., 1:, 1:], grad[..., 1:, None])[..., 0]
        step = np.clip(step, -2.0, 2.0)  # damping: far from the optimum a full step can overshoot
        theta[..., 1:] += step
        if np.abs(step).max(initial=0.0) < tol:
            break
    return theta


def level_pairs(levels: int) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(levels), 2))


def votes_per_pair(prompts: int, votes: int, levels: int) -> np.ndarray:
    """(prompts, pairs) vote counts: `votes` per prompt, spread evenly, the remainder rotating."""
    pairs = len(level_pairs(levels))
    counts = np.full((prompts, pairs), votes // pairs)
    for p in range(prompts):
        for r in range(votes % pairs):
            counts[p, (p + r) % pairs] += 1
    return counts


def simulate(rng, reps: int, prompts: int, votes: int, strengths, prompt_sd: float = 0.0,
             tie_rate: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Decisive win matrices (reps, prompts, L, L) and tie counts (reps, prompts, pairs)."""
    theta = np.asarray(strengths, float)
    levels = len(theta)
    pairs = level_pairs(levels)
    counts = votes_per_pair(prompts, votes, levels)[None].repeat(reps, axis=0)
    u = theta + rng.normal(0, prompt_sd, (reps, prompts, levels)) if prompt_sd else \
        np.broadcast_to(theta, (reps, prompts, levels))
    ties = rng.binomial(counts, tie_rate)
    decisive = counts - ties
    wins = np.zeros((reps, prompts, levels, levels))
    for k, (i, j) in enumerate(pairs):
        p = 1 / (1 + np.exp(u[..., j] - u[..., i]))
        won = rng.binomial(decisive[..., k], p)
        wins[..., i, j] = won
        wins[..., j, i] = decisive[..., k] - won
    return wins, ties


def population_strengths(strengths, prompt_sd: float, votes_each: float = 1e6) -> np.ndarray:
    """What the pooled fit estimates when strengths vary between prompts: the fit of the
    expected win matrix of a balanced design (Gauss-Hermite over the prompt variation)."""
    theta = np.asarray(strengths, float)
    if not prompt_sd:
        return theta[1:] - theta[0]
    x, wts = np.polynomial.hermite_e.hermegauss(61)
    wts = wts / wts.sum()
    wins = np.zeros((len(theta), len(theta)))
    for i, j in level_pairs(len(theta)):
        d = theta[i] - theta[j] + np.sqrt(2) * prompt_sd * x
        p = float((wts / (1 + np.exp(-d))).sum())
        wins[i, j], wins[j, i] = votes_each * p, votes_each * (1 - p)
    return bt_batch(wins)[1:]


def human_cell(prompts: int, votes: int, strengths, reps: int, prompt_sd: float = 0.0,
               tie_rate: float = 0.1, seed: int = 0) -> dict:
    """Coverage (of the corrected interval, and at 95% uncorrected), false verdicts and
    detection of `compare --metric human` over `reps` sets of votes."""
    rng = np.random.default_rng(seed)
    theta = np.asarray(strengths, float)
    planted = theta[1:] - theta[0]
    population = population_strengths(theta, prompt_sd)
    family = len(theta) - 1
    null = np.isclose(planted, 0)
    covered, covered95, covered_planted, false, found, disagree = 0, 0, 0, 0, 0, 0
    for lo in range(0, reps, CHUNK):
        wins, _ = simulate(rng, min(CHUNK, reps - lo), prompts, votes, theta, prompt_sd,
                           tie_rate)
        inf = human.strength_inference(wins, family, fit=bt_batch)
        verdict = stats.compare_verdicts(inf, True)
        inf95 = human.strength_inference(wins, 1, fit=bt_batch)
        covered95 += ((inf95.ci_low <= population) & (population <= inf95.ci_high)).sum(axis=0)
        covered += ((inf.ci_low <= population) & (population <= inf.ci_high)).sum(axis=0)
        covered_planted += ((inf.ci_low <= planted) & (planted <= inf.ci_high)).sum(axis=0)
        right = np.where(planted > 0, "better", "worse")
        wrong = np.where(null, verdict != "no difference", verdict == np.where(
            planted > 0, "worse", "better"))
        false += wrong.any(axis=1).sum()
        found += (verdict == right).sum(axis=0)
        disagree += ((inf.p_adj < stats.ALPHA) != np.isin(verdict, ("better", "worse"))).sum()
    return {"prompts": prompts, "votes_per_prompt": votes, "strengths": theta.tolist(),
            "prompt_sd": prompt_sd, "tie_rate": tie_rate, "reps": reps,
            "population": population.round(4).tolist(),
            "coverage": (covered / reps).round(4).tolist(),
            "coverage_95": (covered95 / reps).round(4).tolist(),
            "coverage_planted": (covered_planted / reps).round(4).tolist(),
            "false_verdicts": float(false / reps),
            "detected": [None if z else round(float(f / reps), 4) for z, f in zip(null, found)],
            "disagreements": int(disagree)}


def agreement_cell(prompts: int, votes: int, rate: float, reps: int, prompt_sd: float = 0.0,
                   seed: int = 0) -> dict:
    """Coverage of the agreement interval when a metric agrees with the raters at `rate`
    (`prompt_sd` varies the rate between prompts; the truth is then the population's share)."""
    rng = np.random.default_rng(seed)
    r = np.clip(rate + rng.normal(0, prompt_sd, (reps, prompts)), 0, 1) if prompt_sd else \
        np.full((reps, prompts), rate)
    agree = rng.binomial(votes, r)
    inf = agreement_inference(agree, votes - agree, fit=bt_batch)
    truth = float(clipped_mean(rate, prompt_sd)) if prompt_sd else rate  # the population's share
    covered = (inf.ci_low <= truth) & (truth <= inf.ci_high)
    return {"prompts": prompts, "votes_per_prompt": votes, "rate": rate, "prompt_sd": prompt_sd,
            "reps": reps, "truth": round(truth, 4), "coverage": round(float(covered.mean()), 4),
            "mean_estimate": round(float(inf.mean.mean()), 4),
            "agrees": round(float((agreement_verdicts(inf) == "agrees").mean()), 4)}


def vote_tables(wins: np.ndarray, ties: np.ndarray, rng, axis: str = "strategy",
                rate: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One replicate (prompts, L, L) of win matrices (and ties per pair) as a results table and
    the votes on it: every vote on its own seed, sides in random order. With `rate`, a column
    `metric` scores the preferred image higher with probability `rate`."""
    prompts, levels = wins.shape[0], wins.shape[-1]
    tasks, records = [], []
    for p in range(prompts):
        seed = 0
        for k, (i, j) in enumerate(level_pairs(levels)):
            outcomes = ["i"] * int(wins[p, i, j]) + ["j"] * int(wins[p, j, i]) + \
                ["tie"] * int(ties[p, k])
            for outcome in outcomes:
                ids = {lv: f"t{p}-{seed}-{lv}" for lv in (i, j)}
                good = rng.random() < rate if rate is not None else True
                for lv in (i, j):
                    won = (outcome == "i") == (lv == i) if outcome != "tie" else lv == i
                    score = float(won == good) + rng.normal(0, 0.01)
                    tasks.append({"task_id": ids[lv], "status": "ok", "prompt_key": f"p{p}",
                                  "seed": seed, axis: f"s{lv}", "metric": score})
                a, b = (i, j) if rng.random() < 0.5 else (j, i)
                choice = "tie" if outcome == "tie" else \
                    ("left" if (outcome == "i") == (a == i) else "right")
                records.append({"vote_id": f"v{len(records)}", "time": f"{len(records):08d}",
                                "rater": "sim", "axis": axis, "prompt_key": f"p{p}",
                                "seed": seed, "left_task": ids[a], "right_task": ids[b],
                                "left_level": f"s{a}", "right_level": f"s{b}",
                                "choice": choice, "mode": "balanced", "shown_ms": 0,
                                "file": "sim.jsonl"})
                seed += 1
    return pd.DataFrame(tasks), pd.DataFrame(records)
