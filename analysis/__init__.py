"""Statistics and reports over result tables. Imports no torch, diffusers, transformers or ray."""

from .diversity import diversity
from .load import ResultsError, done_ids, load_run, read_parts

__all__ = ["ResultsError", "diversity", "done_ids", "load_run", "read_parts"]
