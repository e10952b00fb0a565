"""Paired strategy comparisons within a run.

Two strategies are compared on the tasks that share every other factor: the prompt-set entry,
seed, model, sampler, steps, CFG, size and every other sweep axis. Inference is over prompts
(`analysis.stats`): one t-interval, p-value and verdict per level, Bonferroni-corrected across the
levels of the axis for each metric.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from animagine_batch.rundir import ResultsError
from animagine_batch.rundir.jobfile import axis_levels, job_axes
from animagine_batch.rundir.provenance import LOWER_IS_BETTER, directions
from animagine_batch.rundir.schema import PAIRED_COLUMNS

from . import stats

__all__ = ["axis_levels", "compare", "directions", "interaction", "job_axes",
           "marginal_effects", "metric_columns"]
BASE_FACTORS = list(PAIRED_COLUMNS)  # model, prompt_key, sampler, steps, ..., seed
DERIVED = {"model": ["model_name"], "size": ["width", "height"], "width": ["size"],
           "height": ["size"], "model_name": ["model"]}
# columns that name or describe one image rather than the factors that made it
IDENTITY = {"task_id", "job", "image_path", "image_sha256", "status", "error", "gen_seconds",
            "worker", "prompt_tokens"}


def _numeric(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s.astype("float64") if s.dtype == bool else s, errors="coerce")


def metric_columns(df: pd.DataFrame, dirs: dict[str, bool]) -> list[str]:
    """Scorer metrics present in the table with at least one value (a metric that does not apply
    to any image, such as a rating match when no rating is prompted, is left out)."""
    return [c for c in dirs if c in df.columns and c not in LOWER_IS_BETTER
            and _numeric(df[c]).notna().any()]


def require_columns(df: pd.DataFrame, columns: list[str], what: str) -> None:
    """Every one of `columns` in `df`, and `prompt_key` (the unit of inference) never null."""
    missing = [c for c in dict.fromkeys(columns) if c not in df.columns]
    if missing:
        raise ResultsError(f"{what} has no column {', '.join(missing)}; a comparison needs "
                           "status, prompt_key (the unit of inference: one prompt-set entry) "
                           "and the metric columns")
    if "prompt_key" in columns and df["prompt_key"].isna().any():
        raise ResultsError(f"{what}: {int(df['prompt_key'].isna().sum()):,} rows have no "
                           "prompt_key; every row needs the prompt-set entry it was made from")


def finished(df: pd.DataFrame, what: str) -> pd.DataFrame:
    """The `ok` rows; a clear error when there are none."""
    if df.empty:
        raise ResultsError(f"{what} has no rows: run the job first")
    ok = df[df["status"] == "ok"]
    if ok.empty:
        counts = ", ".join(f"{k} {v:,}" for k, v in df["status"].value_counts().items())
        raise ResultsError(f"{what} has no finished (status ok) rows ({counts}): nothing to "
                           "compare; rerun the job to retry its errors")
    return ok


def group_codes(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One integer per distinct combination of `columns` (nulls are a value)."""
    if not columns:
        return np.zeros(len(df), dtype=np.int64)
    return df.groupby(columns, sort=False, dropna=False).ngroup().to_numpy()


def check_unique(df: pd.DataFrame, key: list[str], what: str, hint: str, skip=(),
                 codes: np.ndarray | None = None) -> None:
    """Refuse tables where two tasks share `key` (`codes`: its group codes, when known): name
    them, say how they differ and what to do."""
    codes = group_codes(df, key) if codes is None else codes
    counts = np.bincount(codes)
    dup = counts[codes] > 1
    if not dup.any():
        return
    first = np.flatnonzero(dup)[0]
    group = df[codes == codes[first]]
    ids = ", ".join(map(str, group["task_id"].head(3))) if "task_id" in group else "?"
    shown = [c for c in key if c == "prompt_key" or df[c].nunique(dropna=False) > 1][:6]
    at = ", ".join(f"{c}={group[c].iloc[0]}" for c in shown)
    differ = [c for c in group.columns if c not in key and c not in IDENTITY and c not in skip
              and group[c].astype(str).nunique() > 1]
    raise ResultsError(
        f"{what}: {int(dup.sum()):,} tasks share their match key with another task, e.g. task "
        f"ids {ids} ({at}); they differ in {', '.join(differ) or 'nothing but their ids'}. "
        f"{hint}")


def pair_key(df: pd.DataFrame, by: str, axes: list[str], ignore=()) -> list[str]:
    drop = {by, *DERIVED.get(by, []), *ignore}
    return [c for c in dict.fromkeys(BASE_FACTORS + list(axes)) if c in df.columns and c not in drop]


def _order(ok: pd.DataFrame, by: str, levels, reference):
    present = list(pd.unique(ok[by]))
    order = [v for v in (levels or []) if v in present]
    order += [v for v in present if v not in order]
    if reference is None:
        reference = order[0]
    ref = next((v for v in order if str(v) == str(reference)), None)
    if ref is None:
        raise ResultsError(f"--reference {reference}: not a level of {by}; levels: "
                           f"{', '.join(map(str, order))}")
    return order, ref


def compare(df: pd.DataFrame, by: str, metrics: list[str], dirs: dict[str, bool],
            axes: list[str], reference=None, levels: list | None = None,
            alpha: float = stats.ALPHA) -> pd.DataFrame:
    """Each level of `by` against the reference level, paired on every other factor."""
    if by not in df.columns:
        raise ResultsError(f"--by {by}: no such column; axes of this run: {', '.join(axes)}")
    if by == "prompt_key":
        raise ResultsError("--by prompt_key: the prompt-set entry is the unit of inference, not a "
                           f"factor to compare; axes of this run: {', '.join(axes)}")
    require_columns(df, ["status", "prompt_key", *metrics], "the results table")
    ok = finished(df, "the run")
    order, ref = _order(ok, by, levels, reference)
    key = pair_key(ok, by, axes)
    pair = group_codes(ok, key)
    level_of_row = np.array([next(i for i, v in enumerate(order) if v == u)
                             for u in pd.unique(ok[by])])[pd.factorize(ok[by])[0]]
    check_unique(ok, key + [by], f"compare --by {by}",
                 f"Pairs are matched on {', '.join(key)}: compare one configuration at a time "
                 "(a run mixing two configurations: rerun under a new name).", skip=metrics,
                 codes=pair * len(order) + level_of_row)
    prompts, _ = pd.factorize(ok["prompt_key"])
    prompt_of_pair = np.zeros(pair.max() + 1, dtype=np.int64)
    prompt_of_pair[pair] = prompts
    family = len(order) - 1
    n_prompts = int(prompts.max()) + 1
    rows = []
    for metric in metrics:
        grid = np.full((len(order), len(prompt_of_pair)), np.nan)
        grid[level_of_row, pair] = _numeric(ok[metric]).to_numpy(float)
        hib = dirs.get(metric, True)
        reference_values = grid[order.index(ref)]
        for i, level in enumerate(order):
            if level == ref:
                continue
            use = np.isfinite(grid[i]) & np.isfinite(reference_values)
            r, v, pc = reference_values[use], grid[i][use], prompt_of_pair[use]
            inf = stats.t_inference(stats.prompt_means(v - r, pc, n_prompts), family, alpha)
            means = [np.nanmean(stats.prompt_means(x, pc, n_prompts)) if use.any() else np.nan
                     for x in (r, v)]
            rows.append({"axis": by, "level": level, "reference": ref, "metric": metric,
                         "n_pairs": int(use.sum()), **_row(inf), "mean_reference": means[0],
                         "mean_level": means[1], "win_rate": stats.win_rate(v - r, hib),
                         "verdict": str(stats.compare_verdicts(inf, hib))})
    return pd.DataFrame(rows, columns=COLUMNS)


COLUMNS = ["axis", "level", "reference", "metric", "n_pairs", "n_prompts", "mean_reference",
           "mean_level", "mean_diff", "ci_low", "ci_high", "ci_level", "win_rate", "p_value",
           "p_adj", "family", "verdict"]


def _row(inf: stats.Inference) -> dict:
    return {"n_prompts": int(inf.n_prompts), "mean_diff": float(inf.mean),
            "ci_low": float(inf.ci_low), "ci_high": float(inf.ci_high), "ci_level": inf.level,
            "p_value": float(inf.p_value), "p_adj": float(inf.p_adj), "family": inf.family}


def marginal_effects(df: pd.DataFrame, metrics: list[str], dirs, axes: list[str],
                     run_dir=None) -> pd.DataFrame:
    """`compare` for every axis of the run (each against its first level)."""
    parts = []
    for axis in axes:
        if axis in df.columns and df[axis].nunique() > 1:
            levels = axis_levels(run_dir, axis) if run_dir else None
            parts.append(compare(df, axis, metrics, dirs, axes, levels=levels))
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    # levels of different axes have different types: text, so every table format can hold them
    return out.assign(level=out.level.map(str), reference=out.reference.map(str))


def interaction(df: pd.DataFrame, a: str, b: str, metric: str,
                axes: list[str] | None = None) -> pd.DataFrame:
    """Mean of `metric` over the (a, b) grid: rows a, columns b."""
    missing = [c for c in (a, b) if c not in df.columns]
    if missing:
        allowed = [c for c in dict.fromkeys([*(axes or []), *BASE_FACTORS]) if c in df.columns]
        raise ResultsError(f"--interaction {' '.join(missing)}: no such column; use an axis or "
                           f"factor of this run: {', '.join(allowed)}")
    ok = finished(df, "the run")
    return ok.assign(_m=_numeric(ok[metric])).pivot_table(index=a, columns=b, values="_m",
                                                           aggfunc="mean")
