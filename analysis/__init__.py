"""Statistics and reports over result tables. Imports no torch, diffusers, transformers or ray:
it reads run directories through `animagine_batch.rundir`."""

from animagine_batch.rundir import ResultsError, done_ids, load_run, read_parts

from .diversity import diversity

__all__ = ["ResultsError", "diversity", "done_ids", "load_run", "read_parts"]
