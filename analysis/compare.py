"""Paired strategy comparisons within a run, and regression of a candidate run against a baseline.

Two strategies are compared on the tasks that share every other factor: the prompt-set entry,
seed, model, sampler, steps, CFG, size and every other sweep axis.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

from . import stats
from .load import ResultsError, part_files

BASE_FACTORS = ["model", "prompt_key", "seed", "sampler", "steps", "cfg", "width", "height"]
LOWER_IS_BETTER = {"gen_seconds"}
DERIVED = {"model": ["model_name"], "size": ["width", "height"], "width": ["size"],
           "height": ["size"], "model_name": ["model"]}


def job_axes(run_dir: Path | str) -> list[str]:
    """The sweep axes of a run (grid then zip), from its job.yaml."""
    path = Path(run_dir) / "job.yaml"
    if not path.is_file():
        return []
    try:
        job = (yaml.safe_load(path.read_text()) or {}).get("job", {})
    except yaml.YAMLError as e:
        raise ResultsError(f"{path} is not valid YAML: {e}") from None
    sweep = job.get("sweep") or {}
    return [*(sweep.get("grid") or {}), *(sweep.get("zip") or {})]


def axis_levels(run_dir: Path | str, axis: str) -> list:
    job = yaml.safe_load((Path(run_dir) / "job.yaml").read_text()).get("job", {})
    sweep = job.get("sweep") or {}
    return list({**(sweep.get("grid") or {}), **(sweep.get("zip") or {})}.get(axis, []))


def directions(run_dir: Path | str) -> dict[str, bool]:
    """Column -> higher_is_better, from the scorer provenance in the results' Parquet metadata."""
    out = {c: False for c in LOWER_IS_BETTER}
    for path in part_files(Path(run_dir) / "results")[-1:]:
        meta = pq.read_schema(path).metadata or {}
        prov = json.loads(meta.get(b"animagine_batch", b"{}"))
        for scorer in (prov.get("scorers") or {}).values():
            out.update(scorer.get("higher_is_better") or {})
    return out


def metric_columns(df: pd.DataFrame, dirs: dict[str, bool]) -> list[str]:
    """Scorer metrics present in the table (numeric or boolean)."""
    return [c for c in dirs if c in df.columns and c not in LOWER_IS_BETTER]


def _numeric(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s.astype("float64") if s.dtype == bool else s, errors="coerce")


def pair_key(df: pd.DataFrame, by: str, axes: list[str], ignore=()) -> list[str]:
    drop = {by, *DERIVED.get(by, []), *ignore}
    return [c for c in dict.fromkeys(BASE_FACTORS + list(axes)) if c in df.columns and c not in drop]


def compare(df: pd.DataFrame, by: str, metrics: list[str], dirs: dict[str, bool],
            axes: list[str], reference=None, levels: list | None = None) -> pd.DataFrame:
    """Each level of `by` against the reference level, paired on every other factor."""
    if by not in df.columns:
        raise ResultsError(f"--by {by}: no such column; axes of this run: {', '.join(axes)}")
    ok = df[df["status"] == "ok"]
    present = list(pd.unique(ok[by]))
    order = [v for v in (levels or []) if v in present] + [v for v in present if v not in (levels or [])]
    if reference is None:
        reference = order[0]
    ref = next((v for v in order if str(v) == str(reference)), None)
    if ref is None:
        raise ResultsError(f"--reference {reference}: not a level of {by}; levels: "
                           f"{', '.join(map(str, order))}")
    key = pair_key(ok, by, axes)
    rows = []
    for metric in metrics:
        if metric not in ok.columns:
            raise ResultsError(f"--metric {metric}: no such column")
        wide = ok.assign(_m=_numeric(ok[metric])).set_index(key + [by])["_m"].unstack(by)
        prompts = wide.index.get_level_values("prompt_key") if "prompt_key" in key else \
            np.arange(len(wide))
        hib = dirs.get(metric, True)
        for level in order:
            if level == ref:
                continue
            r = stats.paired(wide[ref].to_numpy(float), wide[level].to_numpy(float),
                             np.asarray(prompts), hib)
            rows.append({"axis": by, "level": level, "reference": ref, "metric": metric,
                         **r.__dict__})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["p_holm"] = np.nan
    for metric, idx in out.groupby("metric").groups.items():
        out.loc[idx, "p_holm"] = stats.holm(out.loc[idx, "p_value"].to_numpy())
    out["verdict"] = [stats.verdict(d, p, dirs.get(m, True))
                      for d, p, m in zip(out.mean_diff, out.p_holm, out.metric)]
    return out


def marginal_effects(df: pd.DataFrame, metrics: list[str], dirs, axes: list[str],
                     run_dir=None) -> pd.DataFrame:
    """`compare` for every axis of the run (each against its first level)."""
    parts = []
    for axis in axes:
        if axis in df.columns and df[axis].nunique() > 1:
            levels = axis_levels(run_dir, axis) if run_dir else None
            parts.append(compare(df, axis, metrics, dirs, axes, levels=levels))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def interaction(df: pd.DataFrame, a: str, b: str, metric: str) -> pd.DataFrame:
    """Mean of `metric` over the (a, b) grid: rows a, columns b."""
    ok = df[df["status"] == "ok"]
    return ok.assign(_m=_numeric(ok[metric])).pivot_table(index=a, columns=b, values="_m",
                                                           aggfunc="mean")


def regress(base: pd.DataFrame, cand: pd.DataFrame, metrics: list[str], dirs: dict[str, bool],
            axes: list[str], margin: float = 0.0, ignore=()) -> pd.DataFrame:
    """Candidate vs baseline on matched tasks (same prompt, negative, seed, settings and axes;
    any model). One row per metric overall and per level of each axis."""
    key = [c for c in dict.fromkeys(["prompt", "negative_prompt", "prompt_key", "seed", "sampler",
                                     "steps", "cfg", "width", "height", *axes])
           if c in base.columns and c in cand.columns and c not in ignore
           and c not in ("model", "model_name")]
    b = base[base["status"] == "ok"]
    c = cand[cand["status"] == "ok"]
    merged = b.merge(c, on=key, suffixes=("_base", "_cand"))
    if merged.empty:
        raise ResultsError("no matched tasks between the baseline and the candidate (matched on "
                           f"{', '.join(key)}); pass --ignore for fields that differ on purpose")
    rows = []
    scopes = [("all", "", merged)]
    for axis in axes:
        col = axis if axis in key else None
        if col and merged[col].nunique() > 1:
            scopes += [(axis, level, sub) for level, sub in merged.groupby(col, sort=False)]
    for metric in metrics:
        hib = dirs.get(metric, True)
        for axis, level, sub in scopes:
            r = stats.paired(_numeric(sub[f"{metric}_base"]).to_numpy(float),
                             _numeric(sub[f"{metric}_cand"]).to_numpy(float),
                             sub["prompt_key"].to_numpy() if "prompt_key" in sub else
                             np.arange(len(sub)), hib)
            low, high = (r.ci_low, r.ci_high) if hib else (-r.ci_high, -r.ci_low)
            regressed = high < -margin  # the whole CI lies beyond the margin, the bad way
            improved = low > margin
            rows.append({"scope": axis, "level": level, "metric": metric, "n_pairs": r.n_pairs,
                         "n_prompts": r.n_prompts, "mean_baseline": r.mean_reference,
                         "mean_candidate": r.mean_level, "delta": r.mean_diff,
                         "ci_low": r.ci_low, "ci_high": r.ci_high, "win_rate": r.win_rate,
                         "verdict": "regressed" if regressed else
                         ("improved" if improved else "no regression")})
    return pd.DataFrame(rows)
