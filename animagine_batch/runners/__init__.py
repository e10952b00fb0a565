"""Runners: where units are executed. `local` (in-process reference) and `ray`."""

from __future__ import annotations

import importlib
import os

from ..errors import ConfigError
from .base import Runner, WorkerContext

# The runner registry: name -> module:class of this package. `runner.name` must be one of them
# (the parser gets the names from here); each has a conf/runner/<name>.yaml.
RUNNERS = {"local": "local:LocalRunner", "ray": "ray:RayRunner"}


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """A cluster address must accept connections: a closed port is a message within seconds,
    where Ray itself would retry for minutes. `auto` and no address are left to Ray."""
    if not address or address == "auto":
        return
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as e:
        why = "connection refused" if isinstance(e, ConnectionRefusedError) else (
            f"no answer within {timeout:g} s" if isinstance(e, TimeoutError) else str(e))
        raise ConfigError(f"runner.address: cannot reach the Ray cluster at {address} ({why}); "
                          "start the head node first (ray start --head --port=PORT), or leave "
                          "runner.address unset to start a local Ray for the run") from None


def make_runner(name: str, address: str | None = None) -> Runner:
    if name not in RUNNERS:
        raise ConfigError(f"unknown runner {name!r}; allowed: {', '.join(RUNNERS)}")
    check_address(address)
    host = (address or "").removeprefix("ray://").rsplit(":", 1)[0]
    if not address or host in ("127.0.0.1", "localhost"):
        # A local Ray binds to (and a loopback address stays on) 127.0.0.1 only with this set
        # before ray is imported; otherwise Ray swaps in the machine's interface address.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    module, cls = RUNNERS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)()


__all__ = ["RUNNERS", "Runner", "WorkerContext", "check_address", "make_runner"]
