"""The lock of a run directory on object storage: a lease object at `<run>/.lock`.

Object storage has no `flock`, and neither pyarrow's nor fsspec's filesystems offer a
conditional write (S3's `If-None-Match` is not exposed), so the lock is a lease. The object holds
the holder's pid, host, start time and command (as the local lock file does) and a token; the
holder rewrites it every `RENEW` seconds. Its age is the storage's own modification time, so the
clocks of the nodes do not matter. A writer that finds a lease refuses, unless

- the lease has not been renewed for `TTL` seconds (its holder was killed, or lost the storage), or
- its holder is a process of this host that no longer exists (a run killed here resumes at once),

in which case it takes the lease over and says so. After writing its lease it waits `SETTLE`
seconds and reads it back: of two writers that start together, the one whose lease was written
last goes on and the other is refused. This is best effort, not mutual exclusion: two writers
that both read "no lease" and write theirs more than `SETTLE` seconds apart can both go on. The
holder notices at its next renewal and warns. Such a double writer wastes work but loses none:
rows of a task are the same whoever made them, parts are named by unit, and readers dedupe.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid

from ..errors import ConfigError

TTL = 60.0  # seconds without renewal after which a lease is abandoned
RENEW = 15.0  # seconds between renewals
SETTLE = 0.5  # seconds between writing a lease and reading it back


def _info(path) -> dict:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True
    return True


def _age(path) -> float | None:
    """Seconds since the lease object was last written, by the storage's clock and ours."""
    import pyarrow.fs as pafs

    info = path.fs.get_file_info(path.path)
    if info.type == pafs.FileType.NotFound:
        return None
    if info.mtime is None:
        return 0.0
    return max(0.0, time.time() - info.mtime.timestamp())


class Lease:
    def __init__(self, path, what: str, describe):
        self.path, self.what, self.describe = path, what, describe
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self, since: float) -> None:
        self.path.write_text(json.dumps({
            "what": self.what, "pid": os.getpid(), "host": socket.gethostname(), "since": since,
            "command": " ".join(sys.argv[1:])[:300], "token": self.token, "lease": "object",
            "ttl": TTL}))

    def acquire(self, run_dir, out=None) -> None:
        out = out or sys.stderr
        try:
            age = _age(self.path)
            info = _info(self.path) if age is not None else {}
        except OSError as e:
            raise ConfigError(f"cannot read the lock object {self.path} ({e}); the run "
                              "directory must be readable and writable") from None
        if age is not None:
            here = info.get("host") == socket.gethostname()
            gone = here and "pid" in info and not _alive(info["pid"])
            if age < TTL and not gone:
                raise ConfigError(
                    f"run directory {run_dir} is in use by {self.describe(self.path)}; wait for "
                    f"it to finish or stop it, then rerun (a lease left by a process that died "
                    f"expires {TTL:.0f} s after its last renewal, {age:.0f} s ago; delete "
                    f"{self.path} only if no process writes the run)")
            why = "its process is gone" if gone else f"not renewed for {age:.0f} s"
            print(f"notice: taking over the lock of {run_dir} from "
                  f"{self.describe(self.path)} ({why})", file=out)
        since = time.time()
        try:
            self._write(since)
            time.sleep(SETTLE)
            mine = _info(self.path).get("token") == self.token
        except OSError as e:
            raise ConfigError(f"cannot write the lock object {self.path} ({e}); the run "
                              "directory must be writable") from None
        if not mine:
            raise ConfigError(f"run directory {run_dir} is in use by {self.describe(self.path)}"
                              " (it started at the same moment); wait for it to finish, then "
                              "rerun")
        self._thread = threading.Thread(target=self._renew, args=(since,), daemon=True,
                                        name="run-lease")
        self._thread.start()

    def _renew(self, since: float) -> None:
        while not self._stop.wait(RENEW):
            try:
                if _info(self.path).get("token") != self.token:
                    print(f"warning: the lock of {self.path} was taken over by "
                          f"{self.describe(self.path)}; two writers are using this run "
                          "directory (no rows are lost: readers keep one row per task)",
                          file=sys.stderr)
                    return
                self._write(since)
            except OSError as e:  # the storage is unreachable: the lease may lapse
                print(f"warning: cannot renew the lock {self.path} ({e})", file=sys.stderr)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            if _info(self.path).get("token") == self.token:
                self.path.unlink(missing_ok=True)
        except OSError:
            pass  # the lease lapses on its own
