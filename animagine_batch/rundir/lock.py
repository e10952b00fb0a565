"""One writer per run directory: an advisory lock on `<run>/.lock`.

The lock is `flock` on an open file, so the kernel releases it when its holder exits in any way
(kill -9 included): a lock file left by a dead process never blocks. The file holds the holder's
pid, host, start time and command, for the message a second writer gets. The holder removes the
file before it lets go; a process that locked the file just as it was removed sees that the path
no longer names what it locked and tries again. On object storage the lock is a lease object
instead (`lease.py`).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import ConfigError
from .lease import Lease
from .storage import is_remote, location

LOCK_NAME = ".lock"


def holder(path: Path) -> str:
    """Who holds the lock, in words, from what it wrote into the file."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or not info:
        return "another process"
    try:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info.get("since") or 0)))
    except (TypeError, ValueError, OverflowError, OSError):
        since = "an unknown time"
    return (f"another {info.get('what', 'process')} (pid {info.get('pid')} on host "
            f"{info.get('host')}, since {since}"
            + (f": {info['command']}" if info.get("command") else "") + ")")


class RunLock:
    """`with RunLock(run_dir, "run"):` holds the run directory for one writer. Creates the run
    directory if needed and, when nothing else was written into it, removes it again on exit, so
    a job that fails before its first image leaves no output."""

    def __init__(self, run_dir: Path, what: str = "run"):
        self.run_dir = location(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.what = what
        self._fd: int | None = None
        self._created: list[Path] = []
        self._lease: Lease | None = None

    def __enter__(self) -> "RunLock":
        if is_remote(self.run_dir):
            self._lease = Lease(self.path, self.what, holder)
            self._lease.acquire(self.run_dir)
            return self
        self._created = [p for p in [self.run_dir, *self.run_dir.parents] if not p.exists()]
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"output.root: cannot create {self.run_dir}: {e.strerror}") from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                self._cleanup()
                raise ConfigError(f"cannot write the lock file {self.path} ({e.strerror}); the "
                                  "run directory must be writable") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ConfigError(
                    f"run directory {self.run_dir} is in use by {holder(self.path)}; wait for "
                    "it to finish or stop it, then rerun "
                    "(a lock left by a process that died is released automatically)") from None
            except OSError:  # a filesystem without flock: go on unlocked rather than refuse
                break
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                break
            os.close(fd)  # the file was replaced between open and lock: lock the new one
        self._fd = fd
        info = {"what": self.what, "pid": os.getpid(), "host": socket.gethostname(),
                "since": time.time(), "command": " ".join(sys.argv[1:])[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        if self._lease is not None:
            self._lease.release()
            self._lease = None
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still locked, then let go
            os.close(self._fd)
            self._fd = None
        self._cleanup()

    def _cleanup(self) -> None:
        """Remove the folders this lock created (the run directory and any missing parents),
        deepest first, as long as nothing was written into them."""
        for folder in self._created:
            try:
                folder.rmdir()  # only succeeds when empty
            except OSError:
                break
