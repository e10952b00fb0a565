"""The driver: validated JobSpec -> tasks -> pending units -> runner -> store -> summary."""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
import sys
import time
from collections import Counter
from dataclasses import dataclass

from . import __version__, offline
from .engine import sources as models
from .engine.generator import token_count
from .jobspec import sweep
from .jobspec.axes import recorded
from .jobspec.job import JobSpec, count_tasks
from .jobspec.loras import resolve
from .jobspec.prompt_sets import PromptLibrary, PromptSet
from .jobspec.values import is_off
from .offline.lora import ensure_embedded
from .rundir import done_ids
from .rundir import jobfile
from .rundir.lock import RunLock
from .rundir.schema import axis_type, results_schema
from .rundir.storage import is_remote, location
from .rundir.verify import verify as verify_run
from .rundir.write import RunStore, check_writable
from .runners import WorkerContext, make_runner
from .scorers import reference, registry

TOKEN_LIMIT = 75  # each CLIP encoder sees 77 positions: start, 75 tokens, end


@dataclass
class Plan:
    spec: JobSpec
    prompt_set: PromptSet
    identities: dict[str, str]
    tasks: list[sweep.Task]


def make_plan(spec: JobSpec, prompt_sets: PromptLibrary) -> Plan:
    """Check the model and scorer sources, identify the models and LoRAs, and expand the prompt
    set (as the parser loaded it) into tasks."""
    for m in spec.models.values():
        models.check_source(m)
    for sc in spec.scorers:
        registry.check(sc)
    identities = {name: models.identity(m) for name, m in spec.models.items()}
    for text in lora_paths(spec):
        ensure_embedded(text)  # the offline tiny LoRA is built on first use
        identities[f"lora:{resolve(text)}"] = models.lora_identity(resolve(text))
    prompt_set = prompt_sets.load(spec.prompts, spec.wildcards, spec.sweep.seeds[0])
    return Plan(spec, prompt_set, identities, sweep.expand(spec, prompt_set, identities))


def lora_paths(spec: JobSpec) -> list[str]:
    """Every LoRA the job can use, as written: its `loras` and the levels of a `lora.path`
    axis."""
    paths = [lo.path for lo in spec.loras]
    if "lora.path" in spec.sweep.axes:
        paths += [str(v) for v in spec.sweep.levels("lora.path") if not is_off(v)]
    return list(dict.fromkeys(paths))


def long_prompt_warnings(tasks: list[sweep.Task], limit: int = 5) -> list[str]:
    """Tasks with `weighting: none` whose prompt or negative exceeds what the text encoders see
    (plain diffusers truncates), counted with the real CLIP tokenizer (both SDXL tokenizers
    share its vocabulary). With `a1111` weighting long prompts are encoded in chunks."""
    tasks = [t for t in tasks if t.weighting == "none"]
    if not tasks:
        return []
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(offline.tokenizer_dir())
    counts: dict[str, int] = {}
    found = []
    for t in tasks:
        for label, text in (("prompt", t.prompt), ("negative prompt", t.negative_prompt)):
            if text not in counts:
                counts[text] = token_count(tok, text)
            if counts[text] > TOKEN_LIMIT:
                found.append(f"task {t.task_id} ({t.prompt_key}, seed {t.seed}): {label} has "
                             f"{counts[text]} tokens; with weighting none the text encoders see the "
                             f"first {TOKEN_LIMIT} (weighting a1111 encodes all of them)")
    if len(found) > limit:
        found = found[:limit] + [f"... and {len(found) - limit} more over {TOKEN_LIMIT} tokens"]
    return found


def axis_types(spec: JobSpec) -> dict[str, str]:
    """The axis columns: the swept axes, then the recorded axes the job sets (cfg_cutoff)."""
    return {a: axis_type(spec.sweep.levels(a), a) for a in spec.sweep.axes} | {
        a: axis_type([v], a) for a, v in recorded(spec).items()}


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def provenance(spec: JobSpec, raw: dict, identities: dict[str, str]) -> dict:
    """What made the run: versions (read from the installed distributions, without importing
    them), the config's hash, model and LoRA identities, licences and scorers."""
    return {
        "loras": {k.removeprefix("lora:"): v for k, v in identities.items()
                  if k.startswith("lora:")},
        "package": __version__, "python": platform.python_version(),
        **{name: _version(name) for name in ("torch", "diffusers", "transformers")},
        "config_sha256": hashlib.sha256(json.dumps(raw, sort_keys=True, default=str)
                                        .encode()).hexdigest(),
        "models": {n: {"id": m.id, "revision": m.revision, "path": m.path, "vae": m.vae,
                       "identity": identities[n], "licence": m.licence}
                   for n, m in spec.models.items()},
        "scorers": {sc.name: registry.describe(sc) for sc in spec.scorers},
    }


def loaded_provenance(schema, prov: dict, result):
    """Add what the first worker's loaded scorers report (the preprocessing they use, their
    reference check) to the provenance, and return the schema carrying it."""
    for name, loaded in result.scorers.items():
        if loaded and name in prov["scorers"]:
            prov["scorers"][name].update(loaded)
    return schema.with_metadata({"animagine_batch": json.dumps(prov, sort_keys=True)})


def dry_run(plan: Plan, out=None) -> None:
    out = out or sys.stdout  # looked up per call: sys.stdout can be replaced
    spec = plan.spec
    run_dir = location(spec.run_dir)
    done = done_ids(run_dir) if run_dir.is_dir() else set()
    pending = [t for t in plan.tasks if t.task_id not in done]
    units = sweep.units(pending, spec.generation.batch_size)
    print(f"job {spec.name}: {len(plan.tasks):,} tasks ({len(done & {t.task_id for t in plan.tasks}):,}"
          f" done, {len(pending):,} to do) in {len(units):,} units of up to "
          f"{spec.generation.batch_size}; run directory {spec.run_dir}", file=out)
    print(f"  prompts: {plan.prompt_set.name} ({len(plan.prompt_set.entries)} entries)", file=out)
    for axis in spec.sweep.axes:
        print(f"  axis {axis}: {' | '.join(map(str, spec.sweep.levels(axis)))}", file=out)
    if spec.sweep.sample:
        full = count_tasks(len(plan.prompt_set.entries), spec.sweep, sampled=False)
        print(f"  sample: {len(plan.tasks):,} of the sweep's {full:,} tasks, drawn with seed "
              f"{spec.sweep.sample_seed}", file=out)
    print(f"  seeds: {', '.join(map(str, spec.sweep.seeds[:10]))}"
          + (" ..." if len(spec.sweep.seeds) > 10 else ""), file=out)
    shown: dict[tuple, sweep.Task] = {}
    for t in plan.tasks:
        if len(shown) == 3:
            break
        shown.setdefault((t.prompt, t.negative_prompt), t)
    for t in shown.values():
        print(f"  [{t.task_id}] prompt: {t.prompt}\n      negative: {t.negative_prompt}", file=out)
    for w in long_prompt_warnings(plan.tasks):
        print(f"warning: {w}", file=out)


def score_columns(spec: JobSpec) -> list[str]:
    """Numeric scorer columns, for the end-of-run summary."""
    return [c for sc in spec.scorers for c, t in registry.columns(sc).items()
            if t in ("float32", "float64")]


def _summary(spec: JobSpec, out, seconds: float, generated: int, scores: list[str]) -> None:
    from .rundir import load_run

    df = load_run(location(spec.run_dir))
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    rate = generated / seconds if seconds > 0 else 0.0
    print(f"done: {len(df):,} rows ("
          + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
          + f"); {generated:,} generated in {seconds:.1f} s ({rate:.2f} images/s); "
          f"run directory {spec.run_dir}", file=out)
    score_cols = [c for c in scores if c in df.columns]
    if score_cols and spec.sweep.axes and spec.sweep.axes[0] in df.columns:
        axis = spec.sweep.axes[0]
        means = df[df["status"] == "ok"].groupby(axis)[score_cols].mean()
        print(f"mean scores by {axis}:\n{means.to_string()}", file=out)


def run(plan: Plan, raw: dict, out=None, verify: bool = False, extend: bool = False) -> int:
    """Run (or resume) the job. Returns the number of images generated in this invocation.

    The run directory is locked for this process (a second `run` into it is refused). A rerun
    that would change column types or the experiment is refused unless `extend` (rundir/jobfile.py);
    `verify` re-checks finished images against their hashes and generates the damaged again.
    Nothing but the lock is written before the first unit's result arrives, so a model or
    scorer that fails to load (locally or in a Ray worker) leaves no output behind.
    """
    out = out or sys.stdout  # looked up per call: sys.stdout can be replaced
    spec = plan.spec
    check_writable(spec.output.root)
    for w in long_prompt_warnings(plan.tasks):
        print(f"warning: {w}", file=out)
    with RunLock(location(spec.run_dir)):
        return _run_locked(plan, raw, out, verify, extend)


def _run_locked(plan: Plan, raw: dict, out, verify: bool, extend: bool) -> int:
    from tqdm import tqdm

    spec = plan.spec
    run_dir = location(spec.run_dir)
    has_results = (run_dir / "results").is_dir()
    redo = verify_run(run_dir, out) if verify and has_results else set()
    done = (done_ids(run_dir) if has_results else set()) - redo
    pending = [t for t in plan.tasks if t.task_id not in done]
    n_done = len(plan.tasks) - len(pending)
    prov = {**provenance(spec, raw, plan.identities),
            "prompt_set": jobfile.prompt_set_digest(plan.prompt_set)}
    scorer_columns = {k: v for sc in spec.scorers for k, v in registry.columns(sc).items()}
    schema = results_schema(axis_types(spec), scorer_columns, prov)
    before = jobfile.check(run_dir, raw, prov, schema, extend)
    if not pending:
        print(f"job {spec.name}: {n_done:,} done, 0 to do; run directory {spec.run_dir}", file=out)
        return 0
    units = sweep.units(pending, spec.generation.batch_size)
    store = RunStore(run_dir, schema)
    # with a shared root (object storage) the Ray runner's workers write their own PNGs
    shared = str(run_dir) if is_remote(run_dir) and spec.runner.name != "local" else None
    ctx = WorkerContext(job=spec.name, models=spec.models, identities=plan.identities,
                        runner=spec.runner, pipeline=spec.pipeline,
                        png_compress_level=spec.output.png_compress_level,
                        scorers=spec.scorers, images=dict(Counter(t.model for t in pending)),
                        run_dir=shared, batch_size=spec.generation.batch_size)
    runner = make_runner(spec.runner.name, spec.runner.address)
    print(f"job {spec.name}: {n_done:,} done, {len(pending):,} to do in {len(units):,} units "
          f"({spec.runner.name} runner)", file=out)
    busy: dict[str, float] = {}  # worker -> seconds it spent on units
    reported: set[tuple] = set()
    opened = False  # the run directory is written from the first result on
    try:
        runner.start(ctx, units[0].model)
        start = time.perf_counter()
        with tqdm(total=len(plan.tasks), initial=n_done, unit="img", dynamic_ncols=True,
                  desc=spec.name, file=sys.stderr) as bar:
            for result in runner.run(units):
                if not opened:
                    store.schema = loaded_provenance(store.schema, prov, result)
                    if result.scorers:
                        bar.write(reference.summary(result.scorers), file=out)
                    store.open(jobfile.job_yaml(raw, prov, before))
                    opened = True
                setup = (result.worker, result.setup)
                if setup[1] and setup not in reported:  # each worker's pipeline set-up, once
                    reported.add(setup)
                    bar.write(f"worker {setup[0]}: {setup[1]}", file=out)
                store.write(result)
                if result.worker:  # a unit no worker finished has none
                    busy[result.worker] = busy.get(result.worker, 0.0) + result.seconds
                bar.update(len(result.rows))
        wall = time.perf_counter() - start
    finally:
        runner.close()
    store.compact(min_parts=64)
    generated = sum(len(u.tasks) for u in units)
    _summary(spec, out, wall, generated, score_columns(spec))
    use = ", ".join(f"{w} {b / wall:.0%}" for w, b in sorted(busy.items())) if wall > 0 else ""
    print(f"{generated / wall if wall > 0 else 0:.2f} images/s; worker utilisation "
          f"(busy / wall): {use}", file=out)
    return generated
