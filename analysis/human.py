"""Human preference between the levels of an axis, from blind pairwise votes.

Each level gets a Bradley-Terry strength (log-odds of being preferred, fitted by `choix` on the
decisive votes; the reference level is 0), so `strength` is the log-odds that a rater prefers the
level to the reference and `prefer` = 1 / (1 + exp(-strength)) the probability. Ties and skips
are counted but do not enter the fit: under Davidson's tie model the decisive votes follow
Bradley-Terry exactly. Half a virtual win each way between every two levels (the Haldane-Anscombe
correction of a log-odds) keeps a level that wins every vote finite.

Votes of one prompt are not independent, so inference resamples prompts: the jackknife leaves
out one prompt at a time, refits, and the spread of those refits gives the standard error; the
interval, the p-value and the verdict all come from Student's t on G - 1 degrees of freedom
(G = prompts with decisive votes), Bonferroni-corrected across the levels of the axis, as
`compare` does for automatic metrics. A level with votes on fewer than MIN_PROMPTS prompts
reads "too few prompts".
"""

from __future__ import annotations

from typing import Callable

import choix
import numpy as np
import pandas as pd
from scipy import stats as sps

from animagine_batch.rundir import ResultsError

from . import stats

PSEUDO = 0.5
METRIC = "human"
COLUMNS = ["axis", "level", "reference", "metric", "n_votes", "n_ties", "n_prompts", "strength",
           "ci_low", "ci_high", "ci_level", "prefer", "prefer_low", "prefer_high", "win_rate",
           "win_rate_vs_reference", "p_value", "p_adj", "family", "verdict"]


def fit_strengths(wins: np.ndarray) -> np.ndarray:
    """Bradley-Terry strengths (reference = index 0 at 0) of one win matrix
    (`wins[i, j]` = times level i beat level j), by choix's maximum likelihood (ILSR)."""
    n = len(wins)
    params = choix.ilsr_pairwise_dense(wins + PSEUDO * (1 - np.eye(n)), max_iter=1000)
    return params - params[0]


def fit_each(wins: np.ndarray) -> np.ndarray:
    """`fit_strengths` over the leading axes of (..., L, L)."""
    flat = wins.reshape(-1, *wins.shape[-2:])
    return np.array([fit_strengths(w) for w in flat]).reshape(wins.shape[:-1])


def model_se(wins: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Standard errors of the strengths (..., L - 1) from the Fisher information of the
    penalised likelihood at `theta`, as if every vote were independent."""
    n_levels = wins.shape[-1]
    w = wins + PSEUDO * (1 - np.eye(n_levels))
    full = np.concatenate([np.zeros((*theta.shape[:-1], 1)), theta], axis=-1)
    s = 1 / (1 + np.exp(full[..., None, :] - full[..., :, None]))
    h = (w + np.swapaxes(w, -1, -2)) * s * (1 - s)
    info = np.eye(n_levels) * h.sum(axis=-1)[..., None] - h
    cov = np.linalg.inv(info[..., 1:, 1:])
    return np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))


def strength_inference(prompt_wins: np.ndarray, family: int = 1, alpha: float = stats.ALPHA,
                       fit: Callable[[np.ndarray], np.ndarray] = fit_each) -> stats.Inference:
    """Strength of each level against level 0 with a jackknife t-interval over prompts.

    `prompt_wins` is (..., G, L, L): one win matrix per prompt (every prompt with at least one
    decisive vote). `fit` maps (..., L, L) win matrices to (..., L) strengths; the simulations
    pass a vectorised solver of the same likelihood. Returns an Inference over (..., L - 1).
    """
    w = np.asarray(prompt_wins, dtype=float)
    g = w.shape[-3]
    total = w.sum(axis=-3)
    theta = fit(total)[..., 1:]
    se_model = model_se(total, theta)
    se_jack = np.zeros_like(theta)
    if g > 1:
        loo = fit(total[..., None, :, :] - w)[..., 1:]  # (..., G, L - 1)
        spread = loo - loo.mean(axis=-2, keepdims=True)
        se_jack = np.sqrt((g - 1) / g * (spread ** 2).sum(axis=-2))
    voted = ((w.sum(axis=-1) + w.sum(axis=-2)) > 0).sum(axis=-2)  # (..., L): prompts with votes
    n = np.minimum(voted[..., 1:], voted[..., :1])  # both the level and the reference need them
    df = max(g - 1, 1)
    level = alpha / (2 * family)
    half = np.maximum(sps.t.isf(level, df) * se_jack, sps.norm.isf(level) * se_model)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_jack = np.where(se_jack > 0, 2 * sps.t.sf(np.abs(theta) / se_jack, df),
                          np.where(theta == 0, 1.0, 0.0))
        p = np.maximum(p_jack, 2 * sps.norm.sf(np.abs(theta) / se_model))
    enough = n >= stats.MIN_PROMPTS
    nan = np.nan
    return stats.Inference(
        n_prompts=n, mean=theta, ci_low=np.where(enough, theta - half, nan),
        ci_high=np.where(enough, theta + half, nan), p_value=np.where(enough, p, nan),
        p_adj=np.where(enough, np.minimum(1.0, family * p), nan), level=1 - alpha / family,
        family=family)


def rated_votes(votes: pd.DataFrame, df: pd.DataFrame, by: str) -> pd.DataFrame:
    """The non-skip votes on axis `by`, with each image's level read from the results table
    (`level_left`, `level_right`) and `winner` (`left`, `right` or `tie`)."""
    v = votes[(votes["axis"] == by) & (votes["choice"] != "skip")]
    if by not in df.columns:
        raise ResultsError(f"--by {by}: no such column in the results table")
    index = df.drop_duplicates("task_id").set_index("task_id")
    missing = sorted(set(v["left_task"]).union(v["right_task"]) - set(index.index))
    if missing:
        files = ", ".join(sorted(set(v[v["left_task"].isin(missing) |
                                       v["right_task"].isin(missing)]["file"])))
        raise ResultsError(f"ratings ({files}) name {len(missing)} task ids that are not in the "
                           f"run, e.g. {', '.join(missing[:3])}; votes belong to the run "
                           "directory they were cast in")
    out = v.assign(level_left=index.loc[v["left_task"], by].to_numpy(),
                   level_right=index.loc[v["right_task"], by].to_numpy(),
                   prompt=index.loc[v["left_task"], "prompt_key"].to_numpy(),
                   winner=v["choice"])
    return out.reset_index(drop=True)


def level_order(present: list, levels: list | None, reference) -> tuple[list, object]:
    """Levels in job order (then as found) with the reference first."""
    order = [x for x in (levels or []) if x in present] + \
        [x for x in present if x not in (levels or [])]
    ref = order[0] if reference is None else next(
        (x for x in order if str(x) == str(reference)), None)
    if ref is None:
        raise ResultsError(f"--reference {reference}: no votes on that level; levels with votes: "
                           f"{', '.join(map(str, order))}")
    return [ref, *[x for x in order if x != ref]], ref


def win_matrices(rated: pd.DataFrame, order: list) -> tuple[np.ndarray, list]:
    """One win matrix per prompt with decisive votes: (G, L, L), and those prompts."""
    code = {str(x): i for i, x in enumerate(order)}
    decisive = rated[rated["winner"] != "tie"]
    win = np.where(decisive["winner"] == "left", decisive["level_left"], decisive["level_right"])
    lose = np.where(decisive["winner"] == "left", decisive["level_right"], decisive["level_left"])
    prompts, p_codes = np.unique(decisive["prompt"].astype(str).to_numpy(), return_inverse=True)
    w = np.zeros((len(prompts), len(order), len(order)))
    np.add.at(w, (p_codes, [code[str(x)] for x in win], [code[str(x)] for x in lose]), 1.0)
    return w, list(prompts)


def compare_human(df: pd.DataFrame, votes: pd.DataFrame, by: str, levels: list | None = None,
                  reference=None, alpha: float = stats.ALPHA) -> pd.DataFrame:
    """Each voted level of `by` against the reference: strength, interval, win rates, verdict."""
    rated = rated_votes(votes, df, by)
    if rated.empty:
        raise ResultsError(f"no votes on --by {by}; collect some with `animagine-batch rate RUN "
                           f"--by {by}`")
    present = list(pd.unique(pd.concat([rated["level_left"], rated["level_right"]])))
    order, ref = level_order(present, levels, reference)
    wins, _ = win_matrices(rated, order)
    family = len(order) - 1
    inf = strength_inference(wins[None], family, alpha)
    verdicts = stats.compare_verdicts(inf, True)[0]
    rows = []
    for k, level in enumerate(order[1:]):
        mine = rated[(rated["level_left"] == level) | (rated["level_right"] == level)]
        won = ((mine["winner"] == "left") & (mine["level_left"] == level)) | \
            ((mine["winner"] == "right") & (mine["level_right"] == level))
        score = won + 0.5 * (mine["winner"] == "tie")
        head = (mine["level_left"] == ref) | (mine["level_right"] == ref)
        lo, hi, theta = inf.ci_low[0, k], inf.ci_high[0, k], inf.mean[0, k]
        rows.append({"axis": by, "level": level, "reference": ref, "metric": METRIC,
                     "n_votes": len(mine), "n_ties": int((mine["winner"] == "tie").sum()),
                     "n_prompts": int(inf.n_prompts[0, k]), "strength": float(theta),
                     "ci_low": float(lo), "ci_high": float(hi), "ci_level": inf.level,
                     "prefer": _logistic(theta), "prefer_low": _logistic(lo),
                     "prefer_high": _logistic(hi), "win_rate": float(score.mean()),
                     "win_rate_vs_reference": float(score[head].mean()) if head.any()
                     else float("nan"),
                     "p_value": float(inf.p_value[0, k]), "p_adj": float(inf.p_adj[0, k]),
                     "family": family, "verdict": str(verdicts[k])})
    return pd.DataFrame(rows, columns=COLUMNS)


def _logistic(x: float) -> float:
    return float(1 / (1 + np.exp(-x))) if np.isfinite(x) else float("nan")
