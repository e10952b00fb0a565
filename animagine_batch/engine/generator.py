"""The worker side: `Generator` loads one pipeline once and turns units into rows + PNG bytes."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import weakref
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .. import __version__
from . import accel, passes
from . import loading as model_loading
from . import sources as models
from .schedulers import build_scheduler
from ..spec.emphasis import plain_text
from ..spec import samplers
from ..rundir import metadata
from ..rundir.layout import image_path
from ..rundir.rows import base_row
from ..spec.job import ModelSpec, RunnerSpec
from ..spec.sweep import Task, Unit


@dataclass
class UnitResult:
    unit_id: str
    rows: list[dict]
    pngs: list[bytes | None]  # aligned with rows; None where no image was made
    seconds: float
    worker: str = ""
    extra: dict = field(default_factory=dict)


class Staged(NamedTuple):
    """A generated unit waiting for `Generator.finish`; `images` is None when generation failed."""

    unit: Unit
    rows: list
    pngs: list
    start: float
    images: np.ndarray | None


# Pipelines still alive in this process (weak references): a worker moving to another model must
# have freed the previous one, which tests check through `live_pipelines()`.
_PIPELINES: "weakref.WeakSet" = weakref.WeakSet()


def live_pipelines() -> int:
    import gc

    gc.collect()
    return len(_PIPELINES)


def is_out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def inject_fault(unit: Unit) -> None:
    """Fault injection for testing runners end to end (also inside Ray workers), driven by the
    environment: ANIMAGINE_BATCH_INJECT_FAULT="seed=7" raises in any unit holding seed 7;
    "oom_above=1" raises an out-of-memory error in any unit of more than one image."""
    spec = os.environ.get("ANIMAGINE_BATCH_INJECT_FAULT")
    if not spec:
        return
    kind, _, value = spec.partition("=")
    if kind == "seed" and any(t.seed == int(value) for t in unit.tasks):
        raise RuntimeError(f"injected fault for seed {value}")
    if kind == "oom_above" and len(unit.tasks) > int(value):
        raise RuntimeError("CUDA out of memory (injected)")


def resolve_device(runner: RunnerSpec):
    """(device, torch dtype): fp16 on GPU unless asked otherwise, fp32 on CPU."""
    import torch

    device = runner.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if runner.dtype == "auto":
        dtype = torch.float32 if device == "cpu" else accel.gpu_dtype(runner, device)
    else:
        dtype = names[runner.dtype]
    return device, dtype


def token_count(tokenizer, text: str) -> int:
    """CLIP tokens of a text, without the start and end tokens."""
    return len(tokenizer(text, truncation=False, verbose=False).input_ids) - 2


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] to uint8 as diffusers' numpy_to_pil does."""
    return (np.nan_to_num(images, nan=0.0) * 255).round().clip(0, 255).astype(np.uint8)


class Generator:
    """Holds one pipeline (and the job's scorers); `__call__(unit)` generates one batch."""

    def __init__(self, model: ModelSpec, identity: str, runner: RunnerSpec, job: str,
                 png_compress_level: int = 1, scorers: tuple = (), images: int | None = None):
        self.model = model
        self.job = job
        self.png_compress_level = png_compress_level
        self.scorers = scorers
        self.device, self.dtype = resolve_device(runner)
        self.pipe = model_loading.load_pipeline(model, self.device, self.dtype)
        self.accel = accel.apply(self.pipe, runner, self.device, self.dtype, images)
        _PIPELINES.add(self.pipe)
        self.passes = passes.Passes(self.pipe)
        self.base_scheduler_config = dict(self.pipe.scheduler.config)
        self.model_hash = models.model_hash(model)
        self.model_name = models.display_name(model)
        self.model_title = models.title(model)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def close(self):
        """Free the pipeline (a worker moving to another model calls this first)."""
        import gc

        import torch

        self.pipe = self.passes = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _generate_splitting(self, unit: Unit) -> np.ndarray:
        """Generate a unit; on out-of-memory, halve the batch and retry each half."""
        try:
            return self._generate(unit)
        except Exception as e:  # noqa: BLE001
            if not is_out_of_memory(e) or len(unit.tasks) == 1:
                raise
            self._free_cache()
            half = len(unit.tasks) // 2
            parts = [unit._replace(tasks=unit.tasks[:half]), unit._replace(tasks=unit.tasks[half:])]
            return np.concatenate([self._generate_splitting(p) for p in parts])

    @staticmethod
    def _free_cache() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _generate(self, unit: Unit) -> np.ndarray:
        inject_fault(unit)
        sampler = samplers.get(unit.sampler)
        self.pipe.scheduler = build_scheduler(sampler, self.base_scheduler_config)
        return self.passes.images(unit)

    def __call__(self, unit: Unit) -> UnitResult:
        return self.finish(self.generate(unit))

    def generate(self, unit: Unit) -> Staged:
        """The first half of a unit: rows and images (the GPU's part)."""
        start = time.perf_counter()
        rows = [base_row(t, self.job, self.model.label) for t in unit.tasks]
        pngs: list[bytes | None] = [None] * len(rows)
        tok = self.pipe.tokenizer
        for row, t in zip(rows, unit.tasks):
            text = t.prompt if t.weighting == "none" else plain_text(t.prompt)
            row["prompt_tokens"] = token_count(tok, text)
            row["worker"] = self.worker
        try:
            images = self._generate_splitting(unit)
        except Exception as e:  # noqa: BLE001 - one failing unit must not stop the job
            msg = f"{type(e).__name__}: {e}"
            for row in rows:
                row.update(status="error", error=msg[:2000])
            return Staged(unit, rows, pngs, start, None)
        return Staged(unit, rows, pngs, start, images)

    def finish(self, staged: Staged) -> UnitResult:
        """The second half: PNG encoding and scores (CPU work). It reads no pipeline state, so
        the overlapped runner calls it on another thread while the next unit generates."""
        unit, rows, pngs, start, images = staged
        if images is None:  # generation failed: the rows already say why
            return self._finish(unit, rows, pngs, start)
        pixels = to_uint8(images)
        ok = []
        for i, (row, t) in enumerate(zip(rows, unit.tasks)):
            if not np.isfinite(images[i]).all():
                row.update(status="nan", error="non-finite values in the decoded image")
                continue
            if pixels[i].min() == pixels[i].max():
                row.update(status="nan", error="blank image (every pixel the same)")
                continue
            sampler_name = samplers.get(t.sampler).name
            params = metadata.infotext_params(t, self.model_name, self.model_hash, sampler_name,
                                              __version__, self.lora_hashes(t.loras))
            text = metadata.infotext(metadata.infotext_prompt(t), t.negative_prompt, params)
            png = metadata.encode_png(
                pixels[i], text,
                metadata.demo_metadata(t, self.model_title, sampler_name, self.model_hash),
                self.png_compress_level)
            pngs[i] = png
            row.update(status="ok", error=None, image_path=image_path(t.task_id),
                       image_sha256=hashlib.sha256(png).hexdigest())
            ok.append(i)
        try:
            self._score(pixels, rows, ok)
        except Exception as e:  # noqa: BLE001 - a scorer failing on one unit must not stop the job
            for i in ok:
                rows[i].update(status="error", error=f"scoring failed: {type(e).__name__}: {e}"[:2000],
                               image_path=None, image_sha256=None)
                pngs[i] = None
        return self._finish(unit, rows, pngs, start)

    @staticmethod
    def lora_hashes(used) -> dict:
        """webui's short hashes of LoRA files for the infotext (loras.short_hash caches them)."""
        from .loras import short_hash

        return {p: short_hash(p) for p, _ in used}

    def _score(self, pixels: np.ndarray, rows: list[dict], ok: list[int]) -> None:
        if not self.scorers or not ok:
            return
        from PIL import Image

        images = [Image.fromarray(pixels[i], "RGB") for i in ok]
        subset = [rows[i] for i in ok]
        for scorer in self.scorers:
            for column, values in scorer(images, subset).items():
                for row, v in zip(subset, values):
                    row[column] = v

    def _finish(self, unit: Unit, rows, pngs, start) -> UnitResult:
        seconds = time.perf_counter() - start
        for row in rows:
            row["gen_seconds"] = seconds / len(rows)
        return UnitResult(unit.unit_id, rows, pngs, seconds, self.worker,
                          {"live_pipelines": len(_PIPELINES), "setup": self.setup(),
                           "scorers": {s.name: getattr(s, "provenance", None)
                                       for s in self.scorers}})

    def setup(self) -> str:
        """What `accel.apply` did to this pipeline, for the run's output; a compile that fell
        back to eager says so."""
        done = dict(self.accel)
        error = getattr(getattr(getattr(self.pipe, "unet", None), "forward", None), "error", None)
        if done.get("compiled") and error:
            done.update(compiled=False, compile_reason=f"compile failed: {error[:120]}")
        return f"{self.model.name} on {self.device}: {accel.summary(done)}"
