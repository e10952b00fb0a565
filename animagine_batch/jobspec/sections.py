"""Validation of the `model`, `runner`, `pipeline` and `output` sections: every option typed and
checked, every problem added to the collector (parse.py gathers them with the other sections')."""

from __future__ import annotations

import re

from ..errors import ConfigError
from .collect import Collector, check_int
from .job import EMBEDDED_MODELS, ModelSpec, OutputSpec, PipelineSpec, RunnerSpec, is_uri
from .values import SEED_LIMIT

DEVICES = "auto, cpu, cuda or cuda:N"
OPTIMISE = ("auto", "on", "none")
SWITCH = ("auto", "true", "false")
COMPILE = ("auto", "true", "false", "unet", "regional")  # true = unet: the whole UNet
PRECISION = ("auto", "fp8")  # auto: the pipeline's dtype; fp8: torchao float8 Linear layers
DTYPES = ("auto", "float32", "float16", "bfloat16")
ADDRESS = re.compile(r"(ray://)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):(\d{1,5})")
WORKERS_LIMIT = 4096


def optional_text(c: Collector, key: str, value, what: str) -> None:
    """null, or a non-empty string."""
    if value is not None and (not isinstance(value, str) or not value.strip()):
        c.add(key, f"{value!r} must be {what} (a non-empty string) or null")


def hub_id_problem(value: str) -> str | None:
    """Why a text is not a Hugging Face repo id (huggingface_hub's own rules), or None."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(value)
    except HFValidationError as e:
        return str(e)
    return None


def parse_model(raw: dict, name: str, key: str, c: Collector) -> ModelSpec:
    spec = c.section({"name": name, **(raw or {})}, key, ModelSpec)
    if not (spec.id or spec.path or spec.embedded):
        c.add(key, "needs one of id (hub id), path (local folder or .safetensors file) or embedded")
    for field in ("revision", "path", "vae", "vae_revision", "config", "licence"):
        optional_text(c, f"{key}.{field}", getattr(spec, field), "text")
    optional_text(c, f"{key}.id", spec.id, "a Hugging Face repo id")
    if isinstance(spec.id, str) and spec.id.strip() and (problem := hub_id_problem(spec.id)):
        c.add(f"{key}.id", f"{spec.id!r} is not a Hugging Face repo id ({problem})")
    if spec.embedded is not None and spec.embedded not in EMBEDDED_MODELS:
        c.add(f"{key}.embedded", f"unknown embedded model {spec.embedded!r}; allowed: "
              f"{', '.join(EMBEDDED_MODELS)} or null")
    if not isinstance(spec.allow_pickle, bool):
        c.add(f"{key}.allow_pickle", f"{spec.allow_pickle!r} is not true or false")
    if spec.a1111_hash is not None and not re.fullmatch(r"[0-9a-f]{10}", str(spec.a1111_hash)):
        c.add(f"{key}.a1111_hash", f"{spec.a1111_hash!r} is not an A1111 short hash: give the "
              "first 10 lowercase hex digits of the checkpoint file's sha256 (quoted in YAML), "
              "or null")
    seed = check_int(c, f"{key}.seed", spec.seed, 0)
    if seed is not None and seed >= SEED_LIMIT:
        c.add(f"{key}.seed", f"{seed} must be below 2^63")
    sizes = [check_int(c, f"{key}.{f}", getattr(spec, f), 8) for f in ("min_size", "max_size")]
    for f, v in zip(("min_size", "max_size"), sizes):
        if v is not None and v % 8:
            c.add(f"{key}.{f}", f"{v} is not a multiple of 8")
    if None not in sizes and sizes[0] > sizes[1]:
        c.add(f"{key}.min_size", f"{sizes[0]} is larger than max_size {sizes[1]}")
    if None in sizes:  # a bad limit is reported once, not again by every size of the sweep
        spec = ModelSpec(**{**spec.__dict__, "min_size": sizes[0] or 8,
                            "max_size": sizes[1] or 2**31})
    return spec


MOVED = tuple(PipelineSpec.__dataclass_fields__)  # runner.* keys that are now pipeline.*


def parse_runner(c: Collector, raw, runners: tuple[str, ...]) -> tuple[RunnerSpec, dict, list]:
    """(the runner section, the execution options it still holds under their old names, one
    notice per such key). `runners`: the names of the runner registry (runners/__init__.py)."""
    raw = {"name": raw} if isinstance(raw, str) else raw
    moved = {k: raw[k] for k in MOVED if k in raw} if isinstance(raw, dict) else {}
    notices = [f"runner.{k} is now pipeline.{k}; runner.{k} still works and is read as "
               f"pipeline.{k}" for k in moved]
    if moved:
        raw = {k: v for k, v in raw.items() if k not in moved}
    runner = c.section(raw, "runner", RunnerSpec)
    if runner.name not in runners:
        c.add("runner.name", f"unknown runner {runner.name!r}; allowed: {', '.join(runners)}")
    address = runner.address
    if address is not None:
        m = ADDRESS.fullmatch(address) if isinstance(address, str) else None
        if not (address == "auto" or (m and 1 <= int(m.group(3)) <= 65535)):
            c.add("runner.address", f"{address!r} is not a Ray address; allowed: null (start a "
                  "local Ray for the run), auto, HOST:PORT or ray://HOST:PORT")
        elif runner.name != "ray":
            c.add("runner.address", f"{address!r} is set but runner.name is {runner.name!r}; "
                  "an address is used by runner=ray only")
    workers = check_int(c, "runner.workers", runner.workers, 1)
    if workers is not None and workers > WORKERS_LIMIT:
        c.add("runner.workers", f"{workers} must be at most {WORKERS_LIMIT}")
    if runner.threads is not None:
        check_int(c, "runner.threads", runner.threads, 1)
    device = runner.device
    if not (isinstance(device, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", device)):
        c.add("runner.device", f"{device!r} is not a device; allowed: {DEVICES}")
    return runner, moved, notices


def parse_pipeline(c: Collector, raw, moved: dict) -> PipelineSpec:
    """The execution options; those the runner section gave under their old names win, and
    every problem names the key as the job wrote it."""
    pipeline = c.section(raw, "pipeline", PipelineSpec)
    pipeline = PipelineSpec(**{**pipeline.__dict__, **moved})
    key = {k: f"runner.{k}" if k in moved else f"pipeline.{k}" for k in MOVED}
    if pipeline.dtype not in DTYPES:
        c.add(key["dtype"], f"{pipeline.dtype!r} is not one of {', '.join(DTYPES)}")
    check_int(c, key["compile_min_images"], pipeline.compile_min_images, 0)
    try:
        opts = execution_options(pipeline, key)
    except ConfigError as e:
        c.problems += e.problems
        return pipeline
    if opts["precision"] == "fp8":
        fp8 = f"{key['precision']}: fp8"
        if pipeline.dtype not in ("auto", "bfloat16"):
            c.add(key["dtype"], f"{pipeline.dtype!r} cannot run {fp8} (float8 matrix products "
                  "with bfloat16 activations); allowed with fp8: auto or bfloat16")
        if opts["optimise"] == "none":
            c.add(key["optimise"], f"none leaves the pipeline as loaded, but {fp8} "
                  "quantizes it; allowed with fp8: auto or on")
        if opts["compile"] == "false":
            c.add(key["compile"], f"false: {fp8} runs compiled (eager float8 is slower than "
                  "bfloat16); allowed with fp8: auto, true, unet or regional")
    return pipeline


def execution_options(pipeline, key: dict | None = None) -> dict[str, str]:
    """The optimise, compile, overlap and precision options, lower-cased and checked: a
    ConfigError names every bad value (YAML booleans arrive as True/False). `key` names the
    options' keys."""
    allowed = {"optimise": OPTIMISE, "compile": COMPILE, "overlap": SWITCH,
               "precision": PRECISION}
    out, problems = {}, []
    for name, values in allowed.items():
        value = getattr(pipeline, name, "auto")
        out[name] = str(value).strip().lower()  # YAML booleans: str(True) == "True"
        if out[name] not in values:
            problems.append(f"{(key or {}).get(name, f'pipeline.{name}')}: {value!r} is not one "
                            f"of {', '.join(values)}")
    if problems:
        raise ConfigError(problems)
    return out


SECRET = re.compile(r"secret|token|password|passwd|credential|access_key|private", re.I)


def uri_problem(uri: str) -> str | None:
    """Why an output root URI cannot be used, or None. A run records its output root in
    job.yaml, so credentials in it would be stored with the run."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(uri)
    if not parts.netloc and not parts.path.strip("/"):
        return f"{uri!r} names no bucket or path"
    secret = ["the user and password before @"] if "@" in parts.netloc else []
    secret += [k for k, _ in parse_qsl(parts.query, keep_blank_values=True) if SECRET.search(k)]
    if secret:
        shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        return (f"{shown!r} carries credentials ({', '.join(secret)}), which the run "
                "would record in job.yaml; give them through the storage library's environment "
                "instead (for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or "
                "~/.aws/credentials)")
    return None


def parse_output(c: Collector, raw) -> OutputSpec:
    output = c.section(raw, "output", OutputSpec)
    if not isinstance(output.root, str) or not output.root.strip():
        c.add("output.root", f"{output.root!r} must be a folder path or a URI such as "
              "s3://bucket/prefix (a non-empty string)")
    elif is_uri(output.root):
        problem = uri_problem(output.root)
        if problem:
            c.add("output.root", problem)
    level = output.png_compress_level
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        c.add("output.png_compress_level", f"{level!r} must be an integer 0-9")
    return output
