"""Runners: where units are executed. `local` (in-process reference) and `ray`."""

from __future__ import annotations

from .base import Runner, WorkerContext


def make_runner(name: str, address: str | None = None) -> Runner:
    if name == "local":
        from .local import LocalRunner

        return LocalRunner()
    if name == "ray":
        import os

        host = (address or "").removeprefix("ray://").rsplit(":", 1)[0]
        if not address or host in ("127.0.0.1", "localhost"):
            # A local Ray binds to (and a loopback address stays on) 127.0.0.1 only with this
            # set before ray is imported; otherwise Ray swaps in the machine's interface address.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        from .ray import RayRunner

        return RayRunner()
    raise ValueError(f"unknown runner {name!r}; allowed: local, ray")


__all__ = ["Runner", "WorkerContext", "make_runner"]
