"""Writing a run directory: atomic files, the results store and the scores store.

Every file is written to a temporary name in its folder, flushed to disk and renamed (on object
storage: put in one request, which is atomic: `storage.py`), and a unit's rows are written only
after its PNGs, so a run killed at any moment leaves only whole files. A write the disk refuses
is a `StorageError` (exit 74) naming the file.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, StorageError
from . import compact as compaction
from .layout import IMAGES, JOB_FILE, RESULTS, clear_leftovers, next_part_number, part_name
from .read import done_ids, read_parts
from .storage import is_remote, location, table_bytes


def _fsync_dir(path: Path) -> None:
    if is_remote(path):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def storage_error(path: Path, e: OSError) -> StorageError:
    """A failed write into a run, as the message the command line prints (exit status 74)."""
    full = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    cause = e.strerror or str(e)
    return StorageError(f"cannot write {path}: {cause}"
                        + (" (the disk is full or a file-size limit was reached)" if full else "")
                        + "; everything finished before it is saved: make room and rerun the "
                        "same command to resume")


def atomic_write_bytes(path: Path, data: bytes, staged: bool = True) -> None:
    """Write a whole file or nothing under `path`. On object storage `staged` uploads under a
    temporary key and moves it over the name (`RemotePath.replace_with`); an image is written
    with `staged=False`, one PUT, since an upload torn by an interrupt leaves at most an image
    without its row, which the resumed run makes again."""
    if is_remote(path):
        try:
            return path.replace_with(data) if staged else path.write_bytes(data)
        except OSError as e:
            raise storage_error(path, e) from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    except OSError as e:
        raise storage_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise storage_error(path, e) from None
        raise


def atomic_write_table(path: Path, table: pa.Table) -> None:
    if is_remote(path):
        return atomic_write_bytes(path, table_bytes(table))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=path.parent)
    except OSError as e:
        raise storage_error(path, e) from None
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):  # pyarrow's IO errors are OSErrors too
            raise storage_error(path, e) from None
        raise


def check_writable(root: Path) -> None:
    """The output root can be created and written: probed for real, leaving nothing behind."""
    try:
        root = location(root)
    except ValueError as e:
        raise ConfigError(f"output.root: {root}: {e}") from None
    if is_remote(root):
        return _check_remote(root)
    root = Path(root)
    missing = [p for p in [root, *root.parents] if not p.exists()]
    existing = missing[-1].parent if missing else root
    if not existing.is_dir():
        raise ConfigError(f"output.root: {existing} is a file, not a folder; choose another "
                          "folder with output.root=DIR")
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=root)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"output.root: {root} is not writable ({e.strerror}); choose another "
                          "folder with output.root=DIR") from None
    finally:
        for p in missing:  # deepest first: remove only what the probe created
            try:
                p.rmdir()
            except OSError:
                break


def _check_remote(root) -> None:
    probe = root / f".tmp-probe-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        probe.write_bytes(b"")
        probe.unlink(missing_ok=True)
    except OSError as e:
        raise ConfigError(f"output.root: {root} is not writable ({' '.join(str(e).split())}); "
                          "check the bucket, the endpoint and the credentials, which come from "
                          "the storage library's environment (for S3: AWS_ACCESS_KEY_ID, "
                          "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL or ~/.aws)") from None


def run_folder(run_dir: Path, name: str) -> Path:
    """`run_dir/name`, created, after checking that it is a folder inside the run (a link in a
    shared run directory must not send writes elsewhere). Object storage has neither folders
    nor links."""
    if is_remote(location(run_dir)):
        return location(run_dir) / name
    folder = Path(run_dir) / name
    if not folder.resolve().is_relative_to(Path(run_dir).resolve()):
        raise ConfigError(f"{folder} is a link to {folder.resolve()}, outside the run "
                          "directory; a run's folders must be inside it: replace the link")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(folder, e) from None
    return folder


class RunStore:
    """Writes one run directory; the driver is its only writer."""

    def __init__(self, run_dir: Path, schema: pa.Schema):
        self.run_dir = location(run_dir)
        self.images = self.run_dir / IMAGES
        self.results = self.run_dir / RESULTS
        self.schema = schema
        self._seq = 0

    def open(self, job_yaml: str) -> None:
        """Create the folders, clear leftovers of a killed run, write job.yaml."""
        for folder in (run_folder(self.run_dir, IMAGES), run_folder(self.run_dir, RESULTS)):
            clear_leftovers(folder)
        atomic_write_bytes(self.run_dir / JOB_FILE, job_yaml.encode())
        self._seq = next_part_number(self.results)
        compaction.recover(self.results, _fsync_dir)  # what a merge killed midway left,
        compaction.maintain(self.results, atomic_write_table, _fsync_dir)  # and its merges

    def done_ids(self) -> set[str]:
        return done_ids(self.run_dir)

    def write(self, result) -> None:
        """PNGs first, then the unit's rows as one part; then the base-16 merges it completes
        (`rundir/compact.py`: a check of the names, a merge every 16th part)."""
        for row, png in zip(result.rows, result.pngs):
            if png is not None:
                atomic_write_bytes(self.run_dir / row["image_path"], png, staged=False)
        _fsync_dir(self.images)
        self._write_part(result.rows, result.unit_id)
        compaction.maintain(self.results, atomic_write_table, _fsync_dir)

    def _write_part(self, rows: list[dict], tag: str) -> None:
        unknown = sorted({k for r in rows for k in r} - set(self.schema.names))
        if unknown:
            raise ValueError(f"rows carry columns outside the results schema: {unknown}")
        text = [f.name for f in self.schema if f.type == pa.string()]
        rows = [{**r, **{c: str(r[c]) for c in text if r.get(c) is not None
                         and not isinstance(r[c], str)}} for r in rows]
        table = pa.Table.from_pylist(rows, schema=self.schema)
        atomic_write_table(self.results / part_name(self._seq, tag), table)
        self._seq += 1
        _fsync_dir(self.results)

    def compact(self, min_parts: int = 16) -> None:
        """With `min_parts` parts or more, merge each stretch of neighbouring parts of one
        provenance into one (a run resumed after a scorer or library changed keeps its parts of
        each apart, so every row keeps the record of what scored it). The merged part is written
        before its inputs are deleted and readers dedupe, so a crash here loses nothing; a file
        that is not ours stays where it is."""
        compaction.compact(self.results, atomic_write_table, _fsync_dir, min_parts)


class ScoresStore:
    """Writes one scorer's rescoring parts (`scores/<scorer>/`), a chunk at a time."""

    def __init__(self, run_dir: Path, scorer: str, schema: pa.Schema):
        self.folder = run_folder(run_dir, f"scores/{scorer}")
        clear_leftovers(self.folder)
        self.schema = schema
        self._seq = next_part_number(self.folder)

    def done(self, config_hash: str) -> set[str]:
        """Tasks this folder already holds scores for, made with the same scorer config."""
        t = read_parts(self.folder, ["task_id", "scorer_config"])
        if t.num_rows == 0:
            return set()
        return {i for i, h in zip(t["task_id"].to_pylist(), t["scorer_config"].to_pylist())
                if h == config_hash}

    def write(self, columns: dict[str, list]) -> None:
        atomic_write_table(self.folder / part_name(self._seq),
                           pa.table(columns, schema=self.schema))
        self._seq += 1
