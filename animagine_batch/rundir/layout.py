"""The layout of a run directory: its files and folders, and how parts are named.

```
<output.root>/<name>/
  job.yaml                         the configuration as run, its provenance and history
  images/<task_id>.png             one PNG per finished image
  results/part-<seq>-<unit>.parquet   generation rows of one unit (level 0)
  results/part-<last>-L<k>-<first>.parquet  a merge of the parts <first>..<last> (level k)
  scores/<scorer>/part-<seq>.parquet  rows of a rescoring, keyed by task_id
  damaged/                         parts `run --verify` set aside
  .lock                            while a run or score is writing
```

A part's name starts with `part-` and a sequence number (`PART`): readers take parts in that
order (numerically, then by level), so a later part wins over an earlier row of the same task.
Every unit's part takes the next number. A merged part (`rundir/compact.py`) carries the number
of the last part it replaces, its level and the number of the first: it covers the span
<first>..<last> and sorts where its inputs were, after them when both are present (a merge
killed before its inputs were deleted), so the order in which readers see the rows of a task is
the order in which they were written. A part whose span lies inside a higher-level part's is a
leftover of such a merge.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigError, ResultsError
from .storage import is_remote, location

JOB_FILE = "job.yaml"
IMAGES, RESULTS, SCORES, DAMAGED = "images", "results", "scores", "damaged"
RUN_FOLDERS = (IMAGES, RESULTS, SCORES, "grids", "report")
PART = re.compile(r"part-(\d+)")  # the sequence number of a part's name
MERGED = re.compile(r"part-(\d+)-L(\d+)-(\d+)\.parquet")  # last, level, first of a merge
TEMPORARY = ".tmp-*"  # files being written: a killed writer leaves only these


def image_path(task_id: str) -> str:
    """Where a task's PNG lies, relative to the run directory."""
    return f"{IMAGES}/{task_id}.png"


def part_name(seq: int, tag: str | None = None) -> str:
    return f"part-{seq:06d}-{tag}.parquet" if tag else f"part-{seq:06d}.parquet"


def merged_part_name(first: int, last: int, level: int) -> str:
    """The name of a part that replaces the parts numbered first..last."""
    return f"part-{last:06d}-L{level}-{first:06d}.parquet"


def part_span(name: str) -> tuple[int, int, int] | None:
    """(first, last, level) of a part's name; a unit's part covers its own number at level 0.
    None for a name without a sequence number."""
    if m := MERGED.fullmatch(name):
        return int(m.group(3)), int(m.group(1)), int(m.group(2))
    if m := PART.match(name):
        return int(m.group(1)), int(m.group(1)), 0
    return None


def _order(path: Path) -> tuple:
    span = part_span(path.name)
    return (0, span[1], span[2], path.name) if span else (1, 0, 0, path.name)


def part_files(folder: Path | str) -> list[Path]:
    """The parts of a folder (`results/`, `scores/<scorer>/`) in write order: by sequence number,
    then level (names without a number last)."""
    folder = location(folder)
    return sorted(folder.glob("part-*.parquet"), key=_order) if folder.is_dir() else []


def next_part_number(folder: Path | str) -> int:
    """The sequence number the next part of a folder gets."""
    numbers = [int(m.group(1)) for p in part_files(folder) if (m := PART.match(p.name))]
    return max(numbers, default=-1) + 1


def clear_leftovers(folder: Path) -> None:
    """Remove the temporary files a killed writer left in a folder."""
    for leftover in location(folder).glob(TEMPORARY):
        leftover.unlink(missing_ok=True)


def score_folders(run_dir: Path | str) -> list[Path]:
    """`scores/<scorer>/` folders of a run, in the order readers lay them over the results."""
    scores = location(run_dir) / SCORES
    return sorted(p for p in scores.iterdir() if p.is_dir()) if scores.is_dir() else []


def all_parts(run_dir: Path | str) -> list[tuple[Path, bool]]:
    """Every part of a run in the order `load_run` lays them: (path, from a rescoring)."""
    parts = [(p, False) for p in part_files(location(run_dir) / RESULTS)]
    for folder in score_folders(run_dir):
        parts += [(p, True) for p in part_files(folder)]
    return parts


def named_run(path: str | Path):
    """A run directory named on the command line, a folder or a URI (it must have results/)."""
    try:
        p = location(path)
        found = (p / RESULTS).is_dir()
    except ValueError as e:
        raise ResultsError(f"{path}: {e}") from None
    except OSError as e:  # object storage: no such bucket, refused credentials, no endpoint
        raise ResultsError(f"{path}: cannot be read ({' '.join(str(e).split())})") from None
    if not found:
        raise ResultsError(f"{p} is not a run directory (no results/ folder)")
    return p


def check_run_dir(run_dir: Path, named_by_user: bool = False) -> None:
    """A run directory is data too: no folder inside it, nor the run directory itself when a job
    names it (<output.root>/<name>), may be a symbolic link, which would send the files a run
    writes somewhere else. A link the user names on the command line (a run directory given by
    path, an output root) is the user's own choice and is followed. Object storage has no
    links."""
    try:
        run_dir = location(run_dir)
    except ValueError as e:
        raise ConfigError(f"output.root: {e}") from None
    if is_remote(run_dir):
        try:
            run_dir.exists()
        except OSError as e:
            raise ConfigError(f"output.root: cannot reach {run_dir} ({' '.join(str(e).split())});"
                              " check the endpoint and the credentials, which come from the "
                              "storage library's environment (for S3: AWS_ACCESS_KEY_ID, "
                              "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL or ~/.aws)") from None
        return
    inside = [run_dir / f for f in RUN_FOLDERS]
    links = [p for p in (inside if named_by_user else [run_dir, *inside]) if p.is_symlink()]
    scores = run_dir / SCORES
    if scores.is_dir() and not scores.is_symlink():
        links += [p for p in scores.iterdir() if p.is_symlink()]
    if links:
        raise ConfigError([f"run directory {run_dir}: {p} is a symbolic link (to "
                           f"{p.resolve()}); a run writes only into real folders of its own "
                           "run directory; replace the link with a folder" for p in links])
