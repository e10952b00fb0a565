"""What every runner's worker does: load the scorers once, hold one pipeline at a time (freeing
it before loading another model), and generate units. With a shared run directory
(`WorkerContext.run_dir`) the worker writes a unit's PNGs itself, each in one atomic write,
and returns its rows without the bytes: the driver writes the rows once the PNGs are there."""

from __future__ import annotations

from dataclasses import replace

from ..engine.device import resolve_device
from ..engine.generator import Generator, UnitResult
from ..jobspec.sweep import Unit
from ..rundir.storage import location
from ..rundir.write import atomic_write_bytes
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
        result = self.use(unit.model)(unit)
        return self.store_pngs(result) if self.ctx.run_dir else result

    def store_pngs(self, result: UnitResult) -> UnitResult:
        """Write the unit's PNGs into the shared run directory; the result without them."""
        run_dir = location(self.ctx.run_dir)
        for row, png in zip(result.rows, result.pngs):
            if png is not None:
                atomic_write_bytes(run_dir / row["image_path"], png, staged=False)
        return replace(result, pngs=[None] * len(result.rows))

    def close(self) -> None:
        if self.generator is not None:
            self.generator.close()
        self.generator, self.model = None, None
