"""Overlapped execution of units: generation, post-processing and the caller in three threads.

One thread generates (`Generator.generate`: the GPU's part), one finishes (`Generator.finish`:
PNG encoding and scores, CPU work that mostly releases the GIL), and the caller's thread
receives results and persists them. While unit N+1 generates, unit N is encoded and scored and
unit N-1 is written, so the GPU does not wait for the CPU between units.

Results come in unit order, with the same rows and bytes as `Worker.__call__` one unit at a
time: each unit is generated and finished exactly as the sequential path does, only on other
threads. A unit's `seconds` leaves out the time it waited between the two stages. An exception
(e.g. a model that fails to load) reaches the caller at that unit's place in the order; the
threads are stopped when the caller stops iterating.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor, wait

from ..engine.generator import UnitResult
from ..jobspec.sweep import Unit
from .worker import Worker


def _generate(worker: Worker, unit: Unit, drain: Future | None, stop: threading.Event):
    if drain is not None:  # a new model: earlier units finish before the old pipeline is freed
        wait([drain])  # (its outcome reaches the caller through its own future)
    if stop.is_set():
        raise CancelledError
    generator = worker.use(unit.model)
    staged = generator.generate(unit)
    return generator, staged, time.perf_counter()


def _finish(generated: Future) -> UnitResult:
    generator, staged, generated_at = generated.result()
    waited = time.perf_counter() - generated_at
    return generator.finish(staged._replace(start=staged.start + waited))


def overlapped(worker: Worker, units: Iterable[Unit], depth: int = 3) -> Iterator[UnitResult]:
    """Yield one result per unit, in order, keeping up to `depth` units in flight."""
    gen_pool = ThreadPoolExecutor(1, thread_name_prefix="generate")
    fin_pool = ThreadPoolExecutor(1, thread_name_prefix="finish")
    window: deque[Future] = deque()
    model = worker.model
    stop = threading.Event()
    try:
        for unit in units:
            drain = window[-1] if window and unit.model != model else None
            model = unit.model
            generated = gen_pool.submit(_generate, worker, unit, drain, stop)
            window.append(fin_pool.submit(_finish, generated))
            if len(window) >= depth:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        stop.set()
        for future in window:
            future.cancel()
        gen_pool.shutdown(wait=True, cancel_futures=True)
        fin_pool.shutdown(wait=True, cancel_futures=True)
