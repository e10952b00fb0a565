"""What every runner's worker does: load the scorers once, hold one pipeline at a time (freeing
it before loading another model), and generate units."""

from __future__ import annotations

from ..engine.device import resolve_device
from ..engine.generator import Generator, UnitResult
from ..jobspec.sweep import Unit
from ..scorers import registry
from .base import WorkerContext


class Worker:
    def __init__(self, ctx: WorkerContext, threads: int | None = None):
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        self.ctx = ctx
        device, _ = resolve_device(ctx.runner, ctx.pipeline)
        self.scorers = tuple(registry.build(s, device) for s in ctx.scorers)
        self.generator: Generator | None = None
        self.model: str | None = None

    def use(self, model: str) -> Generator:
        if self.model != model:
            self.close()  # never hold two pipelines
            self.generator = Generator(self.ctx.models[model], self.ctx.identities[model],
                                       self.ctx.runner, self.ctx.job,
                                       self.ctx.png_compress_level, self.scorers,
                                       images=(self.ctx.images or {}).get(model),
                                       pipeline=self.ctx.pipeline,
                                       batch=self.ctx.batch_size)
            self.model = model
        return self.generator

    def __call__(self, unit: Unit) -> UnitResult:
        return self.use(unit.model)(unit)

    def close(self) -> None:
        if self.generator is not None:
            self.generator.close()
        self.generator, self.model = None, None
