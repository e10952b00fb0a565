"""The Ray runner's pool without Ray: its size on a cluster's nodes (`pool_shape`) and the
handing out of units (`Feed`), one at a time as each worker has room: pulled lazily from the
driver's iterable (never copied into a list), a unit of the model the asking worker holds first,
units to retry before new ones."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from ..jobspec.sweep import Unit


class Feed:
    """Units for workers. `take(model)` returns a unit of `model` if one is waiting (a retry,
    or one of the next `lookahead` units of the stream), else the next unit of the stream (a
    worker moves on to the next model where the stream does: units come sorted by model, see
    `sweep.units`), else a retry that no other worker's model matches; None when nothing is
    left for this worker. A retry of a model another worker holds waits for that worker, so a
    worker never goes back to a model it has left."""

    def __init__(self, units: Iterable[Unit], lookahead: int = 1):
        self._stream = iter(units)
        self._ahead: deque[Unit] = deque()  # pulled from the stream, not yet taken
        self._retries: deque[Unit] = deque()
        self.lookahead = max(1, lookahead)
        self._exhausted = False
        self.pulled = 0  # units read from the stream so far

    def retry(self, unit: Unit) -> None:
        self._retries.append(unit)

    def take(self, model: str | None, held_by_others=lambda model: False) -> Unit | None:
        """A unit for a worker holding `model`; `held_by_others(m)`: another worker holds m."""
        for queue in (self._retries, self._ahead):
            for i, unit in enumerate(queue):
                if unit.model == model:
                    del queue[i]
                    return unit
        while not self._exhausted and len(self._ahead) < self.lookahead:
            unit = next(self._stream, None)
            if unit is None:
                self._exhausted = True
                break
            self.pulled += 1
            if unit.model == model:
                return unit
            self._ahead.append(unit)
        if self._ahead:
            return self._ahead.popleft()
        for i, unit in enumerate(self._retries):
            if not held_by_others(unit.model):
                del self._retries[i]
                return unit
        return None

    def empty(self) -> bool:
        """No unit left to take (the stream is read to its end)."""
        if not self._exhausted and not self._ahead:
            unit = next(self._stream, None)
            if unit is None:
                self._exhausted = True
            else:
                self.pulled += 1
                self._ahead.append(unit)
        return self._exhausted and not self._ahead and not self._retries


def _cpus_beside(cpus: float, gpus: int) -> float:
    """CPUs for each GPU actor of a node: its share, less one left to Ray and the driver, at
    least one (a fraction where the node has fewer CPUs than GPUs)."""
    share = cpus / gpus
    return max(1.0, float(int(share) - 1)) if share >= 1 else share


def pool_shape(nodes: list[dict], runner,
               gpu_actors: bool | None = None) -> tuple[int, float, float]:
    """(actors, GPUs per actor, CPUs per actor) for a cluster's alive nodes (`ray.nodes()`): one
    actor per GPU, each asking for CPUs that fit on the GPU node with the fewest per GPU, or
    `runner.workers` CPU actors. GPU actors are used when the cluster has GPUs and
    `runner.device` is not cpu; `gpu_actors` overrides that choice (True: one actor per GPU
    whatever the device computes on; the scheduling tests run GPU actors on CPUs this way)."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    gpu_nodes = [r for r in alive if int(r.get("GPU", 0)) >= 1]
    wanted = runner.device != "cpu" if gpu_actors is None else gpu_actors
    if gpu_nodes and wanted:
        workers = sum(int(r["GPU"]) for r in gpu_nodes)
        return workers, 1.0, min(_cpus_beside(r.get("CPU", 0), int(r["GPU"])) for r in gpu_nodes)
    workers = max(1, int(runner.workers))
    total = sum(r.get("CPU", 0) for r in alive) or 1.0
    largest = max((r.get("CPU", 0) for r in alive), default=1.0) or 1.0
    return workers, 0.0, max(1.0, min(total // workers, largest))
