"""Aspect-ratio bias probe: the measured score per size bucket on the same prompts and seeds.

Each size is compared with the squarest one (`analysis.compare`: tasks that share every other
factor, t over per-prompt mean differences, Bonferroni across the sizes). The images of two
sizes differ (the model draws them at that size), so a difference is the model's and the
scorer's together: a scorer that favours square images shows as a drop at every wide and tall
size, for every metric it makes, that a human would not see in the grids.
"""

from __future__ import annotations

import math

import pandas as pd

from animagine_batch.rundir import ResultsError

from .compare import compare


def _aspect(size: str) -> float:
    w, h = (int(v) for v in str(size).lower().split("x"))
    return w / h


def size_bias(df: pd.DataFrame, metrics: list[str], dirs: dict[str, bool], axes: list[str],
              reference: str | None = None) -> pd.DataFrame:
    """`compare` by size bucket (`WxH`), each against the squarest (or `reference`), with the
    aspect ratio of each level."""
    frame = df.assign(size=df["width"].astype(int).astype(str) + "x"
                      + df["height"].astype(int).astype(str))
    sizes = list(pd.unique(frame.loc[frame["status"] == "ok", "size"]))
    if len(sizes) < 2:
        raise ResultsError(f"control --bias size: the run has one size ({', '.join(sizes) or '-'}); "
                           "sweep several on the same prompts and seeds, e.g. "
                           "sweep.grid.size=[1024x1024,1216x832,832x1216]")
    order = sorted(sizes, key=lambda s: (abs(math.log(_aspect(s))), _aspect(s)))
    reference = reference or order[0]
    table = compare(frame, "size", metrics, dirs, axes, reference, order)
    table.insert(2, "aspect", table["level"].map(_aspect).round(3))
    return table
