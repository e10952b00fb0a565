"""Runners wrapped for tests that look inside their workers. Each result gets `extra`, read in
the worker's own process right after its unit: `live_pipelines` (SDXL pipelines the process
still holds) and `setup` (its pipeline's set-up line). Results of real runs carry neither."""

from __future__ import annotations

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


def make_runner(name: str, address: str | None = None, **options):
    """A runner whose results carry the probes; `options` go to the Ray runner (e.g.
    `gpu_actors=True`). The Ray runner's probes add `cuda_visible_devices` and `node` (the Ray
    node id) of the actor that ran the unit."""
    runner = real_runner(name, address)
    if name != "ray":
        return _Probing(runner)
    import ray.cloudpickle
    from animagine_batch.runners.ray import UnitWorker

    class ProbingUnitWorker(UnitWorker):
        def run(self, unit):
            import os

            import ray

            result = _probe(super().run(unit))
            result.extra.update(cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
                                node=ray.get_runtime_context().get_node_id())
            return result

    # Ray's workers cannot import this test module: send its code along with the class
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    runner.actor = ProbingUnitWorker
    for key, value in options.items():
        setattr(runner, key, value)
    return runner
