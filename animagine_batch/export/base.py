"""What every export format's writer gets (`formats.FORMATS`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

SHARD_ROWS = 1000  # images per shard of an hf-parquet export (--shard-rows)


@dataclass(frozen=True)
class ExportJob:
    run_dir: Path
    rows: pd.DataFrame  # the exported rows, their images verified
    folder: Path  # the temporary folder to fill; renamed to `final` once complete
    final: Path
    caption: Callable[[dict], tuple[list[str], int]]  # row -> (caption tags, leading tags)
    kohya_layout: str = "finetune"
    shard_rows: int = SHARD_ROWS
