"""`run --verify`: re-check a run's finished work before resuming it.

Parts that cannot be read are moved into `<run>/damaged/` (kept, never deleted) so that their
tasks count as not done; every `ok` row's PNG is checked against its `image_sha256` (inside the
run, present, same bytes), and the tasks that fail are generated again. The new rows are written
in a later part, which readers prefer.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ..errors import ResultsError
from .images import check_image, listed
from .layout import DAMAGED, RESULTS, part_files, score_folders
from .read import load_run
from .storage import is_remote, location, move, read_table


def set_aside_unreadable(run_dir: Path) -> list[str]:
    """Move results and scores parts that cannot be read fully into damaged/; their names. On
    object storage a read that fails without a verdict on the bytes (a timeout, a 503) is not
    damage: it stops the check, so a part that holds up to 16^k units' rows is not set aside
    and regenerated for a network hiccup."""
    run_dir = location(run_dir)
    folders = [run_dir / RESULTS, *score_folders(run_dir)]
    moved = []
    for folder in folders:
        for part in part_files(folder):
            try:
                read_table(part)
            except (pa.ArrowInvalid, OSError) as e:
                if is_remote(part) and not isinstance(e, pa.ArrowInvalid):
                    raise ResultsError(f"verify: cannot read {part} ({' '.join(str(e).split())});"
                                       " nothing was set aside: rerun when the storage answers"
                                       ) from None
                rel = part.relative_to(run_dir)
                target = run_dir / DAMAGED / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                move(part, target)
                moved.append(str(rel))
    return moved


def damaged_images(run_dir: Path) -> tuple[int, dict[str, str]]:
    """The number of `ok` rows checked, and task_id -> why its image fails."""
    df = load_run(run_dir)
    if df.empty:
        return 0, {}
    ok = df[df["status"] == "ok"]
    found = {}
    for task, path, sha in zip(ok["task_id"], ok["image_path"], ok["image_sha256"]):
        problem = check_image(run_dir, path, sha)
        if problem:
            found[task] = problem
    return len(ok), found


def verify(run_dir: Path, out) -> set[str]:
    """Print what was found; return the task ids to generate again."""
    moved = set_aside_unreadable(run_dir)
    if moved:
        print(f"verify: {len(moved)} unreadable part(s) moved to damaged/: {listed(moved)}; "
              "their tasks are generated again", file=out)
    n_ok, bad = damaged_images(run_dir)
    print(f"verify: {n_ok:,} images checked, {len(bad):,} damaged"
          + (f" ({listed(list(bad.values()))}); they are generated again" if bad else ""),
          file=out)
    return set(bad)
