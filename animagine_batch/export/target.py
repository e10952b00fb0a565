"""The folder an export goes to: it may not touch a run, and it replaces only a previous export
(marked by `MARKER`), by renaming a complete temporary folder into place."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import ResultsError
from ..rundir.outputs import check_output, contained_run

MARKER = ".animagine-batch-export.json"  # marks a folder as an export that --overwrite may replace


def check_target(out: Path, overwrite: bool) -> None:
    """The target may not touch a run; a non-empty one is replaced only when it is a previous
    export and `--overwrite` is given."""
    check_output(out, "--out")
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out} is a file; an export is a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise ResultsError(f"--out {out} is not empty; pass --overwrite to replace a previous "
                           "export, or choose an empty or new folder")
    if not (out / MARKER).is_file():
        raise ResultsError(f"--out {out} is not an export made by animagine-batch (it has no "
                           f"{MARKER}); --overwrite replaces only a previous export, so choose "
                           "an empty or new folder; nothing was written")
    run = contained_run(out)
    if run is not None:
        raise ResultsError(f"--out {out} contains the run directory {run}; an export never "
                           "replaces a run; choose another folder; nothing was written")


def replace(tmp: Path, out: Path) -> None:
    old = None
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        if not (out / MARKER).is_file():  # checked again: it may have changed since check_target
            raise ResultsError(f"--out {out} changed during the export and is no longer a "
                               "previous export; the new export was not moved into place")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)  # rename(2) also replaces an empty folder
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
