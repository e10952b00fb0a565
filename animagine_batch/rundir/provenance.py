"""The provenance each part carries in its schema metadata: the versions, models and scorers of
a results part, and the scorer of a rescoring part. Readers take from here which scorer made a
column (`analysis/provenance.py`) and which way its metrics point."""

from __future__ import annotations

import json
from pathlib import Path

from .layout import RESULTS, part_files
from .schema import META_KEY
from .storage import location, read_schema

LOWER_IS_BETTER = {"gen_seconds"}  # the one metric of the results contract without a scorer


def part_metadata(path: Path) -> dict:
    """The provenance JSON of one part ({} when it has none)."""
    raw = (read_schema(path).metadata or {}).get(META_KEY.encode(), b"{}")
    return json.loads(raw)


def part_scorers(path: Path, rescored: bool) -> dict[str, dict]:
    """Scorer name -> its provenance, for one results part or one rescoring part."""
    meta = part_metadata(path)
    if rescored:
        return {str(meta.get("scorer", path.parent.name)): meta}
    return dict(meta.get("scorers") or {})


def directions(run_dir: Path | str) -> dict[str, bool]:
    """Column -> higher_is_better, from the scorer provenance of the latest results part."""
    out = {c: False for c in LOWER_IS_BETTER}
    for path in part_files(location(run_dir) / RESULTS)[-1:]:
        for scorer in part_scorers(path, False).values():
            out.update(scorer.get("higher_is_better") or {})
    return out
