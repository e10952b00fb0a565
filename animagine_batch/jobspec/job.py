"""The typed, frozen job spec (validation and parsing: `parse.py`).

Library code never sees Hydra objects: `cli.py` composes a plain dict and `parse.parse_job`
turns it into a `JobSpec`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path

from . import prompts as P
from .axes import GENERATION

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # an output root on object storage


def is_uri(text) -> bool:
    """`s3://bucket/prefix`, `gs://...`, ...: a remote filesystem (`file://` is a local path)."""
    return isinstance(text, str) and bool(URI.match(text)) and not text.startswith("file://")


def run_location(root: str, name: str) -> Path | str:
    """`<root>/<name>`: a `Path` for a folder, a URI for object storage (its query, such as an
    endpoint, stays at the end: `s3://b/runs/demo?endpoint_override=...`)."""
    if not is_uri(root):
        return Path(root.removeprefix("file://")) / name
    head, mark, query = root.partition("?")
    return f"{head.rstrip('/')}/{name}" + (f"?{query}" if mark else "")


# embedded models (`model.embedded`) -> their folder of component configs in offline/configs/
EMBEDDED_MODELS = {"tiny": "tiny", "sdxl_random": "sdxl"}


@dataclass(frozen=True)
class ModelSpec:
    name: str  # conf/model/<name>.yaml
    # source precedence: path, then embedded, then id
    id: str | None = None  # hub id
    revision: str | None = None
    path: str | None = None  # local diffusers folder or single .safetensors file
    vae: str | None = None  # hub id or local folder of an AutoencoderKL
    vae_revision: str | None = None
    config: str | None = None  # single file: diffusers folder or hub id with its component configs
    allow_pickle: bool = False  # load pickle weights (.ckpt .bin ...): they can run code when loaded
    embedded: str | None = None  # tiny | sdxl_random: built by offline.py
    seed: int = 0  # weights seed of an embedded model
    licence: str | None = None
    # display only, never identity: webui's short hash of the weights' single-file checkpoint
    # (`Model hash`; computed instead for a single file) and the demo app's model name
    a1111_hash: str | None = None
    title: str | None = None
    min_size: int = 512
    max_size: int = 2048

    @property
    def label(self) -> str:
        """What the `model` column holds: the path when one is set, else the hub id."""
        if self.path:
            return self.path
        if self.embedded:
            return self.id or f"embedded:{self.embedded}"
        return self.id or self.name


# The generation section: one field per generation setting of the axes table (sampler, steps,
# cfg, width, height, ...) with the table's default, and the batch size.
GenerationSpec = make_dataclass(
    "GenerationSpec", [(k, object, field(default=v)) for k, v in GENERATION.items()]
    + [("batch_size", int, field(default=4))], frozen=True)
GenerationSpec.__doc__ = "The `generation` section: the generation axes' settings and batch_size."


@dataclass(frozen=True)
class HiresSpec:
    """The demo app's hi-res pass: latents upscaled (`nearest-exact`) by `scale`, then an
    img2img pass at `strength` with the same CFG, steps and generators. `scale: null` = off."""

    scale: float | None = None
    strength: float = 0.55
    upscaler: str = "nearest-exact"


@dataclass(frozen=True)
class LoraSpec:
    path: str
    scale: float = 1.0


@dataclass(frozen=True)
class WildcardSpec:
    """dynamicprompts expansion of prompt-set entries (`{a|b}`, `{2$$a|b|c}`, `__name__`)."""

    folder: str | None = None  # folder of <name>.txt files for `__name__`
    mode: str = "combinatorial"  # combinatorial | random
    variants: int | None = None  # random: draws per entry; combinatorial: cap (null = all)
    seed: int | None = None  # random mode; null = the job's sweep.base_seed


@dataclass(frozen=True)
class SweepSpec:
    grid: tuple[tuple[str, tuple], ...] = ()
    zip: tuple[tuple[str, tuple], ...] = ()
    seeds: tuple[int, ...] = (0,)
    sample: int | None = None  # a seeded random subset of this many tasks, or all of them
    sample_seed: int = 0

    @property
    def axes(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.grid) + tuple(k for k, _ in self.zip)

    def levels(self, axis: str) -> tuple:
        """The distinct levels of an axis, in order (a zip axis may repeat one)."""
        return tuple({repr(v): v for v in dict(self.grid + self.zip)[axis]}.values())


@dataclass(frozen=True)
class RunnerSpec:
    """Where the work runs."""

    name: str = "local"
    address: str | None = None
    workers: int = 1
    threads: int | None = None  # torch CPU threads per worker (None: the worker's share of cores)
    device: str = "auto"  # auto | cpu | cuda | cuda:N


@dataclass(frozen=True)
class PipelineSpec:
    """How the pipeline runs (engine/accel.py)."""

    dtype: str = "auto"  # auto (fp32 on CPU; on GPU bf16 when optimised, else fp16) | float32 | float16 | bfloat16
    optimise: str = "auto"  # auto (on CUDA) | on | none: SDPA, fused QKV, channels_last, safe VAE
    compile: str | bool = "auto"  # auto | true (= unet) | false | unet | regional: torch.compile
    compile_min_images: int = 1500  # `compile: auto`: only for a worker's share of this many
    overlap: str | bool = "auto"  # auto (on CUDA) | true | false: PNG + scores of unit N while N+1 generates
    precision: str = "auto"  # auto (dtype) | fp8: torchao float8 UNet Linear layers (CUDA 8.9+)


@dataclass(frozen=True)
class OutputSpec:
    root: str = "outputs"
    png_compress_level: int = 1


@dataclass(frozen=True)
class ScorerSpec:
    """A listed scorer: its config name, kind (the scorer module) and options."""

    name: str  # config name, e.g. aesthetic_shadow_v2 or tiny_aesthetic
    kind: str  # implementation: a scorer module of scorers/
    options_json: str  # the config's options (JSON, so the spec stays hashable and picklable)

    @property
    def options(self) -> dict:
        return json.loads(self.options_json)

    @classmethod
    def make(cls, name: str, config: dict) -> "ScorerSpec":
        config = dict(config)
        kind = str(config.pop("kind", ""))
        return cls(name, kind, json.dumps(config, sort_keys=True))


@dataclass(frozen=True)
class JobSpec:
    name: str
    prompts: str
    prompt: P.PromptOptions
    generation: GenerationSpec
    sweep: SweepSpec
    model: ModelSpec
    models: dict[str, ModelSpec]  # every model the sweep uses
    scorers: tuple[ScorerSpec, ...] = ()
    runner: RunnerSpec = RunnerSpec()
    pipeline: PipelineSpec = PipelineSpec()
    output: OutputSpec = OutputSpec()
    max_tasks: int = 100_000
    hires: HiresSpec = HiresSpec()
    loras: tuple[LoraSpec, ...] = ()
    wildcards: WildcardSpec = WildcardSpec()
    # settings the job gives that a sweep axis overrides: printed before the run
    warnings: tuple[str, ...] = ()

    @property
    def run_dir(self) -> Path | str:
        """The run directory: a `Path`, or a URI string when `output.root` is one (the run
        directory's `storage.location` reads both)."""
        return run_location(self.output.root, self.name)


TOP_KEYS = ("name", "prompts", "prompt", "generation", "sweep", "model", "scorers", "scorer",
            "runner", "pipeline", "output", "max_tasks", "hires", "loras", "wildcards")


def count_tasks(n_prompts: int, sweep: SweepSpec, sampled: bool = True) -> int:
    grid = math.prod(len(v) for _, v in sweep.grid)
    zipped = len(sweep.zip[0][1]) if sweep.zip else 1
    total = n_prompts * grid * zipped * len(sweep.seeds)
    return min(total, sweep.sample) if sampled and sweep.sample else total
