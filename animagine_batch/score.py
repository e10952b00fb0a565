"""The score stage: re-score an existing run from its PNGs, without regenerating.

Each scorer writes `scores/<scorer>/part-*.parquet` (task_id + its columns + the hash of its
config), atomically, a chunk at a time. A task already scored with the same config is skipped, so
rescoring is idempotent and resumable; `analysis.load_run` merges the newest scores over the
columns written at generation time. An image that is missing, damaged (not matching its
`image_sha256`) or outside the run is named and left unscored; the rest are scored.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from .errors import ConfigError
from .jobspec.job import ScorerSpec
from .rundir import load_run
from .rundir.images import ImageProblem, check_image, listed, open_image
from .rundir.lock import RunLock
from .rundir.schema import scores_schema
from .rundir.storage import location
from .rundir.write import ScoresStore
from .scorers import reference, registry
from .scorers.apply import score

CHUNK = 64  # images per written part


def config_hash(spec: ScorerSpec) -> str:
    """Of the scorer's kind, version and options; `reference` (how the reference check runs)
    does not change a score and is left out."""
    cls = registry.scorer_class(spec.kind)
    options = json.dumps({k: v for k, v in spec.options.items() if k != "reference"},
                         sort_keys=True)
    return hashlib.sha256(f"{spec.kind}|{cls.version}|{options}".encode()).hexdigest()[:16]


def rescore(run_dir: Path, specs: tuple[ScorerSpec, ...], device: str, out=None) -> dict:
    """Score every `ok` image of the run with each scorer; returns {scorer: images scored}."""
    out = out or sys.stdout  # looked up per call: sys.stdout can be replaced
    from .engine.device import resolve_device
    from .jobspec.job import RunnerSpec

    run_dir = location(run_dir)
    df = load_run(run_dir)
    if df.empty:
        raise ConfigError(f"run directory {run_dir} has no results to score")
    ok = df[df["status"] == "ok"]
    problems = [check_image(run_dir, p, h) for p, h in zip(ok["image_path"], ok["image_sha256"])]
    damaged = [p for p in problems if p]
    if damaged:
        print(f"warning: {len(damaged):,} image(s) left unscored: {listed(damaged)}; rerun the "
              "job with --verify to regenerate them", file=sys.stderr)
        ok = ok[[p is None for p in problems]]
    dev, _ = resolve_device(RunnerSpec(device=device))
    scorers = [(spec, _build(spec, dev)) for spec in specs]  # all load before any write
    print(reference.summary({spec.name: scorer.provenance for spec, scorer in scorers}), file=out)
    with RunLock(run_dir, "score"):
        return _score_all(run_dir, ok, scorers, out)


def _build(spec: ScorerSpec, device: str):
    try:
        return registry.build(spec, device)
    except (ValueError, TypeError) as e:  # an option of the wrong type reaching the scorer
        raise ConfigError(f"scorer.{spec.name}: an option has a value the scorer cannot use "
                          f"({e}); options given: {spec.options_json}") from None


def _score_all(run_dir: Path, ok, scorers, out) -> dict:
    from tqdm import tqdm

    done_counts = {}
    for spec, scorer in scorers:
        digest = config_hash(spec)
        store = ScoresStore(run_dir, spec.name, _schema(spec, digest, scorer))
        columns = registry.columns(spec)
        done = store.done(digest)
        todo = ok[~ok["task_id"].isin(done)]
        print(f"scorer {spec.name}: {len(ok) - len(todo):,} done, {len(todo):,} to do", file=out)
        records = todo.to_dict("records")
        with tqdm(total=len(records), unit="img", desc=spec.name, file=sys.stderr) as bar:
            for i in range(0, len(records), CHUNK):
                rows = records[i : i + CHUNK]
                score([scorer], [_image(run_dir, r) for r in rows], rows)
                store.write({"task_id": [r["task_id"] for r in rows],
                             **{c: [r[c] for r in rows] for c in columns},
                             "scorer_config": [digest] * len(rows)})
                bar.update(len(rows))
        done_counts[spec.name] = len(records)
    return done_counts


def _image(run_dir: Path, row: dict):
    try:
        return open_image(run_dir, row["image_path"], row["image_sha256"])
    except ImageProblem as e:  # it was intact a moment ago: something is changing the run
        raise ConfigError(f"score stopped: {e}; the scores written so far are kept") from None


def _schema(spec: ScorerSpec, digest: str, scorer=None):
    meta = {"scorer": spec.name, "config": digest, **registry.describe(spec, scorer)}
    return scores_schema(registry.columns(spec), meta)
