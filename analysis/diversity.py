"""Diversity of a cell: 1 - mean pairwise cosine of the CLIP image embeddings of images that
share prompt and settings and differ only by seed (higher = more varied)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from animagine_batch.rundir.read import EMBEDDING, embeddings

__all__ = ["EMBEDDING", "diversity", "embeddings", "pairwise_diversity"]
CELL = ["model", "prompt", "negative_prompt", "sampler", "steps", "cfg", "width", "height"]


def pairwise_diversity(matrix: np.ndarray) -> float:
    n = len(matrix)
    if n < 2:
        return float("nan")
    sims = matrix @ matrix.T
    return float(1.0 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))


def diversity(df: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """One row per cell (default: same prompt and settings): `n_images` and `diversity`."""
    if EMBEDDING not in df.columns:
        raise KeyError(f"the table has no {EMBEDDING} column: score the run with a CLIP scorer "
                       "that stores embeddings (store_embeddings: true)")
    keys = [k for k in (by or CELL) if k in df.columns]
    rows = df[(df["status"] == "ok") & df[EMBEDDING].notna()]
    out = []
    for key, cell in rows.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        out.append({**dict(zip(keys, key)), "n_images": len(cell),
                    "diversity": pairwise_diversity(embeddings(cell[EMBEDDING]))})
    return pd.DataFrame(out, columns=[*keys, "n_images", "diversity"])
