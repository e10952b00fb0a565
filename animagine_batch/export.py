"""Dataset synthesis exports: filtered, deduplicated, captioned images for fine-tuning.

- kohya: `<stem>.png` + `<stem>.txt` (caption) per image, and `metadata.json` in sd-scripts'
  fine-tune format `{stem: {"caption", "tags", "train_resolution": [w, h]}}`.
- hf-parquet: `data/train-NNNNN-of-MMMMM.parquet` with an `image` column as a struct of bytes and
  path (the layout `datasets` reads as its Image feature, declared in the file's `huggingface`
  metadata), the caption and every score column.

Captions follow Animagine's order: subject, character, series, general tags, then rating,
quality, aesthetic tag (the bucket of the MEASURED aesthetic score) and year. An export is built
in a temporary folder and renamed into place, so the target is either the old or the new export.
Imports no torch: near-duplicates use the stored CLIP image embeddings.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis import ResultsError, load_run, selection
from analysis.diversity import EMBEDDING, embeddings

from . import tags as T

FORMATS = ("kohya", "hf-parquet")
RATING_FROM_WD14 = {"general": "safe", "sensitive": "sensitive", "questionable": "nsfw",
                    "explicit": "explicit, nsfw"}
SHARD_ROWS = 1000


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


def _prompt_tags(prompt: str, group: tuple[str, ...]) -> list[str]:
    found = T.split_tags(prompt)
    if group is T.RATING_TAGS:
        if "explicit" in found:
            return ["explicit, nsfw"]
        return [t for t in ("nsfw", "sensitive", "safe") if t in found][:1]
    return [t for t in found if t in group]


def caption_parts(row: dict, source: str) -> tuple[list[str], list[str]]:
    """(caption tags in Animagine order, general tags) for one row."""
    plain = lambda v: T.strip_emphasis(T.normalise_tag(v)) if v else None  # noqa: E731
    subject, character, series = (plain(row.get(k)) for k in ("subject", "character", "series"))
    if source == "wd14":
        found = row.get("wd14_tags")
        found = [] if found is None else list(found)
        general = [T.strip_emphasis(T.normalise_tag(t)) for t in found
                   if T.normalise_tag(t) != T.normalise_tag(row.get("character") or "")]
        general = [g for g in general if g not in (subject,)]
    else:
        head = {subject, character, series}
        general = [t for t in T.split_tags(row.get("content_prompt") or "") if t not in head]
    prompt = row.get("prompt") or ""
    rating = _prompt_tags(prompt, T.RATING_TAGS)
    if not rating and row.get("wd14_rating") in RATING_FROM_WD14:
        rating = [RATING_FROM_WD14[row["wd14_rating"]]]
    quality = _prompt_tags(prompt, T.QUALITY_TAGS)
    aesthetic = [row["aesthetic_tag"]] if row.get("aesthetic_tag") else []
    year = _prompt_tags(prompt, T.YEAR_TAGS)
    ordered = [t for t in (subject, character, series) if t] + general
    ordered += rating + quality + aesthetic + year
    return list(dict.fromkeys(ordered)), general


def _target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out} is a file")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ResultsError(f"--out {out} is not empty; pass --overwrite to replace it")


def _replace(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export(run_dir: Path, fmt: str, out: Path, where: str | None = None,
           min_aesthetic: float | None = None, dedupe: bool = False, threshold: float = 0.95,
           caption_source: str = "prompt", overwrite: bool = False,
           select_file: Path | None = None, reject_file: Path | None = None) -> int:
    """Write the export; returns the number of images exported. `select_file`: export only the
    images a gallery selection keeps or stars; `reject_file`: leave out those it rejects."""
    if fmt not in FORMATS:
        raise ResultsError(f"--format {fmt}: allowed: {', '.join(FORMATS)}")
    if caption_source not in ("prompt", "wd14"):
        raise ResultsError(f"--caption-source {caption_source}: allowed: prompt, wd14")
    run_dir, out = Path(run_dir), Path(out)
    _target(out, overwrite)
    df = load_run(run_dir)
    if caption_source == "wd14" and "wd14_tags" not in df.columns:
        raise ResultsError("--caption-source wd14: the run has no wd14_tags column")
    picked, rejected = _selections(df, select_file, reject_file)
    rows = select(df, where, min_aesthetic, dedupe, threshold, picked, rejected)
    if picked is not None:
        print(f"{select_file}: {len(picked):,} kept or starred, {len(rows):,} of them pass the "
              "filters")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (write_kohya if fmt == "kohya" else write_hf_parquet)(run_dir, rows, tmp, caption_source)
        _replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(rows)


def _selections(df: pd.DataFrame, select_file, reject_file):
    ids = set(df["task_id"])
    picked = rejected = None
    if select_file is not None:
        s = selection.read(select_file, ids)
        picked = set(s["keep"]) | set(s["starred"])
    if reject_file is not None:
        rejected = set(selection.read(reject_file, ids)["reject"])
    return picked, rejected


def write_kohya(run_dir: Path, rows: pd.DataFrame, folder: Path, source: str) -> None:
    meta = {}
    for row in rows.to_dict("records"):
        stem = row["task_id"]
        caption, general = caption_parts(row, source)
        shutil.copyfile(run_dir / row["image_path"], folder / f"{stem}.png")
        (folder / f"{stem}.txt").write_text(", ".join(caption) + "\n", encoding="utf-8")
        meta[stem] = {"caption": ", ".join(caption), "tags": ", ".join(general),
                      "train_resolution": [int(row["width"]), int(row["height"])]}
    (folder / "metadata.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n",
                                          encoding="utf-8")


SCALAR = {pa.string(): "string", pa.int32(): "int32", pa.int64(): "int64",
          pa.float32(): "float32", pa.float64(): "float64", pa.bool_(): "bool"}


def write_hf_parquet(run_dir: Path, rows: pd.DataFrame, folder: Path, source: str) -> None:
    drop = [c for c in (EMBEDDING, "image_path", "error", "worker") if c in rows.columns]
    table = rows.drop(columns=drop)
    if "wd14_tags" in table.columns:
        table["wd14_tags"] = [", ".join(t) if t is not None else None for t in table["wd14_tags"]]
    captions = [", ".join(caption_parts(r, source)[0]) for r in rows.to_dict("records")]
    (folder / "data").mkdir()
    n_shards = max(1, -(-len(rows) // SHARD_ROWS))
    for shard in range(n_shards):
        lo, hi = shard * SHARD_ROWS, min(len(rows), (shard + 1) * SHARD_ROWS)
        paths = rows["image_path"].iloc[lo:hi].tolist()
        image = pa.array([{"bytes": (run_dir / p).read_bytes(), "path": Path(p).name}
                          for p in paths],
                         pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        part = pa.Table.from_pandas(table.iloc[lo:hi], preserve_index=False)
        part = part.add_column(0, "caption", pa.array(captions[lo:hi], pa.string()))
        part = part.add_column(0, "image", image)
        features = {"image": {"_type": "Image"}}
        for f in part.schema:
            if f.name != "image":
                features[f.name] = {"dtype": SCALAR.get(f.type, "string"), "_type": "Value"}
        part = part.replace_schema_metadata(
            {"huggingface": json.dumps({"info": {"features": features}})})
        pq.write_table(part, folder / "data" / f"train-{shard:05d}-of-{n_shards:05d}.parquet",
                       row_group_size=100)
