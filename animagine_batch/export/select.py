"""Which rows an export takes: `ok` images that pass the filters and the gallery selections,
without exact (and, on request, near) duplicates, and whose images are intact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ResultsError
from ..rundir import selection, warn
from ..rundir.images import ImageProblem, check_image, listed, read_image
from ..rundir.read import EMBEDDING, embeddings


def select(df: pd.DataFrame, where: str | None, min_aesthetic: float | None, dedupe: bool,
           threshold: float, picked: set[str] | None = None,
           rejected: set[str] | None = None) -> pd.DataFrame:
    """The exported rows: `ok` images, in `picked` (when given) and not in `rejected`, that
    pass the filters."""
    rows = df[(df["status"] == "ok") & df["image_path"].notna()]
    if picked is not None:
        rows = rows[rows["task_id"].isin(picked)]
    if rejected:
        rows = rows[~rows["task_id"].isin(rejected)]
    if where:
        try:
            rows = rows.query(where, engine="python")
        except Exception as e:  # noqa: BLE001 - pandas raises many types for a bad expression
            raise ResultsError(f"--where {where!r}: {e}") from None
    if min_aesthetic is not None:
        if "aesthetic_score" not in rows.columns:
            raise ResultsError("--min-aesthetic: the run has no aesthetic_score column; score it "
                               "with an aesthetic scorer first (animagine-batch score)")
        rows = rows[rows["aesthetic_score"] >= min_aesthetic]
    order = "aesthetic_score" if "aesthetic_score" in rows.columns else "task_id"
    rows = rows.sort_values([order, "task_id"], ascending=[order == "task_id", True])
    rows = rows.drop_duplicates("image_sha256", keep="first")  # exact duplicates, best kept
    if dedupe:
        rows = drop_near_duplicates(rows, threshold)
    return rows.sort_values("task_id").reset_index(drop=True)


def drop_near_duplicates(rows: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Greedy: walk images best-first, drop any whose CLIP cosine to a kept one exceeds the
    threshold."""
    if EMBEDDING not in rows.columns or rows[EMBEDDING].isna().any():
        raise ResultsError("--dedupe needs CLIP image embeddings (a clip scorer with "
                           "store_embeddings: true) for every exported image")
    if rows.empty:
        return rows
    emb = embeddings(rows[EMBEDDING])
    keep: list[int] = []
    for i in range(len(emb)):
        if not keep or float(np.max(emb[keep] @ emb[i])) <= threshold:
            keep.append(i)
    return rows.iloc[keep]


def verified(run_dir: Path, rows: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows whose image is intact (inside the run, present, matching image_sha256), and a
    message for each one left out."""
    problems = {i: check_image(run_dir, r["image_path"], r.get("image_sha256"))
                for i, r in zip(rows.index, rows.to_dict("records"))}
    damaged = [p for p in problems.values() if p]
    if damaged:
        warn(f"export: {len(damaged):,} damaged image(s) left out: {listed(damaged)}; rerun the "
             "job with --verify to regenerate them")
    return rows.loc[[i for i, p in problems.items() if not p]], damaged


def image_bytes(run_dir: Path, row: dict) -> bytes:
    """A row's image, read inside the run and checked against its image_sha256."""
    try:
        return read_image(run_dir, row["image_path"], row.get("image_sha256"))
    except ImageProblem as e:  # it was intact a moment ago: something is changing the run
        raise ResultsError(f"export stopped: {e}; nothing was written") from None


def selections(df: pd.DataFrame, select_file, reject_file):
    """(task ids a gallery selection keeps or stars, or None; task ids it rejects, or None)."""
    ids = set(df["task_id"])
    picked = rejected = None
    if select_file is not None:
        s = selection.read(select_file, ids)
        picked = set(s["keep"]) | set(s["starred"])
    if reject_file is not None:
        rejected = set(selection.read(reject_file, ids)["reject"])
    return picked, rejected
