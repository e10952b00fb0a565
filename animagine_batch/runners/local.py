"""The in-process reference runner: one worker, one pipeline at a time."""

from __future__ import annotations

from typing import Iterator

from ..generate import Generator, UnitResult, resolve_device
from ..scorers import registry
from ..sweep import Unit
from .base import WorkerContext


class LocalRunner:
    def __init__(self):
        self.ctx: WorkerContext | None = None
        self.generator: Generator | None = None
        self.model: str | None = None
        self.scorers: tuple = ()

    def _use(self, model: str) -> Generator:
        if self.model != model:
            if self.generator is not None:
                self.generator.close()  # never hold two pipelines
                self.generator = None
            self.generator = Generator(
                self.ctx.models[model], self.ctx.identities[model], self.ctx.runner, self.ctx.job,
                self.ctx.png_compress_level, self.scorers)
            self.model = model
        return self.generator

    def start(self, ctx: WorkerContext, first_model: str) -> None:
        """Scorers first (they are loaded once per worker), then the first pipeline."""
        self.ctx = ctx
        if ctx.runner.threads:
            import torch

            torch.set_num_threads(int(ctx.runner.threads))
        device, _ = resolve_device(ctx.runner)
        self.scorers = tuple(registry.build(s, device) for s in ctx.scorers)
        self._use(first_model)

    def run(self, units: list[Unit]) -> Iterator[UnitResult]:
        for unit in units:
            yield self._use(unit.model)(unit)

    def close(self) -> None:
        if self.generator is not None:
            self.generator.close()
        self.generator, self.model, self.scorers = None, None, ()
