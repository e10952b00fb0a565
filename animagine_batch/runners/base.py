"""The runner interface shared by the local and Ray runners."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator, Protocol

from ..jobspec.job import ModelSpec, PipelineSpec, RunnerSpec
from ..jobspec.job import ScorerSpec
from ..jobspec.sweep import Unit


@dataclass(frozen=True)
class WorkerContext:
    """Everything a worker needs to build its `Generator`s: plain, picklable data."""

    job: str
    models: dict[str, ModelSpec]
    identities: dict[str, str]
    runner: RunnerSpec
    pipeline: PipelineSpec = PipelineSpec()
    png_compress_level: int = 1
    scorers: tuple[ScorerSpec, ...] = field(default_factory=tuple)
    images: dict[str, int] | None = None  # model -> images a worker is expected to make of it
    # a run directory every worker reaches (a URI on object storage): workers write the PNGs
    # there themselves and return rows only; None: PNG bytes travel to the driver
    run_dir: str | None = None
    batch_size: int | None = None  # the job's: a compiled UNet pads smaller calls to it

    def shared_by(self, workers: int) -> "WorkerContext":
        """The context each of `workers` workers gets: its share of the images, rounded up."""
        if self.images is None or workers <= 1:
            return self
        return replace(self, images={m: -(-n // workers) for m, n in self.images.items()})


class Runner(Protocol):
    def start(self, ctx: WorkerContext, first_model: str) -> None:
        """Load what the first unit needs, so a missing model fails before any output."""

    def run(self, units: Iterable[Unit]) -> Iterator:
        """Yield one `UnitResult` per unit, in any order; `units` is read as it is needed (a
        generator will do)."""

    def close(self) -> None:
        """Free workers and models."""
