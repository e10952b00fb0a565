"""The run directory: explicit Parquet schema, atomic writes, resume index.

Layout: `job.yaml`, `images/<task_id>.png`, `results/part-<seq>-<unit>.parquet`. Every file is
written to a temporary name in its folder, flushed to disk and renamed, and a unit's rows are
written only after its PNGs, so a run killed at any moment leaves only whole files.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from analysis.load import RESULT_KEYS, done_ids, part_files, usable_parts

from .config import PASS_AXES
from .errors import ConfigError, StorageError

TYPES = {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(),
         "float32": pa.float32(), "float64": pa.float64(), "bool": pa.bool_(),
         "list<string>": pa.list_(pa.string()), "binary": pa.binary()}

# The results-table contract (DESIGN.md); axis and scorer columns are added per job. Settings a
# user writes as decimals (cfg, the hi-res scale and strength) are float64, so they read back as
# written (0.55, not float32's 0.550000011920929) and compare equal to the numbers in a query.
HEAD_COLUMNS = [
    ("task_id", "string"), ("job", "string"), ("model", "string"), ("model_name", "string"),
    ("prompt_key", "string"), ("subject", "string"), ("character", "string"),
    ("series", "string"), ("prompt", "string"), ("negative_prompt", "string"),
    ("content_prompt", "string"), ("sampler", "string"), ("steps", "int32"), ("cfg", "float64"),
    ("width", "int32"), ("height", "int32"), ("seed", "int64"), ("weighting", "string"),
    ("hires_scale", "float64"), ("hires_strength", "float64"), ("loras", "string"),
]
TAIL_COLUMNS = [
    ("prompt_tokens", "int32"), ("image_path", "string"), ("image_sha256", "string"),
    ("status", "string"), ("error", "string"), ("gen_seconds", "float64"), ("worker", "string"),
]
FIXED = {name for name, _ in HEAD_COLUMNS + TAIL_COLUMNS}


def axis_type(levels, axis: str = "") -> str:
    """Arrow type of an axis column from its declared levels. Hi-res and LoRA axes are always
    text: `none` (the pass off) stays a level analyses can group by, and a resumed run that adds
    `none` to the levels keeps the column's type (the numbers are in hires_scale, ...)."""
    if axis in PASS_AXES:
        return "string"
    if all(isinstance(v, bool) for v in levels):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in levels):
        return "int64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels):
        return "float64"
    return "string"


def results_schema(axes: dict[str, str], scorer_columns: dict[str, str],
                   provenance: dict | None = None) -> pa.Schema:
    cols = list(HEAD_COLUMNS)
    cols += [(a, t) for a, t in axes.items() if a not in FIXED]
    cols += TAIL_COLUMNS + list(scorer_columns.items())
    schema = pa.schema([pa.field(n, TYPES[t]) for n, t in cols])
    if provenance:
        schema = schema.with_metadata({"animagine_batch": json.dumps(provenance, sort_keys=True)})
    return schema


def _fsync_dir(path: Path) -> None:
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


def atomic_write_bytes(path: Path, data: bytes) -> None:
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


def run_folder(run_dir: Path, name: str) -> Path:
    """`run_dir/name`, created, after checking that it is a folder inside the run (a link in a
    shared run directory must not send writes elsewhere)."""
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
        self.run_dir = Path(run_dir)
        self.images = self.run_dir / "images"
        self.results = self.run_dir / "results"
        self.schema = schema
        self._seq = 0

    def open(self, job_yaml: str) -> None:
        """Create the folders, clear leftovers of a killed run, write job.yaml."""
        run_folder(self.run_dir, "images")
        run_folder(self.run_dir, "results")
        for folder in (self.images, self.results):
            for leftover in folder.glob(".tmp-*"):
                leftover.unlink(missing_ok=True)
        atomic_write_bytes(self.run_dir / "job.yaml", job_yaml.encode())
        numbers = [int(m.group(1)) for p in part_files(self.results)
                   if (m := re.match(r"part-(\d+)", p.name))]
        self._seq = max(numbers, default=-1) + 1

    def done_ids(self) -> set[str]:
        return done_ids(self.run_dir)

    def write(self, result) -> None:
        """PNGs first, then the unit's rows as one part."""
        for row, png in zip(result.rows, result.pngs):
            if png is not None:
                atomic_write_bytes(self.run_dir / row["image_path"], png)
        _fsync_dir(self.images)
        self._write_part(result.rows, result.unit_id)

    def _write_part(self, rows: list[dict], tag: str) -> None:
        unknown = sorted({k for r in rows for k in r} - set(self.schema.names))
        if unknown:
            raise ValueError(f"rows carry columns outside the results schema: {unknown}")
        text = [f.name for f in self.schema if f.type == pa.string()]
        rows = [{**r, **{c: str(r[c]) for c in text if r.get(c) is not None
                         and not isinstance(r[c], str)}} for r in rows]
        table = pa.Table.from_pylist(rows, schema=self.schema)
        atomic_write_table(self.results / f"part-{self._seq:06d}-{tag}.parquet", table)
        self._seq += 1
        _fsync_dir(self.results)

    def compact(self, min_parts: int = 16) -> None:
        """Merge many small parts into one per provenance (readers dedupe, so a crash here loses
        nothing). Parts written with different provenance (a run resumed after a scorer or
        library changed) stay apart, so each row keeps the record of what scored it. Only the
        parts readers merge are replaced: a file that is not ours stays where it is."""
        parts = usable_parts(self.results, RESULT_KEYS)
        if len(parts) < min_parts:
            return
        groups: dict[bytes, list[Path]] = {}
        damaged = (pa.ArrowInvalid, pa.ArrowTypeError, OSError)  # such a part stays, for load_run
        for p in parts:
            try:
                meta = (pq.read_schema(p).metadata or {}).get(b"animagine_batch", b"")
            except damaged:
                continue
            groups.setdefault(meta, []).append(p)
        for meta, group in groups.items():
            if len(group) < 2:
                continue
            try:
                table = pa.concat_tables([pq.read_table(p) for p in group],
                                         promote_options="permissive")
            except damaged:
                continue
            if meta:
                table = table.replace_schema_metadata({b"animagine_batch": meta})
            atomic_write_table(self.results / f"part-{self._seq:06d}-compact.parquet", table)
            self._seq += 1
            for p in group:
                p.unlink()
        _fsync_dir(self.results)
