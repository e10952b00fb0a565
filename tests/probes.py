"""Runners wrapped for tests that look inside their workers. Each result gets `extra`, read in
the worker's own process right after its unit: `live_pipelines` (SDXL pipelines the process
still holds) and `setup` (its pipeline's set-up line). Results of real runs carry neither."""

from __future__ import annotations

import pickle
import sys

from animagine_batch.engine.generator import live_pipelines
from animagine_batch.runners import WorkerContext  # noqa: F401 - the tests' import
from animagine_batch.runners import make_runner as real_runner


def _probe(result):
    result.extra = {"live_pipelines": live_pipelines(), "setup": result.setup}
    return result


class _Probing:
    """A local runner whose results carry the probes."""

    def __init__(self, runner):
        self.runner = runner

    def start(self, ctx, first_model):
        self.runner.start(ctx, first_model)

    def run(self, units):
        for result in self.runner.run(units):
            yield _probe(result)

    def close(self):
        self.runner.close()


def make_runner(name: str, address: str | None = None):
    runner = real_runner(name, address)
    if name != "ray":
        return _Probing(runner)
    import ray.cloudpickle
    from animagine_batch.runners.ray import UnitWorker

    class ProbingUnitWorker(UnitWorker):
        def __call__(self, batch: dict) -> dict:
            return {"result": [pickle.dumps(_probe(self.worker(pickle.loads(blob))))
                               for blob in batch["unit"]]}

    # Ray's workers cannot import this test module: send its code along with the class
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    runner.actor = ProbingUnitWorker
    return runner
