"""Regression gate: a candidate run against a baseline run on matched tasks.

Tasks are matched on prompt, negative prompt, prompt-set entry, seed, sampler, steps, CFG, size and
the sweep axes of both runs (`model` among them only when it is an axis of both). Every matched
task counts: a candidate task that failed (`error`, `nan`, a missing score) is a failure in the
`failures` row, which compares the failure rates and can regress on its own; baseline tasks with no
candidate task are counted as unmatched in every row. Inference is `analysis.stats` (t over
per-prompt mean differences), Bonferroni-corrected within a family:

- the gate family: the overall rows of every metric and of `failures` (and, when the runs are
  matched on model, every per-model row): it decides the exit status;
- one family per other axis: its levels x (metrics + failures), shown with their own verdicts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from animagine_batch.rundir import ResultsError

from . import stats
from .compare import _numeric, check_unique, finished, group_codes, require_columns

MATCH = ["prompt", "negative_prompt", "prompt_key", "seed", "sampler", "steps", "cfg", "width",
         "height"]
FAILURES = "failures"  # the row comparing failure rates (status not ok, or a score missing)
COLUMNS = ["scope", "level", "metric", "gate", "baseline_tasks", "matched", "unmatched",
           "candidate_extra", "candidate_error", "candidate_nan", "candidate_missing", "n_pairs",
           "n_prompts", "mean_baseline", "mean_candidate", "delta", "ci_low", "ci_high",
           "ci_level", "win_rate", "p_value", "p_adj", "family", "verdict"]


def match_key(base: pd.DataFrame, cand: pd.DataFrame, axes: list[str], ignore=()) -> list[str]:
    """The columns a candidate task must share with its baseline task. `axes` are the sweep axes
    of both runs; `model` is matched only when it is one of them."""
    if "prompt_key" in ignore:
        raise ResultsError("--ignore prompt_key: the prompt-set entry is the unit of inference "
                           "and is always matched")
    return [c for c in dict.fromkeys(MATCH + list(axes))
            if c in base.columns and c in cand.columns and c not in ignore and c != "model_name"]


def _scopes(base: pd.DataFrame, cand: pd.DataFrame, key: list[str], axes: list[str]):
    """(scope, level, baseline mask, candidate mask, gate) for the overall scope, each model
    (a gate scope) and each level of every other matched axis with two or more levels."""
    out = [("all", "", np.ones(len(base), bool), np.ones(len(cand), bool), True)]
    for axis in sorted((a for a in axes if a in key), key=lambda a: a != "model"):
        levels = pd.unique(base[axis])
        if len(levels) < 2:
            continue
        for level in levels:
            out.append((axis, str(level), (base[axis] == level).to_numpy(),
                        (cand[axis] == level).to_numpy(), axis == "model"))
    return out


def regress(base: pd.DataFrame, cand: pd.DataFrame, metrics: list[str], dirs: dict[str, bool],
            axes: list[str], margin: float = 0.0, ignore=(),
            alpha: float = stats.ALPHA) -> pd.DataFrame:
    """One row per scope and metric (plus `failures`): counts, means, delta, interval, p-values
    and verdict; `gate` marks the rows that decide the exit status."""
    for df, what in ((base, "the baseline"), (cand, "the candidate")):
        require_columns(df, ["status", "prompt_key", *metrics], what)
        if df.empty:
            raise ResultsError(f"{what} has no rows: nothing to regress against")
    finished(base, "the baseline")
    key = match_key(base, cand, axes, ignore)
    hint = (f"Tasks are matched on {', '.join(key)} (model only when it is a sweep axis of both "
            "runs): regress one configuration at a time, or make the differing field an axis.")
    # one set of codes for the key of both runs: a task's counterpart has the same code
    codes = group_codes(pd.concat([base[key], cand[key]], ignore_index=True), key)
    bcode, ccode = codes[: len(base)], codes[len(base):]
    for df, what, c in ((base, "the baseline", bcode), (cand, "the candidate", ccode)):
        check_unique(df, key, what, hint, skip=metrics, codes=c)
    where = np.full(codes.max() + 1, -1)
    where[ccode] = np.arange(len(cand))
    match = where[bcode]
    matched = match >= 0
    if not matched.any():
        raise ResultsError(f"no matched tasks between the baseline and the candidate (matched on "
                           f"{', '.join(key)}); pass --ignore for fields that differ on purpose")
    in_base = np.zeros(len(where), bool)
    in_base[bcode] = True
    extra = ~in_base[ccode]
    take = np.where(matched, match, 0)
    values = {}
    for m in metrics:
        values[f"{m}_base"] = _numeric(base[m]).to_numpy(float)
        values[f"{m}_cand"] = np.where(matched, _numeric(cand[m]).to_numpy(float)[take], np.nan)
    status = {"base": base["status"].to_numpy(),
              "cand": np.where(matched, cand["status"].to_numpy()[take], None)}
    ok = {s: status[s] == "ok" for s in status}
    present = {s: {m: np.isfinite(values[f"{m}_{s}"]) for m in metrics} for s in status}
    # a task fails when it is not ok, or lacks a score that its counterpart has
    lost = {s: np.zeros(len(base), bool) for s in status}
    for m in metrics:
        lost["base"] |= present["cand"][m] & ~present["base"][m]
        lost["cand"] |= present["base"][m] & ~present["cand"][m]
    failed = {s: ~ok[s] | lost[s] for s in status}
    prompts, _ = pd.factorize(base["prompt_key"])
    n_codes = int(prompts.max()) + 1
    scopes = _scopes(base, cand, key, axes)
    names = [FAILURES, *metrics]
    gate_family = sum(s[4] for s in scopes) * len(names)
    rows = []
    for scope, level, bmask, cmask, gate in scopes:
        family = gate_family if gate else \
            sum(1 for s in scopes if s[0] == scope) * len(names)
        m = bmask & matched
        counts = {"baseline_tasks": int(bmask.sum()), "matched": int(m.sum()),
                  "unmatched": int(bmask.sum() - m.sum()),
                  "candidate_extra": int((extra & cmask).sum()),
                  "candidate_error": int((m & (status["cand"] == "error")).sum()),
                  "candidate_nan": int((m & (status["cand"] == "nan")).sum())}
        for name in names:
            if name == FAILURES:
                use = m
                b, c = failed["base"][use].astype(float), failed["cand"][use].astype(float)
                hib, row_margin, missing = False, 0.0, m & ok["cand"] & lost["cand"]
            else:
                b_all, c_all = values[f"{name}_base"], values[f"{name}_cand"]
                use = m & ok["base"] & ok["cand"] & present["base"][name] & present["cand"][name]
                b, c = b_all[use], c_all[use]
                hib, row_margin = dirs.get(name, True), margin
                missing = m & ok["cand"] & present["base"][name] & ~present["cand"][name]
            rows.append({"scope": scope, "level": level, "metric": name, "gate": gate, **counts,
                         "candidate_missing": int(missing.sum()),
                         **_infer(b, c, prompts[use], n_codes, family, alpha, hib, row_margin)})
    return pd.DataFrame(rows, columns=COLUMNS)


def _infer(b: np.ndarray, c: np.ndarray, codes: np.ndarray, n_codes: int, family: int,
           alpha: float, higher_is_better: bool, margin: float) -> dict:
    inf = stats.t_inference(stats.prompt_means(c - b, codes, n_codes), family, alpha)
    means = [np.nanmean(stats.prompt_means(x, codes, n_codes)) if len(x) else np.nan
             for x in (b, c)]
    return {"n_pairs": int(len(b)), "n_prompts": int(inf.n_prompts), "mean_baseline": means[0],
            "mean_candidate": means[1], "delta": float(inf.mean), "ci_low": float(inf.ci_low),
            "ci_high": float(inf.ci_high), "ci_level": inf.level,
            "win_rate": stats.win_rate(c - b, higher_is_better), "p_value": float(inf.p_value),
            "p_adj": float(inf.p_adj), "family": inf.family,
            "verdict": str(stats.gate_verdicts(inf, higher_is_better, margin))}


def gate_outcome(table: pd.DataFrame) -> tuple[int, str]:
    """Exit status and the verdict line: 1 when a gate row regressed, 2 when a gate row has too
    few prompts to decide (and none regressed), else 0."""
    gate = table[table["gate"]]
    bad = gate[gate["verdict"] == "regressed"]
    if len(bad):
        where = [f"{r.metric}" + (f" ({r.scope} {r.level})" if r.scope != "all" else "")
                 for r in bad.itertuples()]
        return 1, f"REGRESSED on {', '.join(where)}"
    few = gate[gate["verdict"] == stats.TOO_FEW]
    if len(few):
        r = few.iloc[0]
        scope = "" if r.scope == "all" else f" for {r.scope} {r.level}"
        need = f"a verdict needs at least {stats.MIN_PROMPTS}"
        if r.metric == FAILURES:
            return 2, (f"cannot decide: the runs have {r.n_prompts} matched prompts{scope}; "
                       f"{need} (run more prompt-set entries)")
        return 2, (f"cannot decide: {r.metric} has scored pairs for {r.n_prompts} prompts{scope}; "
                   f"{need} (name the metrics to gate with --metric)")
    return 0, "no regression"


def summary(table: pd.DataFrame, alpha: float = stats.ALPHA) -> str:
    """The counts of the overall scope, in words."""
    r = table[(table["scope"] == "all") & (table["metric"] == FAILURES)].iloc[0]
    missing = table[(table["scope"] == "all") & (table["metric"] != FAILURES)]
    parts = [f"matched {r.matched:,} of {r.baseline_tasks:,} baseline tasks ({r.unmatched:,} "
             f"unmatched; {r.candidate_extra:,} candidate tasks not in the baseline)",
             f"candidate failures among the matched: {r.candidate_error:,} error, "
             f"{r.candidate_nan:,} nan, {r.candidate_missing:,} with a missing score"
             + "".join(f" ({m.metric} {m.candidate_missing:,})" for m in missing.itertuples()
                       if m.candidate_missing)]
    gate = table[table["gate"]]
    parts.append(f"gate: {len(gate)} rows, Bonferroni-corrected: each interval at "
                 f"{100 * gate['ci_level'].iloc[0]:.4g}% (family-wise {100 * (1 - alpha):.4g}%)")
    return "\n".join(parts)
