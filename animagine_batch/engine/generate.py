"""Generation: a unit's images on a loaded pipeline (its sampler, conditioning, LoRAs and hi-res
pass: `passes.py`). An out-of-memory error halves the unit and retries each half, down to
single images."""

from __future__ import annotations

import os

from ..jobspec import samplers
from ..jobspec.sweep import Unit
from .device import free_cache, is_out_of_memory
from .passes import Passes
from .pixels import Pixels
from .schedulers import build_scheduler


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


class Generation:
    """Units -> 8-bit images (`pixels.Pixels`) on one loaded pipeline."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.passes = Passes(pipe)
        self.base_scheduler_config = dict(pipe.scheduler.config)

    def images(self, unit: Unit) -> Pixels:
        """A unit's images in task order; on out-of-memory, halve the batch and retry."""
        try:
            return self._generate(unit)
        except Exception as e:  # noqa: BLE001
            if not is_out_of_memory(e) or len(unit.tasks) == 1:
                raise
            free_cache()
            self.passes.pad_to = None  # the compiled batch does not fit: run smaller ones
            half = len(unit.tasks) // 2
            parts = [unit._replace(tasks=unit.tasks[:half]), unit._replace(tasks=unit.tasks[half:])]
            return Pixels.concat([self.images(p) for p in parts])

    def _generate(self, unit: Unit) -> Pixels:
        inject_fault(unit)
        sampler = samplers.get(unit.sampler)
        self.pipe.scheduler = build_scheduler(sampler, self.base_scheduler_config)
        return self.passes.images(unit)
