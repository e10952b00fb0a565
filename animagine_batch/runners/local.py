"""The in-process reference runner: one worker, one pipeline at a time. With `pipeline.overlap`
(default: on CUDA) PNG encoding and scoring of a unit overlap the next unit's generation
(`overlap.py`); results and their order are the same either way."""

from __future__ import annotations

from typing import Iterable, Iterator

from ..engine import accel
from ..engine.device import resolve_device
from ..engine.generator import UnitResult
from ..jobspec.sweep import Unit
from .base import WorkerContext
from .overlap import overlapped
from .worker import Worker


class LocalRunner:
    def __init__(self):
        self.worker: Worker | None = None
        self.overlap = False

    def start(self, ctx: WorkerContext, first_model: str) -> None:
        """Scorers first (loaded once per worker), then the first pipeline."""
        self.overlap = accel.overlap(ctx.pipeline, resolve_device(ctx.runner, ctx.pipeline)[0])
        self.worker = Worker(ctx, ctx.runner.threads)
        self.worker.use(first_model)

    def run(self, units: Iterable[Unit]) -> Iterator[UnitResult]:
        if self.overlap:
            yield from overlapped(self.worker, units)
            return
        for unit in units:
            yield self.worker(unit)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
        self.worker = None
