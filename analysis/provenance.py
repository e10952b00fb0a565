"""Which scorer made each metric's values, from the provenance in the Parquet file metadata.

A value of a metric comes from the part that holds it last for its task, in the order
`load_run` lays them (the results parts, then every rescoring under `scores/`). Each part's
metadata names the scorer that wrote the column: its kind, version, weights and the
preprocessing it used. Two values made by scorers that differ in any of these are not
comparable, so `compare`, `regress` and the report refuse to compare a metric whose values come
from more than one scorer identity, and say which fields differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from animagine_batch.rundir import ResultsError
from animagine_batch.rundir.layout import all_parts
from animagine_batch.rundir.storage import read_schema, read_table
from animagine_batch.rundir.provenance import part_scorers

IDENTITY = ("kind", "version", "id", "revision", "path", "model", "pretrained", "embedded",
            "model_name", "resize_mode", "preprocessing")
NOT_RECORDED = "not recorded"


def identity(desc: dict) -> dict:
    out = {k: desc[k] for k in IDENTITY if k in desc and k != "preprocessing"}
    out["preprocessing"] = desc.get("preprocessing") or NOT_RECORDED
    return out


def _maker(scorers: dict[str, dict], metric: str) -> tuple[str, dict] | None:
    for name, desc in scorers.items():
        if metric in (desc.get("columns") or desc.get("higher_is_better") or {}):
            return name, identity(desc)
    return None


def metric_sources(run_dir: Path | str, metrics: list[str]) -> dict[str, list[dict]]:
    """metric -> the distinct scorer identities its values come from, each with the scorer
    name and the number of tasks whose value it made."""
    frames = []
    for order, (path, rescored) in enumerate(all_parts(run_dir)):
        scorers = part_scorers(path, rescored)
        names = set(read_schema(path).names)
        made = {m: _maker(scorers, m) for m in metrics if m in names}
        made = {m: v for m, v in made.items() if v is not None}
        if not made:
            continue
        table = read_table(path, columns=["task_id", *made]).to_pandas()
        for metric in made:
            t = table[table[metric].notna()]
            frames.append(pd.DataFrame({"metric": metric, "task_id": t["task_id"],
                                        "order": order, "scorer": made[metric][0],
                                        "identity": json.dumps(made[metric][1],
                                                               sort_keys=True)}))
    out: dict[str, list[dict]] = {m: [] for m in metrics}
    if not frames:
        return out
    values = pd.concat(frames, ignore_index=True).sort_values("order", kind="stable")
    last = values.drop_duplicates(["metric", "task_id"], keep="last")
    for (metric, ident, scorer), group in last.groupby(["metric", "identity", "scorer"],
                                                      sort=False):
        out[metric].append({"scorer": scorer, "identity": json.loads(ident),
                            "tasks": int(len(group))})
    return out


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differences(a: dict, b: dict) -> list[str]:
    """The fields in which two scorer identities differ, as `field: x vs y`."""
    fa, fb = _flat(a), _flat(b)
    return [f"{k}: {fa.get(k, 'absent')!r} vs {fb.get(k, 'absent')!r}"
            for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def mismatches(runs: dict[str, Path], metrics: list[str]) -> dict[str, str]:
    """metric -> why its values are not comparable, over one run or several (`runs`: label ->
    run directory). Empty when every metric comes from one scorer identity."""
    sources = {label: metric_sources(run, metrics) for label, run in runs.items()}
    found = {}
    for metric in metrics:
        seen = [(label, s) for label, by in sources.items() for s in by[metric]]
        idents = {json.dumps(s["identity"], sort_keys=True) for _, s in seen}
        if len(idents) < 2:
            continue
        first = seen[0]
        other = next(s for s in seen[1:] if s[1]["identity"] != first[1]["identity"])
        where = "; ".join(f"{s['tasks']:,} tasks{' of the ' + label if label else ''} by "
                          f"{s['scorer']}" for label, s in seen)
        found[metric] = (f"{metric}: {where}; they differ in "
                         + ", ".join(differences(first[1]["identity"], other[1]["identity"])))
    return found


def require_comparable(runs: dict[str, Path], metrics: list[str], allow: bool, command: str,
                       out=None) -> None:
    """Refuse (ResultsError) when a metric's values come from scorers that differ, unless
    `allow`; then say so on `out` and go on."""
    import sys

    found = mismatches(runs, metrics)
    if not found:
        return
    text = " | ".join(found.values())
    if allow:
        print(f"warning: comparing anyway (--allow-scorer-mismatch): {text}",
              file=out or sys.stderr)
        return
    raise ResultsError(
        f"{command}: {', '.join(found)} cannot be compared: their values come from scorers "
        f"that differ in weights or preprocessing ({text}). Scores made that way do not mean "
        "the same thing. Rescore with one scorer config (animagine-batch score RUN "
        "scorers=[...]), leave the metric out with --metric, or pass --allow-scorer-mismatch to "
        "compare anyway.")
