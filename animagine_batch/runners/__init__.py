"""Runners: where units are executed. `local` (in-process reference) and `ray`."""

from __future__ import annotations

from .base import Runner, WorkerContext


def make_runner(name: str) -> Runner:
    if name == "local":
        from .local import LocalRunner

        return LocalRunner()
    raise ValueError(f"unknown runner {name!r}; allowed: local")


__all__ = ["Runner", "WorkerContext", "make_runner"]
