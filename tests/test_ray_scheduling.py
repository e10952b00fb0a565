"""The Ray runner's scheduling, checked on CPUs: a local Ray declares GPUs it does not have, the
actors ask for one GPU each (the runner's `gpu_actors` test hook) and compute on the CPU
(`runner.device=cpu`). What a 4-GPU node gets, what a cluster whose head has no GPU gets, and
what happens to a unit that keeps killing its worker or a worker that cannot start."""

import os
import re
import signal
import sys
from collections import defaultdict

import pytest

from animagine_batch import cli, driver
from animagine_batch.engine.generator import UnitResult
from animagine_batch.errors import ConfigError
from animagine_batch.jobspec import sweep
from animagine_batch.rundir.rows import base_row
from conftest import REPO, start_session_ray
from probes import WorkerContext, make_runner

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ENV = {"env_vars": {k: os.environ[k] for k in ("ANIMAGINE_BATCH_CACHE", "HF_HUB_OFFLINE")}}


def _plan(*overrides: str):
    """Two models (tiny, then tiny_b), 3 prompts x 2 seeds each, one image a unit: 12 units."""
    spec, _, dirs = cli.load_spec(str(REPO / "jobs" / "demo.yaml"), [
        "sweep.grid={model:[tiny,tiny_b]}", "sweep.seeds=2", "scorers=[]", "runner=ray",
        "runner.device=cpu", "runner.threads=1", "pipeline.optimise=on",
        "generation.batch_size=1", *overrides])
    plan = driver.make_plan(spec, dirs)
    units = sweep.units(plan.tasks, spec.generation.batch_size)
    ctx = WorkerContext(spec.name, spec.models, plan.identities, spec.runner, spec.pipeline,
                        images={m: sum(len(u.tasks) for u in units if u.model == m)
                                for m in ("tiny", "tiny_b")})
    return plan, units, ctx


class BaseRows:
    """A light actor with the runner's interface (no pipeline): each unit gives its base rows,
    and the result notes where it ran (`extra`: node id, CUDA_VISIBLE_DEVICES)."""

    def __init__(self, ctx, threads=None):
        self.ctx = ctx

    def use(self, model):
        pass

    def run(self, unit):
        import ray

        label = self.ctx.models[unit.model].label
        rows = [{**base_row(t, self.ctx.job, label), "status": "ok"} for t in unit.tasks]
        result = UnitResult(unit.unit_id, rows, [None] * len(rows), 0.0, f"x:{os.getpid()}")
        result.extra = {"node": ray.get_runtime_context().get_node_id(),
                        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
        return result


class ExitOnSecondTask(BaseRows):
    """Its process dies on any unit holding the job's second task (as a segfault or the
    out-of-memory killer would end it)."""

    def run(self, unit):
        if any(t.index == 1 for t in unit.tasks):
            os._exit(1)
        return super().run(unit)


class FailsToStart(BaseRows):
    def __init__(self, ctx, threads=None):
        raise ConfigError("model tiny: weights not found (from the worker)")


@pytest.fixture(scope="module")
def own_ray():
    """This module's Ray (8 CPUs and 4 GPUs declared, on 127.0.0.1) in place of the session's,
    which is started again afterwards when it was running."""
    import ray
    import ray.cloudpickle

    # Ray's workers cannot import this module: its actor classes travel by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    was_running = ray.is_initialized()
    if was_running:
        ray.shutdown()
    yield ray
    if ray.is_initialized():
        ray.shutdown()
    if was_running:
        start_session_ray()


@pytest.fixture(scope="module")
def four_gpus(own_ray):
    own_ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 num_cpus=8, num_gpus=4, runtime_env=ENV)
    assert own_ray.util.get_node_ip_address() == "127.0.0.1"
    yield own_ray
    own_ray.shutdown()


def _pid(result) -> int:
    return int(result.worker.rsplit(":", 1)[1])


def test_a_head_without_gpus_gets_no_generation_actor(own_ray):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "num_gpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False})
    try:
        worker_node = cluster.add_node(num_cpus=2, num_gpus=2, node_ip_address="127.0.0.1")
        own_ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False,
                     runtime_env=ENV)
        nodes = {n["NodeID"]: n["Resources"] for n in own_ray.nodes() if n["Alive"]}
        head = next(i for i, r in nodes.items() if not r.get("GPU"))
        assert {r["NodeManagerAddress"] for r in own_ray.nodes()} == {"127.0.0.1"}
        plan, units, ctx = _plan("sweep.grid={}")  # 6 units of tiny
        runner = make_runner("ray", gpu_actors=True)
        runner.actor = BaseRows  # placement is the runner's (what each actor asks for)
        runner.start(ctx, units[0].model)
        try:
            results = list(runner.run(units))
        finally:
            runner.close()
        assert (runner.workers, runner.gpus_per_worker) == (2, 1.0)
        assert {r.extra["node"] for r in results} == {worker_node.node_id} != {head}
        assert sorted({r.extra["cuda_visible_devices"] for r in results}) == ["0", "1"]
        assert sorted(row["task_id"] for r in results for row in r.rows) == \
            sorted(t.task_id for t in plan.tasks)
    finally:
        own_ray.shutdown()
        cluster.shutdown()


def test_a_four_gpu_node_gets_four_actors_one_pipeline_each_and_a_killed_unit_retried(four_gpus):
    plan, units, ctx = _plan()
    assert [u.model for u in units] == ["tiny"] * 6 + ["tiny_b"] * 6
    runner = make_runner("ray", gpu_actors=True)
    runner.start(ctx, units[0].model)
    results, killed = [], None
    try:
        for result in runner.run(iter(units)):  # any iterable: here a one-pass iterator
            results.append(result)
            if killed is None:  # kill the first actor that finishes a unit, mid-run
                killed = result.extra["cuda_visible_devices"], _pid(result)
                os.kill(killed[1], signal.SIGKILL)
        slots = [(s.epoch, s.reloading) for s in runner.slots]
    finally:
        runner.close()
    assert (runner.workers, runner.gpus_per_worker, runner.cpus_per_worker) == (4, 1.0, 1.0)
    # every task exactly once, all made, though an actor was killed with units in flight
    rows = [row for r in results for row in r.rows]
    assert len(results) == len(units) and sorted(r["task_id"] for r in rows) == \
        sorted(t.task_id for t in plan.tasks)
    assert {r["status"] for r in rows} == {"ok"}
    # four actors, each on its own GPU, each with units
    by_gpu = defaultdict(list)
    for r in results:
        by_gpu[r.extra["cuda_visible_devices"]].append(r)
    assert sorted(by_gpu) == ["0", "1", "2", "3"]
    pids = {gpu: {_pid(r) for r in rs} for gpu, rs in by_gpu.items()}
    assert all(len(p) == 1 for gpu, p in pids.items() if gpu != killed[0]), pids
    # the killed actor was restarted (and reloaded its model) and the unit it was running was
    # made again by a live actor
    assert sorted(slots) == [(0, False)] * 3 + [(1, False)]
    blamed = [u for u, n in runner.deaths.items() if n]
    assert len(blamed) == 1 and runner.deaths[blamed[0]] == 1
    redone = next(r for r in results if r.unit_id == blamed[0])
    assert _pid(redone) != killed[1]
    # one pipeline per actor; each moved from tiny to tiny_b at most once, never back
    assert all(r.extra["live_pipelines"] == 1 for r in results)
    for gpu, rs in by_gpu.items():
        models = [r.rows[0]["model_name"] for r in rs]
        assert models == sorted(models), (gpu, models)  # "tiny" < "tiny_b"
    # the pending images divided among the four: each weighs a quarter of each model's 6
    assert {re.search(r"\((\d+) images <", r.extra["setup"]).group(1) for r in results} == {"2"}


def test_a_unit_that_keeps_killing_its_worker_ends_as_error_rows(four_gpus):
    plan, units, ctx = _plan("runner.workers=2")
    runner = make_runner("ray")
    runner.actor = ExitOnSecondTask
    runner.start(ctx, units[0].model)
    try:
        results = list(runner.run(units))
    finally:
        runner.close()
    assert runner.workers == 2 and runner.gpus_per_worker == 0  # device cpu: CPU actors
    poisoned = {u.unit_id for u in units if u.tasks[0].index == 1}
    assert len(results) == len(units) == 12 and len(poisoned) == 1
    assert {u: runner.deaths.get(u) for u in poisoned} == {u: 3 for u in poisoned}
    for r in results:
        (row,) = r.rows
        if r.unit_id in poisoned:
            assert row["status"] == "error" and r.pngs == [None]
            assert row["error"] == (f"unit {r.unit_id} (tiny): its Ray worker died 3 times "
                                    "while running it; not retried again")
            assert row["task_id"] == r.unit_id.split("x")[0] and row["prompt"]
        else:
            assert row["status"] == "ok"


def test_a_worker_that_cannot_start_is_the_config_error_it_raised(four_gpus):
    plan, units, ctx = _plan("sweep.grid={}")
    runner = make_runner("ray")
    runner.actor = FailsToStart
    with pytest.raises(ConfigError, match="model tiny: weights not found \\(from the worker\\)"):
        runner.start(ctx, units[0].model)
    runner.close()


def test_pool_shape_fits_every_gpu_actor_on_its_node_and_skips_nodes_without_gpus():
    from animagine_batch.jobspec.job import RunnerSpec
    from animagine_batch.runners.pool import pool_shape

    head = {"Alive": True, "Resources": {"CPU": 16.0}}
    small, big = ({"Alive": True, "Resources": {"CPU": c, "GPU": 4.0}} for c in (8.0, 32.0))
    gone = {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}
    auto, cpu = RunnerSpec(name="ray", workers=3), RunnerSpec(name="ray", workers=3, device="cpu")
    assert pool_shape([head, small, gone], auto) == (4, 1.0, 1.0)  # 8 / 4, less one
    assert pool_shape([head, small, big], auto) == (8, 1.0, 1.0)  # fits the smaller node
    assert pool_shape([head, big], auto) == (4, 1.0, 7.0)
    assert pool_shape([head, small], cpu) == (3, 0.0, 8.0)  # 24 CPUs // 3, within a node's 16
    assert pool_shape([head, small], cpu, gpu_actors=True) == (4, 1.0, 1.0)  # the test hook
    assert pool_shape([head], auto) == (3, 0.0, 5.0)


def test_feed_reads_lazily_and_keeps_a_retry_for_the_actor_holding_its_model():
    from animagine_batch.runners.pool import Feed

    plan, units, ctx = _plan()  # 6 units of tiny, then 6 of tiny_b
    read = []

    def stream():
        for u in units:
            read.append(u)
            yield u

    feed = Feed(stream(), lookahead=2)
    first = feed.take("tiny")
    assert first is units[0] and len(read) == 1  # nothing read ahead of need
    feed.retry(first)
    assert feed.take("tiny") is first  # a retry of the held model comes first
    taken = [feed.take("tiny") for _ in range(5)]
    assert taken == units[1:6] and len(read) == 6
    feed.retry(taken[-1])
    # an actor holding tiny_b gets the stream's next units, not the tiny retry (tiny is held)
    others_hold_tiny = lambda m: m == "tiny"  # noqa: E731
    assert [feed.take("tiny_b", others_hold_tiny) for _ in range(6)] == units[6:]
    assert feed.take("tiny_b", others_hold_tiny) is None and not feed.empty()
    assert feed.take("tiny_b") is taken[-1]  # nobody else holds tiny: it goes to anyone
    assert feed.empty() and feed.take("tiny") is None
