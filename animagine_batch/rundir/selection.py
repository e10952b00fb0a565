"""A person's picks from the gallery: `selection.json` (keep / reject / starred task ids).

The gallery downloads it, or saves it to `<run>/selection.json` when served; `export --select`
and `--reject` read it. A plain JSON list of task ids, or a text file with one id a line, is
read as a list of kept images.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ResultsError

FORMAT = "animagine-batch-selection"
MARKS = ("keep", "reject", "starred")
FILE = "selection.json"


def parse(obj, what: str) -> dict[str, list[str]]:
    """{mark: [task ids]} from a selection object or list; an error names `what`."""
    if isinstance(obj, list):
        obj = {"format": FORMAT, "keep": obj}
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ResultsError(f"{what}: not a selection (a JSON object with \"format\": "
                           f"\"{FORMAT}\" and lists {', '.join(MARKS)}, a JSON list of task "
                           "ids, or one task id a line)")
    out = {}
    for mark in MARKS:
        ids = obj.get(mark, [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ResultsError(f"{what}: \"{mark}\" must be a list of task ids")
        out[mark] = list(dict.fromkeys(ids))
    both = set(out["reject"]) & (set(out["keep"]) | set(out["starred"]))
    if both:
        raise ResultsError(f"{what}: {len(both)} task ids are both rejected and kept, e.g. "
                           f"{', '.join(sorted(both)[:3])}")
    return out


def check_ids(selection: dict[str, list[str]], run_ids: set[str], what: str) -> None:
    unknown = sorted({i for ids in selection.values() for i in ids} - run_ids)
    if unknown:
        raise ResultsError(f"{what}: {len(unknown):,} task ids are not in the run, e.g. "
                           f"{', '.join(unknown[:3])}; a selection belongs to the run it was "
                           "made in")


def read(path: Path | str, run_ids: set[str]) -> dict[str, list[str]]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsError(f"selection file {path}: cannot read it ({e})") from None
    try:
        obj = json.loads(text)
    except ValueError:
        obj = [line.strip() for line in text.splitlines() if line.strip()]
        if not obj or any(not all(c in "0123456789abcdef" for c in i) for i in obj):
            raise ResultsError(f"selection file {path}: neither JSON nor one task id a line") \
                from None
    selection = parse(obj, f"selection file {path}")
    check_ids(selection, run_ids, f"selection file {path}")
    return selection


def write(run_dir: Path, obj, run_ids: set[str]) -> Path:
    """Validate and save a selection to `<run>/selection.json` atomically."""
    selection = parse(obj, "the selection")
    check_ids(selection, run_ids, "the selection")
    body = {"format": FORMAT, "version": 1, "saved": datetime.now(timezone.utc).isoformat(
        timespec="seconds"), **selection}
    path = Path(run_dir) / FILE
    tmp = path.with_name(f".{FILE}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
