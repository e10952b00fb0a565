"""Human votes on pairs of images: stored under `<run>/ratings/`, one JSON line per vote.

Each rating server writes its own file (`votes-<time>-<pid>-<token>.jsonl`), so several servers
and raters never write to the same file. A vote is one `os.write` of one complete line on a file
opened for appending, followed by `fsync`; the server answers "saved" only after that, so an
acknowledged vote survives a crash or a power cut. A crash in the middle of a write can leave at
most a torn last line, which the reader skips (and counts); any other unreadable line is an
error that names the file and the line.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from animagine_batch.rundir import ResultsError
from animagine_batch.rundir.storage import location

FOLDER = "ratings"
CHOICES = ("left", "right", "tie", "skip")
# field -> type of a vote record; every record carries all of them
FIELDS = {"vote_id": str, "time": str, "rater": str, "axis": str, "prompt_key": str,
          "seed": int, "left_task": str, "right_task": str, "left_level": str, "right_level": str,
          "choice": str, "mode": str, "shown_ms": int}
MAX_RATER = 64


def check_rater(name) -> str:
    """A rater's name: 1-64 printable characters, trimmed."""
    name = str(name or "").strip()
    if not name or len(name) > MAX_RATER or not name.isprintable():
        raise ValueError(f"rater name {name!r}: give 1-{MAX_RATER} printable characters")
    return name


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class VoteLog:
    """Appends votes to this process's own file under `<run>/ratings/` (created on first vote)."""

    def __init__(self, run_dir: Path | str):
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self.path = (Path(run_dir) / FOLDER /
                     f"votes-{stamp}-{os.getpid()}-{secrets.token_hex(3)}.jsonl")
        self._lock = threading.Lock()
        self._fd: int | None = None

    def append(self, vote: dict) -> dict:
        """Write one vote (all of FIELDS) durably; returns the record as written."""
        record = {k: FIELDS[k](vote[k]) for k in FIELDS}
        if record["choice"] not in CHOICES:
            raise ValueError(f"choice {record['choice']!r}: allowed: {', '.join(CHOICES)}")
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            written = os.write(self._fd, line)
            if written != len(line):  # a short write on a regular file: the disk is full
                raise OSError(f"{self.path}: wrote {written} of {len(line)} bytes of a vote")
            os.fsync(self._fd)
        return record

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def vote_files(run_dir: Path | str) -> list[Path]:
    folder = location(run_dir) / FOLDER
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def _parse(path: Path) -> tuple[list[dict], int]:
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn = 0
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:  # no newline at the end: a write cut short by a crash
        lines.pop()
        torn = 1
    records = []
    for number, raw in enumerate(lines, 1):
        try:
            record = json.loads(raw)
            records.append({k: FIELDS[k](record[k]) for k in FIELDS})
        except (ValueError, KeyError, TypeError) as e:
            raise ResultsError(f"ratings file {path}, line {number}: not a vote record ({e}); "
                               f"each line must be a JSON object with {', '.join(FIELDS)}") \
                from None
    return records, torn


def read_votes(run_dir: Path | str) -> tuple[pd.DataFrame, int]:
    """Every vote of a run (columns FIELDS, plus `file`) and the number of torn lines skipped."""
    records, torn = [], 0
    for path in vote_files(run_dir):
        rows, t = _parse(path)
        records += [{**r, "file": path.name} for r in rows]
        torn += t
    columns = [*FIELDS, "file"]
    df = pd.DataFrame(records, columns=columns)
    if df.empty:
        df = df.astype({k: ("int64" if v is int else "object") for k, v in FIELDS.items()})
    return df, torn
