"""The in-process reference runner: one worker, one pipeline at a time."""

from __future__ import annotations

from typing import Iterator

from ..generate import UnitResult
from ..sweep import Unit
from .base import WorkerContext
from .worker import Worker


class LocalRunner:
    def __init__(self):
        self.worker: Worker | None = None

    def start(self, ctx: WorkerContext, first_model: str) -> None:
        """Scorers first (loaded once per worker), then the first pipeline."""
        self.worker = Worker(ctx, ctx.runner.threads)
        self.worker.use(first_model)

    def run(self, units: list[Unit]) -> Iterator[UnitResult]:
        for unit in units:
            yield self.worker(unit)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
        self.worker = None
