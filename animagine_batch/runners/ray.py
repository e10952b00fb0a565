"""The Ray runner: Ray Data streams units through an actor pool; each actor holds one
`Generator` (one pipeline at a time) and the job's scorers. The only module that imports ray.

Workers return rows and PNG bytes; the driver persists them, so a multi-node cluster needs no
shared filesystem. With no `runner.address` a local Ray is started on 127.0.0.1 for the run;
`auto`, `HOST:PORT` or `ray://HOST:10001` joins an existing cluster (whose nodes must have
animagine-batch installed).
"""

from __future__ import annotations

import os
import pickle
from typing import Iterator

import ray

from ..engine.generator import UnitResult
from ..jobspec.sweep import Unit
from .base import WorkerContext
from .worker import Worker

# Variables a worker on another node needs to find the same caches and stay offline.
FORWARDED_ENV = ("ANIMAGINE_BATCH_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "HF_HUB_CACHE",
                 "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "ANIMAGINE_BATCH_INJECT_FAULT")


class UnitWorker:
    """A Ray Data actor around a `Worker`: takes a batch of pickled units, returns pickled
    results."""

    def __init__(self, ctx: WorkerContext, threads: int | None = None):
        self.worker = Worker(ctx, threads)

    def __call__(self, batch: dict) -> dict:
        return {"result": [pickle.dumps(self.worker(pickle.loads(blob))) for blob in batch["unit"]]}


def _config_error(err: BaseException):
    """The ConfigError a worker raised, found inside Ray's exception wrappers, or None."""
    from ..errors import ConfigError

    seen = set()
    stack = [err]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ConfigError):
            return ConfigError(e.problems)
        stack += [getattr(e, "cause", None), e.__cause__, e.__context__]
    # an actor that died in its constructor carries only the text of the error
    marker = f"{ConfigError.__module__}.ConfigError: "
    text = str(err)
    if marker in text:
        return ConfigError(text.split(marker, 1)[1].split("\n", 1)[0].strip())
    return None


class RayRunner:
    def __init__(self, actor: type = UnitWorker):
        self.actor = actor  # the Ray Data actor class around a Worker
        self.ctx: WorkerContext | None = None
        self.started_ray = False
        self.workers = 1
        self.gpus_per_worker = 0.0
        self.cpus_per_worker = 1.0

    def _init(self, address: str | None) -> None:
        if ray.is_initialized():
            return
        import logging

        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        if address:
            ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False,
                     logging_level="ERROR")
        else:
            # a single-node Ray on loopback (runners.make_runner set the variable before import)
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     runtime_env={"env_vars": env})
        self.started_ray = True

    def start(self, ctx: WorkerContext, first_model: str) -> None:
        """Connect to (or start) Ray and size the actor pool: one actor per GPU, or
        `runner.workers` CPU actors. Models and scorers load in the actors' constructors; a
        failure there reaches the driver as the worker's ConfigError."""
        self.ctx = ctx
        self._init(ctx.runner.address)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if gpus and ctx.runner.device != "cpu":
            self.workers, self.gpus_per_worker = gpus, 1.0
            self.cpus_per_worker = max(1.0, float(resources.get("CPU", 1)) // gpus - 1)
        else:
            self.workers = max(1, int(ctx.runner.workers))
            self.cpus_per_worker = max(1.0, float(resources.get("CPU", 1)) // self.workers)
        self.ctx = ctx.shared_by(self.workers)  # `compile: auto` weighs each actor's share

    def run(self, units: list[Unit]) -> Iterator[UnitResult]:
        from ray.data import DataContext

        data_ctx = DataContext.get_current()
        data_ctx.enable_progress_bars = False
        data_ctx.execution_options.preserve_order = False
        items = [{"unit": pickle.dumps(u)} for u in units]
        ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        ds = ds.map_batches(
            self.actor,
            fn_constructor_kwargs={"ctx": self.ctx,
                                   "threads": int(self.ctx.runner.threads or self.cpus_per_worker)},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_gpus=self.gpus_per_worker,
            num_cpus=self.cpus_per_worker,
        )  # Ray Data's actor pool restarts a dead actor and retries its batch
        try:
            for row in ds.iter_rows():
                yield pickle.loads(row["result"])
        except Exception as e:  # noqa: BLE001 - unwrap a worker's ConfigError for the CLI
            cause = _config_error(e)
            if cause is not None:
                raise cause from None
            raise

    def close(self) -> None:
        if self.started_ray and ray.is_initialized():
            ray.shutdown()
        self.started_ray = False
