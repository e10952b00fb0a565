"""Paired statistics: clustered bootstrap over prompts, win rate, signed-rank test, Holm.

Images of one prompt are not independent (they share the prompt), so the unit of resampling and
of the test is the prompt: the bootstrap resamples prompts with replacement, and the paired test
runs on per-prompt mean differences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
N_BOOT = 2000


@dataclass(frozen=True)
class PairedResult:
    n_pairs: int
    n_prompts: int
    mean_reference: float
    mean_level: float
    mean_diff: float  # level - reference
    ci_low: float
    ci_high: float
    win_rate: float  # share of pairs where the level is better (ties count one half)
    p_value: float


def cluster_bootstrap_ci(diff: np.ndarray, clusters: np.ndarray, n_boot: int = N_BOOT,
                         seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of the mean of `diff`, resampling whole clusters (prompts)."""
    codes, uniq = pd.factorize(clusters)
    k = len(uniq)
    if k == 0:
        return float("nan"), float("nan")
    sums = np.bincount(codes, weights=diff, minlength=k)
    counts = np.bincount(codes, minlength=k).astype(float)
    if k == 1:
        m = sums[0] / counts[0]
        return float(m), float(m)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot)
    means = (weights @ sums) / (weights @ counts)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def signed_rank_p(prompt_diffs: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value over per-prompt mean differences."""
    d = prompt_diffs[np.isfinite(prompt_diffs)]
    if len(d) == 0 or np.all(d == 0):
        return 1.0
    return float(stats.wilcoxon(d, zero_method="zsplit", alternative="two-sided").pvalue)


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1).

    Written here because scipy offers Benjamini-Hochberg but not Holm, and statsmodels would be a
    large dependency for ten lines.
    """
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def paired(reference: np.ndarray, level: np.ndarray, prompts: np.ndarray,
           higher_is_better: bool = True, seed: int = 0) -> PairedResult:
    """Compare paired observations (same task but for the compared factor)."""
    ok = np.isfinite(reference) & np.isfinite(level)
    reference, level, prompts = reference[ok], level[ok], np.asarray(prompts)[ok]
    diff = level - reference
    if len(diff) == 0:
        nan = float("nan")
        return PairedResult(0, 0, nan, nan, nan, nan, nan, nan, 1.0)
    low, high = cluster_bootstrap_ci(diff, prompts, seed=seed)
    better = diff > 0 if higher_is_better else diff < 0
    win = float(np.mean(better + 0.5 * (diff == 0)))
    per_prompt = pd.Series(diff).groupby(pd.Series(prompts)).mean().to_numpy()
    return PairedResult(
        n_pairs=int(len(diff)), n_prompts=int(len(per_prompt)),
        mean_reference=float(reference.mean()), mean_level=float(level.mean()),
        mean_diff=float(diff.mean()), ci_low=low, ci_high=high, win_rate=win,
        p_value=signed_rank_p(per_prompt))


def verdict(mean_diff: float, p_adjusted: float, higher_is_better: bool,
            alpha: float = ALPHA) -> str:
    if not np.isfinite(mean_diff) or not p_adjusted < alpha or mean_diff == 0:
        return "no difference"
    return "better" if (mean_diff > 0) == higher_is_better else "worse"
