"""How well each automatic metric agrees with the people who rated pairs of images.

- Agreement: on each decisive vote (one image preferred), the metric agrees when it scores the
  preferred image better (by its direction; equal scores count one half). The estimate is the
  share of votes it agrees with, inferred as a log-odds by the method of `compare --metric
  human` (`human.strength_inference`: a jackknife over prompts, since votes of one prompt are
  not independent), Bonferroni-corrected across the metrics; the test is against chance (0.5).
  Verdicts: `agrees`, `disagrees` (the metric prefers the other image more often than not),
  `no better than chance`, `too few prompts`.
- Rank correlation: Spearman's rho between the metric's mean at each level of a rated axis and
  the levels' human strengths (descriptive: with a handful of levels it has no useful interval;
  it needs three levels).
- Inter-rater agreement, where two or more raters voted on the same pair: the share of rater
  pairs that gave the same answer (left, right or tie) and Krippendorff's alpha (nominal).
"""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
from scipy import stats as sps

from animagine_batch.rundir import ResultsError

from . import stats
from .human import compare_human, rated_votes, strength_inference

CHANCE = 0.5
MIN_SHARED = 5  # pairs rated by two or more raters, below which inter-rater agreement is "too few"
COLUMNS = ["metric", "n_votes", "n_prompts", "agreement", "ci_low", "ci_high", "ci_level",
           "p_value", "p_adj", "family", "verdict"]


def agreement_inference(agree, disagree, family: int = 1, alpha: float = stats.ALPHA,
                        fit=None) -> stats.Inference:
    """Agreement from per-prompt counts (last axis: prompts) of agreeing and disagreeing votes:
    the log-odds of agreeing with its interval by `human.strength_inference` (the same jackknife
    over prompts), turned into rates; the p-value tests chance (log-odds 0). `fit`: as in
    `strength_inference`."""
    a, d = np.asarray(agree, float), np.asarray(disagree, float)
    wins = np.zeros((*a.shape, 2, 2))
    wins[..., 1, 0], wins[..., 0, 1] = a, d  # level 1 "agrees" beats level 0 "disagrees"
    inf = strength_inference(wins, family, alpha, **({"fit": fit} if fit else {}))
    rate = lambda x: 1 / (1 + np.exp(-x[..., 0]))  # noqa: E731
    return stats.Inference(n_prompts=inf.n_prompts[..., 0], mean=rate(inf.mean),
                           ci_low=rate(inf.ci_low), ci_high=rate(inf.ci_high),
                           p_value=inf.p_value[..., 0], p_adj=inf.p_adj[..., 0],
                           level=inf.level, family=inf.family)


def agreement_verdicts(inf: stats.Inference) -> np.ndarray:
    out = np.where(inf.ci_low > CHANCE, "agrees",
                   np.where(inf.ci_high < CHANCE, "disagrees", "no better than chance"))
    return np.where(inf.enough, out, stats.TOO_FEW)


def _metric_values(df: pd.DataFrame, metric: str) -> pd.Series:
    s = df.drop_duplicates("task_id").set_index("task_id")[metric]
    return pd.to_numeric(s.astype("float64") if s.dtype == bool else s, errors="coerce")


def metric_agreement(df: pd.DataFrame, rated: pd.DataFrame, metrics: list[str],
                     dirs: dict[str, bool], alpha: float = stats.ALPHA) -> pd.DataFrame:
    """One row per metric: agreement with the decisive votes (any axis) and its interval."""
    decisive = rated[rated["winner"] != "tie"]
    rows = []
    for metric in metrics:
        values = _metric_values(df, metric)
        left = values.reindex(decisive["left_task"]).to_numpy()
        right = values.reindex(decisive["right_task"]).to_numpy()
        use = np.isfinite(left) & np.isfinite(right)
        sign = 1.0 if dirs.get(metric, True) else -1.0
        picked = np.where(decisive["winner"] == "left", left - right, right - left) * sign
        agree = (picked > 0) + 0.5 * (picked == 0)
        prompts, codes = np.unique(decisive["prompt"].astype(str).to_numpy()[use],
                                   return_inverse=True)
        agreed = np.bincount(codes, weights=agree[use], minlength=len(prompts))
        votes = np.bincount(codes, minlength=len(prompts))
        inf = agreement_inference(agreed, votes - agreed, len(metrics), alpha)
        rows.append({"metric": metric, "n_votes": int(use.sum()), "n_prompts": int(inf.n_prompts),
                     "agreement": float(inf.mean), "ci_low": float(inf.ci_low),
                     "ci_high": float(inf.ci_high), "ci_level": inf.level,
                     "p_value": float(inf.p_value), "p_adj": float(inf.p_adj),
                     "family": inf.family, "verdict": str(agreement_verdicts(inf))})
    return pd.DataFrame(rows, columns=COLUMNS)


def rank_correlations(df: pd.DataFrame, votes: pd.DataFrame, metrics: list[str],
                      axes_levels: dict[str, list]) -> pd.DataFrame:
    """Spearman's rho between each metric's level means and the human strengths, per rated axis
    with at least three voted levels (rows: metric, axis, levels, rho)."""
    rows = []
    ok = df[df["status"] == "ok"]
    for axis in sorted(set(votes["axis"])):
        if axis not in df.columns:
            continue
        human = compare_human(df, votes, axis, axes_levels.get(axis))
        if len(human) < 2:  # with the reference: fewer than three levels
            continue
        levels = [human["reference"].iloc[0], *human["level"]]
        strength = np.r_[0.0, human["strength"].to_numpy()]
        for metric in metrics:
            means = [pd.to_numeric(ok.loc[ok[axis] == lv, metric], errors="coerce").mean()
                     for lv in levels]
            rho = sps.spearmanr(means, strength).statistic if np.isfinite(means).all() \
                else np.nan
            rows.append({"metric": metric, "axis": axis, "levels": len(levels),
                         "rho": float(rho)})
    return pd.DataFrame(rows, columns=["metric", "axis", "levels", "rho"])


def all_rated(df: pd.DataFrame, votes: pd.DataFrame) -> pd.DataFrame:
    """`human.rated_votes` of every axis the votes are on."""
    parts = [rated_votes(votes, df, a) for a in sorted(set(votes["axis"]))]
    if not parts:
        raise ResultsError("the run has no votes; collect some with `animagine-batch rate RUN "
                           "--by AXIS`")
    return pd.concat(parts, ignore_index=True)


def agreement_table(df: pd.DataFrame, votes: pd.DataFrame, metrics: list[str],
                    dirs: dict[str, bool], alpha: float = stats.ALPHA) -> pd.DataFrame:
    """`metric_agreement` over the votes on every axis."""
    return metric_agreement(df, all_rated(df, votes), metrics, dirs, alpha)


def inter_rater(votes: pd.DataFrame) -> dict:
    """Agreement between raters on the pairs that two or more of them rated (skips left out; a
    rater's last vote on a pair counts)."""
    v = votes[votes["choice"] != "skip"]
    first = np.minimum(v["left_task"], v["right_task"])
    flipped = v["left_task"] != first
    outcome = v["choice"].where(~flipped, v["choice"].map({"left": "right", "right": "left",
                                                           "tie": "tie"}))
    v = v.assign(item=first + "|" + np.maximum(v["left_task"], v["right_task"]),
                 outcome=outcome.map({"left": 0, "right": 1, "tie": 2}))
    last = v.sort_values("time").drop_duplicates(["item", "rater"], keep="last")
    raters = last.groupby("item")["rater"].nunique()
    shared = last[last["item"].isin(raters[raters >= 2].index)]
    out = {"raters": int(v["rater"].nunique()), "shared_pairs": int(shared["item"].nunique()),
           "percent_agreement": float("nan"), "krippendorff_alpha": float("nan")}
    if out["shared_pairs"] < MIN_SHARED:
        return out
    matrix = shared.pivot(index="rater", columns="item", values="outcome").to_numpy(float)
    same = total = 0
    for column in matrix.T:
        answers = column[np.isfinite(column)]
        counts = np.bincount(answers.astype(int), minlength=3)
        same += (counts * (counts - 1)).sum()
        total += len(answers) * (len(answers) - 1)
    out["percent_agreement"] = float(same / total)
    if len(np.unique(matrix[np.isfinite(matrix)])) > 1:
        out["krippendorff_alpha"] = float(krippendorff.alpha(
            reliability_data=matrix, level_of_measurement="nominal"))
    return out


def inter_rater_text(r: dict) -> str:
    if r["shared_pairs"] < MIN_SHARED:
        return (f"inter-rater agreement: {r['raters']} raters, {r['shared_pairs']} pairs rated "
                f"by two or more; too few (at least {MIN_SHARED} needed)")
    alpha = r["krippendorff_alpha"]
    kappa = f"Krippendorff's alpha {alpha:.2f}" if alpha == alpha else \
        "Krippendorff's alpha undefined (every answer the same)"
    return (f"inter-rater agreement: {r['raters']} raters on {r['shared_pairs']} shared pairs: "
            f"{r['percent_agreement']:.0%} of rater pairs gave the same answer; {kappa}")
