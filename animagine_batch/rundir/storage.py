"""Where a run directory lies: a local folder, or a prefix on object storage.

`location(root)` gives a `pathlib.Path` for a local path and a `RemotePath` for a URI
(`s3://bucket/prefix`, `gs://bucket/prefix`, or any object store fsspec knows, such as
`memory://` or `az://` with its package installed). The run directory's code uses the same few
operations on both; what differs is kept here:

- The filesystem is pyarrow's own (`pyarrow.fs.FileSystem.from_uri`: S3, GCS) or, for other
  schemes, fsspec's through `pyarrow.fs.FSSpecHandler`. Credentials come from the library's usual
  environment and config files (`AWS_ACCESS_KEY_ID`, `~/.aws/credentials`, an instance role,
  `GOOGLE_APPLICATION_CREDENTIALS`, ...); the endpoint of an S3-compatible server comes from
  `AWS_ENDPOINT_URL` or from the URI (`s3://bucket/runs?endpoint_override=HOST:PORT&scheme=http`).
  Nothing of them is written into the run.
- An object appears whole or not at all when its PUT completes; but an upload interrupted
  after it began (Ctrl-C, a failed write) is completed with what was written when its stream
  closes. So a run's parts and job.yaml are uploaded under a temporary `.tmp-` key beside their
  name and then moved over it (`replace_with`: a server-side copy, then the delete of the temporary):
  the name holds a whole object or nothing, and a killed writer leaves only `.tmp-` objects,
  which the next run clears as it clears a local folder's. No fsync. Images are one PUT: a torn
  one has no row yet (rows follow their PNGs) and is made again by the resumed run.
- Filesystems whose files are visible while they are written (HDFS, SFTP, FTP, SMB) are
  refused (`NOT_OBJECT_STORES`): they need a rename to be atomic, and a local mount of such a
  share is a local path. Objects are written from
  memory (`write_bytes`), so each is one request below the library's multipart size.
- There are no folders (a prefix exists while something lies under it; `mkdir` does nothing)
  and no links (`is_symlink` is False, `resolve` is the path itself).
"""

from __future__ import annotations

import fnmatch
import functools
import os
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from ..jobspec.job import is_uri

# pyarrow is imported where it is used: the command line imports this module (through
# layout.py) for every command, most of which never touch a file.


NOT_OBJECT_STORES = ("hdfs", "viewfs", "webhdfs", "sftp", "ssh", "ftp", "smb")


@functools.lru_cache(maxsize=32)
def _filesystem(scheme: str, netloc: str, query: str):
    """One filesystem per scheme, bucket and options (they are cheap to share, not to make):
    pyarrow's own, else fsspec's. A URI neither knows is a ValueError."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    uri = f"{scheme}://{netloc}" + (f"?{query}" if query else "")
    shown = uri.split("?")[0]
    if scheme in NOT_OBJECT_STORES:
        raise ValueError(f"{shown}: {scheme}:// is not an object store (its files can be read "
                         "while they are being written); use an object store (s3://, gs://, "
                         "az://, ...) or a local path, such as a mount of the share")
    try:
        return pafs.FileSystem.from_uri(uri)[0]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        unknown = " ".join(str(e).split())
    except OSError as e:  # S3 looks the bucket's region up when none is configured
        raise ValueError(f"cannot open {shown} ({' '.join(str(e).split())})") from None
    try:
        import fsspec

        fs, _ = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as e:  # no fsspec, an unknown protocol, its package missing
        raise ValueError(f"{shown}: neither pyarrow ({unknown}) nor fsspec ({e}) knows the "
                         f"filesystem {scheme}://; install the package that provides it") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


class RemotePath:
    """A file or prefix on a remote filesystem, with the part of pathlib's interface the run
    directory uses. `str()` is the URI (with its query, so it can be handed on as it is)."""

    __slots__ = ("scheme", "key", "query", "fs")

    def __init__(self, uri: str):
        parts = urlsplit(uri)
        self.scheme, self.query = parts.scheme, parts.query
        key = (parts.netloc + parts.path).strip("/")
        self.key = str(PurePosixPath(key)) if key else ""
        self.fs = _filesystem(parts.scheme, parts.netloc, parts.query)

    @classmethod
    def _at(cls, like: "RemotePath", key: str) -> "RemotePath":
        p = cls.__new__(cls)
        p.scheme, p.query, p.fs, p.key = like.scheme, like.query, like.fs, key
        return p

    @property
    def path(self) -> str:
        """The path the filesystem object takes: `bucket/prefix/...`."""
        return self.key

    def __str__(self) -> str:
        return f"{self.scheme}://{self.key}" + (f"?{self.query}" if self.query else "")

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, RemotePath) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other: "RemotePath") -> bool:
        return self.key < other.key

    def __truediv__(self, other) -> "RemotePath":
        rest = str(other).strip("/")
        if not rest:
            return self
        if ".." in rest.split("/"):
            raise ValueError(f"{other!r}: a path on object storage cannot climb with '..'")
        return RemotePath._at(self, f"{self.key}/{rest}")

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self.key).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.key).suffix

    @property
    def parent(self) -> "RemotePath":
        return RemotePath._at(self, str(PurePosixPath(self.key).parent))

    def with_name(self, name: str) -> "RemotePath":
        return self.parent / name

    def relative_to(self, other: "RemotePath") -> PurePosixPath:
        return PurePosixPath(self.key).relative_to(PurePosixPath(other.key))

    def is_relative_to(self, other) -> bool:
        return isinstance(other, RemotePath) and PurePosixPath(self.key).is_relative_to(
            PurePosixPath(other.key))

    def resolve(self) -> "RemotePath":
        return self

    def is_symlink(self) -> bool:
        return False

    def _type(self) -> str:
        return self.fs.get_file_info(self.path).type.name  # NotFound, File, Directory, ...

    def exists(self) -> bool:
        return self._type() != "NotFound"

    def is_file(self) -> bool:
        return self._type() == "File"

    def is_dir(self) -> bool:
        return self._type() == "Directory"

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Object storage has no folders: a prefix exists once an object lies under it."""

    def rmdir(self) -> None:
        """Nothing to remove (see `mkdir`)."""

    def iterdir(self):
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return iter(sorted(RemotePath._at(self, i.path.lstrip("/")) for i in infos))

    def glob(self, pattern: str):
        """Children whose names match `pattern` (one level, as the run directory uses it)."""
        return (p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern))

    def rglob(self, pattern: str):
        """Objects (files, not prefixes) at any depth whose names match `pattern`."""
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True,
                                                        recursive=True))
        found = (RemotePath._at(self, i.path.lstrip("/")) for i in infos
                 if i.type == pafs.FileType.File)
        return (p for p in sorted(found) if fnmatch.fnmatchcase(p.name, pattern))

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """One PUT: the object is replaced whole, or not at all."""
        with self.fs.open_output_stream(self.path) as f:
            f.write(data)

    def replace_with(self, data: bytes) -> None:
        """Upload under a temporary key beside this one, then move it over this name, so the
        name holds the whole of `data` or what it held before (module doc)."""
        tmp = self.parent / f".tmp-{os.urandom(6).hex()}-{self.name}"
        try:
            tmp.write_bytes(data)
            self.fs.move(tmp.path, self.path)
        except BaseException:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass  # left for the next run's `clear_leftovers`
            raise

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.delete_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise


def location(root) -> Path | RemotePath:
    """A local path as a `Path`, a URI as a `RemotePath`. Raises ValueError for a URI whose
    filesystem is unknown."""
    if isinstance(root, (Path, RemotePath)):
        return root
    text = os.fspath(root)
    if is_uri(text):
        return RemotePath(text)
    return Path(text.removeprefix("file://"))


def is_remote(path) -> bool:
    return isinstance(path, RemotePath)


def read_schema(path):
    import pyarrow.parquet as pq

    if is_remote(path):
        return pq.read_schema(path.path, filesystem=path.fs)
    return pq.read_schema(path)


def parquet_file(path):
    """A Parquet file opened once (schema, then the columns a reader needs)."""
    import pyarrow.parquet as pq

    if is_remote(path):
        return pq.ParquetFile(path.path, filesystem=path.fs)
    return pq.ParquetFile(path)


def read_table(path, columns: list[str] | None = None):
    import pyarrow.parquet as pq

    if is_remote(path):
        return pq.read_table(path.path, columns=columns, filesystem=path.fs)
    return pq.read_table(path, columns=columns)


def table_bytes(table) -> bytes:
    """A table as one Parquet file's bytes (written to object storage in one PUT)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def upload_tree(local: Path, remote: RemotePath, prune: bool = False) -> None:
    """Copy the folder `local` to the prefix `remote`, each file in one PUT; with `prune`, then
    delete the objects under the prefix that the folder does not hold, so the prefix is the
    folder's copy (a reader meanwhile sees old files, new ones or a mix, never a partial one)."""
    local = Path(local)
    written = set()
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        target = remote / path.relative_to(local).as_posix()
        target.write_bytes(path.read_bytes())
        written.add(target.key)
    for old in list(remote.rglob("*")) if prune else []:
        if old.key not in written:
            old.unlink(missing_ok=True)


def move(src, dst) -> None:
    """Rename a file. On object storage a copy, then the delete of the original: the copy is
    whole before the original goes, so a reader sees one or both (readers dedupe)."""
    if is_remote(src):
        src.fs.move(src.path, dst.path)
    else:
        os.replace(src, dst)
