"""Paired inference over prompts: one t-interval, its p-value and its verdict.

Images of one prompt are not independent (they share the prompt), so the unit of inference is the
prompt: every comparison is reduced to one mean difference per prompt (the mean over that prompt's
pairs), and the interval, the p-value and the verdict all come from Student's t over those
per-prompt means. A family of m comparisons is Bonferroni-corrected by computing each interval at
level 1 - alpha/m and the p-value as min(1, m * p): a verdict is given exactly when the printed
interval excludes zero, which is also exactly when the adjusted p-value is below alpha.

Everything here works on arrays along the last axis, so simulations (`analysis.simulate`) run the
same code on thousands of tables at once. A missing prompt is NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
MIN_PROMPTS = 5  # below this many prompts with pairs: "too few prompts", never a verdict
TOO_FEW = "too few prompts"


@dataclass(frozen=True)
class Inference:
    """Per comparison (arrays over the leading axes): prompts used, the mean of the per-prompt
    differences, its interval at `level`, the two-sided p-value and its Bonferroni adjustment.
    Interval and p-values are NaN where fewer than MIN_PROMPTS prompts have pairs."""

    n_prompts: np.ndarray
    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray
    p_adj: np.ndarray
    level: float
    family: int

    @property
    def enough(self) -> np.ndarray:
        return self.n_prompts >= MIN_PROMPTS


def prompt_means(values: np.ndarray, codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Mean of `values` per prompt code (0..n_codes-1); NaN for a prompt with no values."""
    counts = np.bincount(codes, minlength=n_codes)
    sums = np.bincount(codes, weights=values, minlength=n_codes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def t_inference(prompt_diffs, family: int = 1, alpha: float = ALPHA) -> Inference:
    """Student's t over per-prompt mean differences (last axis; NaN = prompt without pairs),
    Bonferroni-corrected for a family of `family` comparisons.

    When every prompt shows the same difference (identical runs, or every task of a run failed)
    the interval has zero width: [d, d] with p = 0, or [0, 0] with p = 1 for d = 0.
    """
    d = np.asarray(prompt_diffs, dtype=float)
    finite = np.isfinite(d)
    n = finite.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, d, 0.0).sum(axis=-1) / n
        resid = np.where(finite, d - mean[..., None], 0.0)
        se = np.sqrt((resid ** 2).sum(axis=-1) / (n - 1) / n)
        df = np.maximum(n - 1, 1)
        q = stats.t.isf(alpha / (2 * family), df)
        t = np.abs(mean) / se
        p = np.where(se > 0, 2 * stats.t.sf(t, df), np.where(mean == 0, 1.0, 0.0))
    half = np.where(se > 0, q * se, 0.0)
    enough = n >= MIN_PROMPTS
    nan = np.nan
    return Inference(
        n_prompts=n, mean=np.where(n > 0, mean, nan),
        ci_low=np.where(enough, mean - half, nan), ci_high=np.where(enough, mean + half, nan),
        p_value=np.where(enough, p, nan), p_adj=np.where(enough, np.minimum(1.0, family * p), nan),
        level=1 - alpha / family, family=family)


def compare_verdicts(inf: Inference, higher_is_better: bool = True) -> np.ndarray:
    """`better` / `worse` when the interval excludes zero, else `no difference`; `too few
    prompts` below MIN_PROMPTS."""
    up, down = ("better", "worse") if higher_is_better else ("worse", "better")
    out = np.where(inf.ci_low > 0, up, np.where(inf.ci_high < 0, down, "no difference"))
    return np.where(inf.enough, out, TOO_FEW)


def gate_verdicts(inf: Inference, higher_is_better: bool = True,
                  margin: float = 0.0) -> np.ndarray:
    """Regression verdicts from the interval, oriented so that positive is good: `regressed`
    when it lies wholly below -margin, `within margin` when it lies below zero but not wholly
    beyond the margin, `improved` when it lies above zero, else `no regression`."""
    sign = 1.0 if higher_is_better else -1.0
    low, high = np.minimum(sign * inf.ci_low, sign * inf.ci_high), \
        np.maximum(sign * inf.ci_low, sign * inf.ci_high)
    out = np.where(high < -margin, "regressed",
                   np.where(high < 0, "within margin",
                            np.where(low > 0, "improved", "no regression")))
    return np.where(inf.enough, out, TOO_FEW)


def win_rate(diff: np.ndarray, higher_is_better: bool = True) -> float:
    """Share of pairs where the level (candidate) is better; ties count one half. Descriptive:
    the verdict does not use it."""
    if len(diff) == 0:
        return float("nan")
    better = diff > 0 if higher_is_better else diff < 0
    return float(np.mean(better + 0.5 * (diff == 0)))
