"""The worker side: `Generator` loads one pipeline once and turns units into rows + PNG bytes.

It composes the device choice (`device.py`), loading and acceleration, generation with
out-of-memory splitting (`generate.py`) and finishing: PNGs, metadata and scores
(`finish.py`). `generate` and `finish` are the two halves the overlapped runner runs on
different threads.
"""

from __future__ import annotations

import os
import socket
import time
import weakref
from dataclasses import dataclass, field
from typing import NamedTuple

from ..jobspec.emphasis import plain_text
from ..jobspec.job import ModelSpec, PipelineSpec, RunnerSpec
from ..jobspec.sweep import Unit
from ..rundir.rows import base_row
from . import accel, loading
from .device import free_cache, resolve_device
from .finish import Finisher
from .generate import Generation
from .pixels import Pixels


@dataclass
class UnitResult:
    unit_id: str
    rows: list[dict]
    pngs: list[bytes | None]  # aligned with rows; None where no image was made
    seconds: float
    worker: str = ""  # host:pid
    setup: str = ""  # what was done to the worker's pipeline (accel.summary), for the run's output
    scorers: dict = field(default_factory=dict)  # name -> the loaded scorer's provenance


class Staged(NamedTuple):
    """A generated unit waiting for `Generator.finish`; `images` is None when generation failed."""

    unit: Unit
    rows: list
    start: float
    images: Pixels | None


# Pipelines still alive in this process (weak references): a worker moving to another model must
# have freed the previous one.
_PIPELINES: "weakref.WeakSet" = weakref.WeakSet()


def live_pipelines() -> int:
    """SDXL pipelines still referenced in this process, after garbage collection."""
    import gc

    gc.collect()
    return len(_PIPELINES)


def mark_failed(rows: list[dict], message: str) -> list[dict]:
    """A unit's rows when its images were not made: status `error` and the message (the format
    of every failed unit's rows, whichever runner or stage failed it)."""
    for row in rows:
        row.update(status="error", error=message[:2000])
    return rows


def failed_result(unit: Unit, job: str, model: ModelSpec, message: str) -> UnitResult:
    """The result of a unit no worker finished (the Ray runner gives up on a unit that kept
    killing its worker): the rows its tasks fix, marked failed, and no images."""
    rows = mark_failed([base_row(t, job, model.label) for t in unit.tasks], message)
    return UnitResult(unit.unit_id, rows, [None] * len(rows), 0.0)


def token_count(tokenizer, text: str) -> int:
    """CLIP tokens of a text, without the start and end tokens."""
    return len(tokenizer(text, truncation=False, verbose=False).input_ids) - 2


class Generator:
    """Holds one pipeline (and the job's scorers); `__call__(unit)` generates one batch."""

    def __init__(self, model: ModelSpec, identity: str, runner: RunnerSpec, job: str,
                 png_compress_level: int = 1, scorers: tuple = (), images: int | None = None,
                 pipeline: PipelineSpec | None = None, batch: int | None = None):
        """`images`: how many images of the model this worker is expected to make; `batch`:
        the job's batch size, which a compiled UNet pads smaller calls to."""
        pipeline = pipeline or PipelineSpec()
        self.model = model
        self.job = job
        self.device, self.dtype = resolve_device(runner, pipeline)
        accel.check(pipeline, self.device)
        self.pipe = loading.load_pipeline(model, self.device, self.dtype)
        self.accel = accel.apply(self.pipe, pipeline, self.device, self.dtype, images)
        _PIPELINES.add(self.pipe)
        self.generation = Generation(self.pipe)
        if self.accel.get("compiled"):
            self.generation.passes.pad_to = batch
        self.finisher = Finisher(model, png_compress_level, scorers)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def passes(self):
        return self.generation.passes

    def close(self):
        """Free the pipeline (a worker moving to another model calls this first)."""
        import gc

        self.pipe = self.generation = None
        gc.collect()
        free_cache()

    def __call__(self, unit: Unit) -> UnitResult:
        return self.finish(self.generate(unit))

    def generate(self, unit: Unit) -> Staged:
        """The first half of a unit: rows and images (the GPU's part)."""
        start = time.perf_counter()
        rows = [base_row(t, self.job, self.model.label) for t in unit.tasks]
        tok = self.pipe.tokenizer
        for row, t in zip(rows, unit.tasks):
            text = t.prompt if t.weighting == "none" else plain_text(t.prompt)
            row["prompt_tokens"] = token_count(tok, text)
            row["worker"] = self.worker
        try:
            images = self.generation.images(unit)
        except Exception as e:  # noqa: BLE001 - one failing unit must not stop the job
            return Staged(unit, mark_failed(rows, f"{type(e).__name__}: {e}"), start, None)
        return Staged(unit, rows, start, images)

    def finish(self, staged: Staged) -> UnitResult:
        """The second half: PNG encoding and scores (CPU work)."""
        unit, rows, start, images = staged
        pngs, seconds = self.finisher.finish(unit.tasks, rows, images, start)
        return UnitResult(unit.unit_id, rows, pngs, seconds, self.worker, self.setup(),
                          {s.name: getattr(s, "provenance", None) for s in self.finisher.scorers})

    def setup(self) -> str:
        """What `accel.apply` did to this pipeline, for the run's output; a compile that fell
        back to eager says so."""
        done = dict(self.accel)
        error = getattr(getattr(getattr(self.pipe, "unet", None), "forward", None), "error", None)
        if done.get("compiled") and error:
            done.update(compiled=False, compile_reason=f"compile failed: {error[:120]}")
        return f"{self.model.name} on {self.device}: {accel.summary(done)}"
