"""The Ray runner: a pool of Ray actors fed lazily from the driver's units. Each actor holds one
`Worker` (one pipeline at a time, and the job's scorers) and has up to `depth` units in flight,
so it starts the next unit as soon as it finishes one; results come back as they finish. The
only module that imports ray.

Workers return rows and PNG bytes; the driver persists them, so a multi-node cluster needs no
shared filesystem. With no `runner.address` a local Ray is started on 127.0.0.1 for the run;
`auto`, `HOST:PORT` or `ray://HOST:10001` joins an existing cluster (whose nodes must have
animagine-batch installed).

A killed actor is restarted by Ray and its units are sent again; the unit it was running is
blamed, and one that has killed its actor `max_deaths` times becomes error rows instead.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import ray
from ray.exceptions import RayActorError, RayTaskError

from ..engine.generator import UnitResult, failed_result
from ..jobspec.sweep import Unit
from .base import WorkerContext
from .pool import Feed, pool_shape
from .worker import Worker

# Variables a worker on another node needs to find the same caches, stay offline and reach the
# same object store (its endpoint and region; never credentials, which each node has its own of).
FORWARDED_ENV = ("ANIMAGINE_BATCH_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "HF_HUB_CACHE",
                 "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "ANIMAGINE_BATCH_INJECT_FAULT",
                 "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION")


class UnitWorker:
    """The actor class around a `Worker` (the runner makes it a Ray actor): `use(model)` loads a
    model, `run(unit)` generates a unit."""

    def __init__(self, ctx: WorkerContext, threads: int | None = None):
        self.worker = Worker(ctx, threads)

    def use(self, model: str) -> None:
        self.worker.use(model)

    def run(self, unit: Unit) -> UnitResult:
        return self.worker(unit)


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


@dataclass(eq=False)
class _Slot:
    """One actor: its handle, the model it holds (or was last given), its units in flight
    (oldest first) and its incarnation (bumped when it dies)."""

    actor: object
    model: str | None = None
    inflight: deque = field(default_factory=deque)
    epoch: int = 0
    reloading: bool = False  # restarted after a death: reloading its model, no units yet
    failed_reloads: int = 0  # in a row


@dataclass(eq=False)
class _Sent:
    ref: object
    slot: _Slot
    unit: Unit | None  # None: the slot's reload after a death
    epoch: int
    seq: int


class RayRunner:
    def __init__(self, actor: type = UnitWorker, depth: int = 2, max_deaths: int = 3,
                 gpu_actors: bool | None = None):
        self.actor = actor  # the class around a Worker, made a Ray actor: use(model), run(unit)
        self.depth = depth  # units in flight per actor: the next is queued while one runs
        self.max_deaths = max_deaths  # kills of its actor after which a unit becomes error rows
        self.max_reloads = 5  # failed reloads in a row (backing off) before an actor is given up
        self.gpu_actors = gpu_actors  # test hook: see pool_shape
        self.ctx: WorkerContext | None = None
        self.started_ray = False
        self.workers = 1
        self.gpus_per_worker = 0.0
        self.cpus_per_worker = 1.0
        self.slots: list[_Slot] = []
        self.deaths: dict[str, int] = {}  # unit id -> actor deaths it was blamed for
        self._seq = itertools.count()
        self._due: list[tuple[float, _Slot]] = []  # reloads to send again, not before a time

    def _init(self, address: str | None) -> None:
        if ray.is_initialized():
            return
        import logging

        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
        logging.getLogger("ray").setLevel(logging.ERROR)
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
        """Connect to (or start) Ray, size the pool (`pool_shape`) and start the actors, each
        loading the scorers and the first model: a failure there reaches the driver as the
        worker's ConfigError, before any output."""
        self._init(ctx.runner.address)
        try:
            nodes = ray.nodes()
        except Exception:  # noqa: BLE001 - a client that cannot list nodes sees the totals
            nodes = [{"Alive": True, "Resources": ray.cluster_resources()}]
        self.workers, self.gpus_per_worker, self.cpus_per_worker = pool_shape(
            nodes, ctx.runner, self.gpu_actors)
        self.ctx = ctx.shared_by(self.workers)  # `compile: auto` weighs each actor's share
        threads = int(ctx.runner.threads or self.cpus_per_worker)
        remote = ray.remote(self.actor).options(
            num_gpus=self.gpus_per_worker, num_cpus=self.cpus_per_worker,
            max_restarts=-1, max_task_retries=0)  # the runner resends, counting deaths per unit
        self.slots = [_Slot(remote.remote(self.ctx, threads), first_model)
                      for _ in range(self.workers)]
        self._get([s.actor.use.remote(first_model) for s in self.slots])

    @staticmethod
    def _get(refs):
        try:
            return ray.get(refs)
        except (RayTaskError, RayActorError) as e:  # unwrap a worker's ConfigError for the CLI
            cause = _config_error(e)
            if cause is not None:
                raise cause from None
            raise

    def run(self, units: Iterable[Unit]) -> Iterator[UnitResult]:
        """Yield one result per unit as they finish; `units` is read lazily."""
        feed = Feed(units, lookahead=max(1, len(self.slots)) * self.depth)
        inflight: dict = {}  # ObjectRef -> _Sent (unit None: an actor reloading after a death)
        self._fill(feed, inflight)
        while inflight or self._due:
            wait = self._send_due(inflight)
            if not inflight:
                time.sleep(wait)
                continue
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=wait)
            for ref in ready:
                sent = inflight.pop(ref)
                result = None
                if sent.unit is None:
                    self._reloaded(sent, inflight)
                else:
                    sent.slot.inflight.remove(sent)
                    result = self._outcome(sent, feed, inflight)
                self._fill(feed, inflight)  # before yielding: actors work while the driver writes
                if result is not None:
                    yield result
            if not self.slots and not feed.empty():
                raise RuntimeError(f"every Ray worker died and failed to restart "
                                   f"{self.max_reloads} times in a row; see the Ray logs")

    def _fill(self, feed: Feed, inflight: dict) -> None:
        held = Counter(s.model for s in self.slots)  # models the actors hold (or are given)
        for slot in self.slots:
            while not slot.reloading and len(slot.inflight) < self.depth:
                unit = feed.take(slot.model, lambda m: held[m] > (m == slot.model))
                if unit is None:
                    break
                held[slot.model] -= 1
                held[unit.model] += 1
                slot.model = unit.model
                sent = _Sent(slot.actor.run.remote(unit), slot, unit, slot.epoch, next(self._seq))
                slot.inflight.append(sent)
                inflight[sent.ref] = sent

    def _outcome(self, sent: _Sent, feed: Feed, inflight: dict) -> UnitResult | None:
        """The unit's result; None when it was sent again."""
        try:
            return self._get(sent.ref)
        except RayActorError as e:
            if e.actor_init_failed:  # not the unit's doing: the actor cannot start
                raise
            self._died(sent, inflight)
        unit = sent.unit
        deaths = self.deaths.get(unit.unit_id, 0)
        if deaths < self.max_deaths:
            feed.retry(unit)
            return None
        return failed_result(unit, self.ctx.job, self.ctx.models[unit.model],
                             f"unit {unit.unit_id} ({unit.model}): its Ray worker died {deaths} "
                             "times while running it; not retried again")

    def _died(self, sent: _Sent, inflight: dict) -> None:
        """An actor's death, seen through one of its units. The first such unit of an
        incarnation blames the unit the actor was running (the oldest it had not finished) and
        has the restarted actor reload that unit's model before it gets units again (a unit sent
        before Ray knows of the death would fail without having run); the rest of that
        incarnation's units are sent again unblamed, and the restarted actor takes them back
        first, so no actor returns to a model it has left."""
        slot = sent.slot
        if sent.epoch != slot.epoch:
            return  # this incarnation's death is counted already
        culprit = sent
        for older in slot.inflight:  # oldest first; those sent before `sent` ran before it
            if older.epoch != sent.epoch or older.seq > sent.seq:
                continue
            if not ray.wait([older.ref], timeout=0)[0] or not _succeeded(older.ref):
                culprit = older
                break
        self.deaths[culprit.unit.unit_id] = self.deaths.get(culprit.unit.unit_id, 0) + 1
        slot.epoch += 1
        slot.reloading = True
        slot.model = culprit.unit.model  # the restarted actor resumes where it was
        self._reload(slot, inflight)

    def _reload(self, slot: _Slot, inflight: dict) -> None:
        sent = _Sent(slot.actor.use.remote(slot.model), slot, None, slot.epoch, next(self._seq))
        inflight[sent.ref] = sent

    def _reloaded(self, sent: _Sent, inflight: dict) -> None:
        slot = sent.slot
        try:
            self._get(sent.ref)
        except RayActorError as e:
            if e.actor_init_failed:
                raise
            slot.failed_reloads += 1  # died again, or not restarted yet: try again later
            if slot.failed_reloads >= self.max_reloads:  # given up; the others get its units
                self.slots.remove(slot)
                ray.kill(slot.actor, no_restart=True)
            else:
                self._due.append((time.monotonic() + 0.5 * 2 ** slot.failed_reloads, slot))
            return
        slot.reloading, slot.failed_reloads = False, 0

    def _send_due(self, inflight: dict) -> float | None:
        """Send the reloads whose time has come; seconds until the next one (None: none)."""
        now = time.monotonic()
        for due in [d for d in self._due if d[0] <= now]:
            self._due.remove(due)
            self._reload(due[1], inflight)
        return max(0.0, min(t for t, _ in self._due) - now) if self._due else None

    def close(self) -> None:
        for slot in self.slots:
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.slots = []
        if self.started_ray and ray.is_initialized():
            ray.shutdown()
        self.started_ray = False


def _succeeded(ref) -> bool:
    try:
        ray.get(ref, timeout=0)
        return True
    except Exception:  # noqa: BLE001 - any failure counts
        return False
