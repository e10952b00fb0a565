"""A run's job.yaml: what the run was asked, what a rerun may change, and its history.

- Column types: a job whose results columns cannot be merged with the rows already in the run
  (an axis whose levels were numbers and are now text, ...) is refused; one run directory cannot
  hold both. Use a new `name`.
- The experiment: everything but the sweep's levels and seeds, the runner, the output settings,
  `max_tasks` and the batch sizes (model identity, prompt set and its contents, prompt,
  generation, hi-res, LoRA and wildcard settings, scorers and their options, the set of axes).
  A change is refused unless the run is explicitly extended (`run --extend`); a new `name`
  starts a new run.
- The sweep's levels, seeds and sample may change freely: the new tasks are added, finished ones
  are kept (the documented resume-with-a-changed-sweep behaviour).

job.yaml describes the latest configuration; earlier ones that differ are kept under `history`,
so the file accounts for every row of the run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import yaml

from ..errors import ConfigError
from .layout import JOB_FILE, RESULTS
from .read import RESULT_KEYS, usable_schemas
from .storage import location

RUN_KEYS = ("name", "runner", "pipeline", "output", "max_tasks")  # how a job runs, not what it asks
SWEEP_KEYS = ("grid", "zip", "seeds", "base_seed", "sample")


def prompt_set_digest(prompt_set) -> str:
    """A hash of the prompt-set entries, so an edited prompt file counts as a change."""
    entries = [[e.key, e.subject, e.character, e.series, list(e.tags)] for e in prompt_set.entries]
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


class _Loader(yaml.SafeLoader):
    """job.yaml comes from a run directory, which may have been shared: no aliases (an alias
    bomb is a few bytes that expand to billions of nodes); ours never contain any."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("it uses a YAML alias, which job.yaml never does")
        return super().compose_node(parent, index)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:
        return True


def previous(run_dir: Path) -> dict | None:
    """The run's job.yaml as data, or None when there is none."""
    path = location(run_dir) / JOB_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path} cannot be read ({' '.join(str(e).split())}); restore it or "
                          "give the job a new name") from None
    return data if isinstance(data, dict) and isinstance(data.get("job"), dict) else None


def job_section(run_dir: Path | str) -> dict:
    """The configuration the run was made with (job.yaml's `job`), {} when it has none."""
    data = previous(location(run_dir))
    return data["job"] if data else {}


def job_axes(run_dir: Path | str) -> list[str]:
    """The sweep axes of a run (grid then zip), from its job.yaml."""
    sweep = job_section(run_dir).get("sweep") or {}
    return [*(sweep.get("grid") or {}), *(sweep.get("zip") or {})]


def axis_levels(run_dir: Path | str, axis: str) -> list:
    """An axis's distinct levels in the order the job lists them (a zip axis may repeat one)."""
    sweep = job_section(run_dir).get("sweep") or {}
    levels = {**(sweep.get("grid") or {}), **(sweep.get("zip") or {})}.get(axis, [])
    return list({repr(v): v for v in levels}.values())


def _experiment(job: dict, prov: dict) -> dict:
    """The part of a job that defines its experiment."""
    out = {k: v for k, v in job.items() if k not in (*RUN_KEYS, "sweep", "model", "prompts")}
    out["generation"] = {k: v for k, v in (job.get("generation") or {}).items()
                         if k != "batch_size"}
    options = {n: {k: v for k, v in o.items() if k != "batch_size"} if isinstance(o, dict) else o
               for n, o in (job.get("scorer") or {}).items()}
    out["scorer"] = json.dumps(options, sort_keys=True, default=str)  # compared whole
    sweep = job.get("sweep") or {}
    out["axes"] = {part: sorted(sweep.get(part) or {}) for part in ("grid", "zip")}
    models = prov.get("models") or {}
    out["models"] = {n: m.get("identity") for n, m in models.items()} or job.get("model")
    out["prompts"] = job.get("prompts")
    if prov.get("prompt_set"):
        out["prompt_set"] = prov["prompt_set"]
    return out


def _diff(old, new, key: str = "") -> list[str]:
    """`key: old -> new` for every difference; keys present on one side only are left out
    (a newer version may add a setting with its default)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in old if k in new for d in _diff(old[k], new[k], f"{key}.{k}" if key
                                                          else str(k))]
    return [] if old == new else [f"{key}: {old!r} -> {new!r}"]


def experiment_changes(before: dict, raw: dict, prov: dict) -> list[str]:
    old = _experiment(before["job"], before.get("provenance") or {})
    new = _experiment(raw, prov)
    if "prompt_set" in old and "prompt_set" in new:  # the same entries, however they were named
        old.pop("prompts"), new.pop("prompts")
    return _diff(old, new)


def type_clashes(run_dir: Path, schema: pa.Schema) -> list[str]:
    """Columns the job would write with a type the run's parts cannot be merged with."""
    found: dict[str, str] = {}
    for _, old in usable_schemas(location(run_dir) / RESULTS, RESULT_KEYS):
        for field in schema:
            if field.name in found or field.name not in old.names:
                continue
            had = old.field(field.name)
            try:
                pa.unify_schemas([pa.schema([had]), pa.schema([field])],
                                 promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                found[field.name] = f"column {field.name}: {had.type} in the run, {field.type} now"
    return list(found.values())


def check(run_dir: Path, raw: dict, prov: dict, schema: pa.Schema, extend: bool) -> dict | None:
    """Refuse a rerun that the run directory cannot hold; returns the previous job.yaml data."""
    before = previous(run_dir)
    clashes = type_clashes(run_dir, schema)
    if clashes:
        raise ConfigError(f"run directory {run_dir} holds rows whose column types this job would "
                          f"change ({'; '.join(clashes)}); one run directory cannot hold both: "
                          "give the job a new name (name=NEW) or another output.root; nothing "
                          "was written")
    changes = experiment_changes(before, raw, prov) if before else []
    if changes and not extend:
        shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6
                                          else "")
        raise ConfigError(f"run directory {run_dir} holds another configuration of job "
                          f"{raw.get('name')!r} ({shown}); give the job a new name (name=NEW) to "
                          "start a new run, or pass --extend to add this job's tasks to the run "
                          "(job.yaml keeps the earlier configuration under history). To add a "
                          "scorer to finished images use `animagine-batch score`. Nothing was "
                          "written")
    return before


def job_yaml(raw: dict, prov: dict, before: dict | None) -> str:
    """job.yaml: the latest configuration and provenance, earlier differing ones as history."""
    history = list((before or {}).get("history") or [])
    if before and _compare_key(before["job"]) != _compare_key(raw):
        history.append({"job": before["job"], "provenance": before.get("provenance")})
    data = {"job": raw, "provenance": prov}
    if history:
        data["history"] = history
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def _compare_key(job: dict) -> dict:
    out = {k: v for k, v in job.items() if k not in RUN_KEYS}
    out["generation"] = {k: v for k, v in (job.get("generation") or {}).items()
                         if k != "batch_size"}
    return out
