"""Where commands may write: never onto, into or over a run.

An output path (a table, a plot, a grid folder, an export) may not be a run directory, lie inside
one, be or lie inside an output root that holds runs, or (for a folder that is replaced) contain
one, `--overwrite` or not. The only writes inside a run are its own `report/` and `grids/`.
Paths are resolved first, so a symlink cannot point an output at a run.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import ResultsError
from ..jobspec.job import is_uri

ADVICE = "choose a path outside every run directory and output root; nothing was written"


def is_run_dir(path: Path) -> bool:
    """A run directory: `results/` beside `job.yaml` or `images/` (a stray job.yaml is not)."""
    return (path / "results").is_dir() and ((path / "job.yaml").is_file()
                                           or (path / "images").is_dir())


def run_inside(folder: Path) -> Path | None:
    """A run directory directly inside `folder` (which makes it an output root), or None."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir() and is_run_dir(Path(entry.path)):
                    return Path(entry.path)
    except OSError:
        pass
    return None


def check_output(out: Path | str, flag: str, allowed: Path | None = None) -> Path:
    """`out` resolved, or `ResultsError` when it would write onto or into a run. `allowed` is a
    folder inside a run that this command writes by design (`RUN/grids`)."""
    if is_uri(str(out)):
        raise ResultsError(f"{flag} {out}: outputs are written to a local folder (a run's own "
                           "report/ and grids/ excepted); give a path")
    given = Path(out)
    path = given.resolve()
    if allowed is not None:
        inside = Path(allowed).parent.resolve() / Path(allowed).name
        if Path(allowed).resolve() != inside:
            raise ResultsError(f"{allowed} is a link to {Path(allowed).resolve()}: a run's "
                               f"{inside.name}/ must be a folder inside it; remove the link")
        if path.is_relative_to(inside):
            return path
    for folder in [path, *path.parents]:
        if not folder.is_dir():
            continue
        where = "is" if folder == path else "lies inside"
        if is_run_dir(folder):
            raise ResultsError(f"{flag} {given} {where} the run directory {folder}: no command "
                               f"writes its output into a run; {ADVICE}")
        run = run_inside(folder)
        if run is not None:
            raise ResultsError(f"{flag} {given} {where} the output root {folder}, which holds "
                               f"runs (e.g. {run.name}); {ADVICE}")
    return path


def contained_run(folder: Path) -> Path | None:
    """A run directory anywhere below `folder`, or None."""
    for top, dirs, _ in os.walk(folder):
        if "results" in dirs and is_run_dir(Path(top)):
            return Path(top)
    return None


def check_file_output(out: Path | str, flag: str, suffixes: tuple[str, ...]) -> Path:
    """A file to be written: a known suffix, an existing folder, not onto a run."""
    given = Path(out)
    path = check_output(given, flag)
    if given.suffix not in suffixes:
        raise ResultsError(f"{flag} {given}: unknown file type {given.suffix or '(none)'!r}; "
                           f"allowed: {', '.join(suffixes)}")
    if path.is_dir():
        raise ResultsError(f"{flag} {given} is a folder; give a file name ending in "
                           f"{', '.join(suffixes)}")
    if not path.parent.is_dir():
        raise ResultsError(f"{flag} {given}: the folder {path.parent} does not exist; create it "
                           "first or choose another")
    return path


def write_atomically(path: Path, flag: str, write) -> None:
    """`write(tmp)` into a temporary file beside `path`, then rename it into place: a failed
    write leaves neither a partial file nor a changed old one."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=path.suffix,
                                   dir=path.parent)
    except OSError as e:
        raise ResultsError(f"{flag} {path}: cannot write in {path.parent} ({e.strerror}); "
                           "choose a writable folder") from None
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except OSError as e:
        raise ResultsError(f"{flag} {path}: cannot write ({e.strerror or e}); nothing was "
                           "written") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
