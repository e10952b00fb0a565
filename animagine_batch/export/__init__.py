"""The export stage: filtered, deduplicated, captioned images for fine-tuning, in a format of the
registry (`formats.FORMATS`: `kohya`, sd-scripts' folders; `hf-parquet`, shards `datasets`
reads).

Rows are chosen by `select.py`, captioned by a caption source (`captions.SOURCES`), and written
by the format's writer into a temporary folder beside the target, which is then renamed into
place (`target.py`): the target is either the old or the new export, and only a previous
export is ever replaced. Every image is checked against its `image_sha256` first; damaged ones
are left out and counted. Imports no torch: near-duplicates use the stored CLIP embeddings.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path

from .. import __version__
from ..errors import ResultsError
from ..rundir import load_run
from ..rundir.outputs import check_output
from ..rundir.storage import location
from .base import SHARD_ROWS, ExportJob
from .captions import SOURCES, caption_parts
from .formats import FORMATS
from .kohya import LAYOUTS
from .select import select, selections, verified
from .target import MARKER, check_target, replace

__all__ = ["FORMATS", "LAYOUTS", "SHARD_ROWS", "SOURCES", "caption_parts", "export"]


def _check_options(fmt: str, caption_source: str, kohya_layout: str, shard_rows) -> None:
    for flag, value, allowed in (("--format", fmt, FORMATS),
                                 ("--caption-source", caption_source, SOURCES),
                                 ("--kohya-layout", kohya_layout, LAYOUTS)):
        if value not in allowed:
            raise ResultsError(f"{flag} {value}: allowed: {', '.join(allowed)}")
    if isinstance(shard_rows, bool) or not isinstance(shard_rows, int) or shard_rows < 1:
        raise ResultsError(f"--shard-rows {shard_rows}: must be a whole number of images >= 1")


def export(run_dir: Path, fmt: str, out: Path, where: str | None = None,
           min_aesthetic: float | None = None, dedupe: bool = False, threshold: float = 0.95,
           caption_source: str = "prompt", overwrite: bool = False,
           kohya_layout: str = "finetune", shard_rows: int = SHARD_ROWS,
           select_file: Path | None = None, reject_file: Path | None = None):
    """Write the export; returns the number of images exported and the damaged ones left out.
    `select_file`: export only the images a gallery selection keeps or stars; `reject_file`:
    leave out those it rejects."""
    _check_options(fmt, caption_source, kohya_layout, shard_rows)
    check_output(out, "--out")  # before Path(), which would read s3://b as s3:/b
    run_dir, out = location(run_dir), Path(out)
    check_target(out, overwrite)
    df = load_run(run_dir)
    needed = SOURCES[caption_source].column
    if needed and needed not in df.columns:
        raise ResultsError(f"--caption-source {caption_source}: the run has no {needed} column")
    picked, rejected = selections(df, select_file, reject_file)
    rows, damaged = verified(run_dir, select(df, where, min_aesthetic, dedupe, threshold, picked,
                                             rejected))
    if picked is not None:
        print(f"{select_file}: {len(picked):,} kept or starred, {len(rows):,} of them pass the "
              "filters")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise ResultsError(f"--out {out}: cannot write in {out.parent} ({e.strerror}); choose a "
                           "writable folder") from None
    try:
        FORMATS[fmt](ExportJob(run_dir, rows, tmp, out,
                               functools.partial(caption_parts, source=caption_source),
                               kohya_layout, shard_rows))
        (tmp / MARKER).write_text(json.dumps({
            "format": fmt, "run": str(run_dir.resolve()), "images": len(rows),
            "damaged_left_out": len(damaged), "package": __version__}, indent=1) + "\n")
        replace(tmp, out)
    except OSError as e:
        raise ResultsError(f"--out {out}: cannot write the export ({e.strerror or e}); nothing "
                           "was written and a previous export is unchanged") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(rows), damaged
