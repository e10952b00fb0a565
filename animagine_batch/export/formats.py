"""The export-format registry (`--format`): name -> writer of an `ExportJob`. A format is one
module with a `write(job)` and one line here."""

from __future__ import annotations

from . import hf_parquet, kohya

FORMATS = {"kohya": kohya.write, "hf-parquet": hf_parquet.write}
