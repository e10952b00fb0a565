"""Dataset synthesis exports: filtered, deduplicated, captioned images for fine-tuning.

- kohya: `<stem>.png` + `<stem>.txt` (caption) per image, `metadata.json` in sd-scripts'
  fine-tune format and a `dataset_config.toml`, in the fine-tune or DreamBooth layout
  (`kohya.py`), so that sd-scripts trains on the folder as it is.
- hf-parquet: `data/train-NNNNN-of-MMMMM.parquet` with an `image` column as a struct of bytes and
  path (the layout `datasets` reads as its Image feature, declared in the file's `huggingface`
  metadata), the caption and every score column, every shard with the same declared types.

Captions follow Animagine's order: subject, character, series, general tags, then rating,
quality, aesthetic tag (the bucket of the MEASURED aesthetic score) and year, each tag once. An
export is built in a temporary folder beside the target and renamed into place, so the target is
either the old or the new export; it replaces only a previous export (marked by `MARKER`), never
a run or anything else. Every image is checked against its `image_sha256` first; damaged ones are
left out and counted. Imports no torch: near-duplicates use the stored CLIP image embeddings.
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
from PIL import Image

from analysis import selection
from analysis.diversity import EMBEDDING, embeddings

from . import __version__, kohya
from .spec import tags as T
from .errors import ResultsError
from .rundir import load_run, warn
from .rundir.images import ImageProblem, check_image, listed, read_image
from .rundir.layout import all_parts
from .rundir.outputs import check_output, contained_run

FORMATS = ("kohya", "hf-parquet")
RATING_FROM_WD14 = {"general": "safe", "sensitive": "sensitive", "questionable": "nsfw",
                    "explicit": "explicit, nsfw"}
SHARD_ROWS = 1000  # images per shard of an hf-parquet export (--shard-rows)
MARKER = ".animagine-batch-export.json"  # marks a folder as an export that --overwrite may replace


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


def _tokens(tags: list[str]) -> list[str]:
    """Tags as sd-scripts reads a caption: split at every comma and stripped, each kept once."""
    return list(dict.fromkeys(t.strip() for tag in tags for t in tag.split(",") if t.strip()))


def caption_parts(row: dict, source: str) -> tuple[list[str], int]:
    """(caption tags of one row in Animagine order, each once and without commas; how many of
    them lead the caption: the subject, character and series)."""
    plain = lambda v: T.strip_emphasis(T.normalise_tag(v)) if v else None  # noqa: E731
    head = _tokens([h for k in ("subject", "character", "series")
                    if (h := plain(T.field_text(row.get(k))))])
    if source == "wd14":
        found = row.get("wd14_tags")
        found = list(found) if isinstance(found, (list, tuple, np.ndarray)) else []
        general = [T.strip_emphasis(T.normalise_tag(t)) for t in found]
    else:
        general = T.split_tags(T.field_text(row.get("content_prompt")) or "")
    prompt = T.field_text(row.get("prompt")) or ""
    rating = _prompt_tags(prompt, T.RATING_TAGS)
    if not rating and row.get("wd14_rating") in RATING_FROM_WD14:
        rating = [RATING_FROM_WD14[row["wd14_rating"]]]
    quality = _prompt_tags(prompt, T.QUALITY_TAGS)
    aesthetic = [a] if (a := T.field_text(row.get("aesthetic_tag"))) else []
    year = _prompt_tags(prompt, T.YEAR_TAGS)
    rest = _tokens(general + rating + quality + aesthetic + year)
    return head + [t for t in rest if t not in head], len(head)


def _target(out: Path, overwrite: bool) -> None:
    """The target may not touch a run; a non-empty one is replaced only when it is a previous
    export and `--overwrite` is given."""
    check_output(out, "--out")
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out} is a file; an export is a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise ResultsError(f"--out {out} is not empty; pass --overwrite to replace a previous "
                           "export, or choose an empty or new folder")
    if not (out / MARKER).is_file():
        raise ResultsError(f"--out {out} is not an export made by animagine-batch (it has no "
                           f"{MARKER}); --overwrite replaces only a previous export, so choose "
                           "an empty or new folder; nothing was written")
    run = contained_run(out)
    if run is not None:
        raise ResultsError(f"--out {out} contains the run directory {run}; an export never "
                           "replaces a run; choose another folder; nothing was written")


def _replace(tmp: Path, out: Path) -> None:
    old = None
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        if not (out / MARKER).is_file():  # checked again: it may have changed since _target
            raise ResultsError(f"--out {out} changed during the export and is no longer a "
                               "previous export; the new export was not moved into place")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)  # rename(2) also replaces an empty folder
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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


def export(run_dir: Path, fmt: str, out: Path, where: str | None = None,
           min_aesthetic: float | None = None, dedupe: bool = False, threshold: float = 0.95,
           caption_source: str = "prompt", overwrite: bool = False,
           kohya_layout: str = "finetune", shard_rows: int = SHARD_ROWS,
           select_file: Path | None = None, reject_file: Path | None = None):
    """Write the export; returns the number of images exported and the damaged ones left out.
    `select_file`: export only the images a gallery selection keeps or stars; `reject_file`:
    leave out those it rejects."""
    if fmt not in FORMATS:
        raise ResultsError(f"--format {fmt}: allowed: {', '.join(FORMATS)}")
    if caption_source not in ("prompt", "wd14"):
        raise ResultsError(f"--caption-source {caption_source}: allowed: prompt, wd14")
    if kohya_layout not in kohya.LAYOUTS:
        raise ResultsError(f"--kohya-layout {kohya_layout}: allowed: {', '.join(kohya.LAYOUTS)}")
    if isinstance(shard_rows, bool) or not isinstance(shard_rows, int) or shard_rows < 1:
        raise ResultsError(f"--shard-rows {shard_rows}: must be a whole number of images >= 1")
    run_dir, out = Path(run_dir), Path(out)
    _target(out, overwrite)
    df = load_run(run_dir)
    if caption_source == "wd14" and "wd14_tags" not in df.columns:
        raise ResultsError("--caption-source wd14: the run has no wd14_tags column")
    picked, rejected = _selections(df, select_file, reject_file)
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
        if fmt == "kohya":
            write_kohya(run_dir, rows, tmp, caption_source, kohya_layout, out)
        else:
            write_hf_parquet(run_dir, rows, tmp, caption_source, shard_rows)
        (tmp / MARKER).write_text(json.dumps({
            "format": fmt, "run": str(run_dir.resolve()), "images": len(rows),
            "damaged_left_out": len(damaged), "package": __version__}, indent=1) + "\n")
        _replace(tmp, out)
    except OSError as e:
        raise ResultsError(f"--out {out}: cannot write the export ({e.strerror or e}); nothing "
                           "was written and a previous export is unchanged") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(rows), damaged


def _selections(df: pd.DataFrame, select_file, reject_file):
    ids = set(df["task_id"])
    picked = rejected = None
    if select_file is not None:
        s = selection.read(select_file, ids)
        picked = set(s["keep"]) | set(s["starred"])
    if reject_file is not None:
        rejected = set(selection.read(reject_file, ids)["reject"])
    return picked, rejected


def write_kohya(run_dir: Path, rows: pd.DataFrame, folder: Path, source: str,
                layout: str = "finetune", final: Path | None = None) -> None:
    """The pairs, `metadata.json` (fine-tune layout) and `dataset_config.toml`; `final` is where
    `folder` will be renamed to (the config names absolute paths)."""
    sub = kohya.subset_folder(Path(run_dir).resolve().name) if layout == "dreambooth" else ""
    images = folder / sub
    images.mkdir(exist_ok=True)
    meta, sizes, keep = {}, [], 0
    for row in rows.to_dict("records"):
        name = f"{row['task_id']}.png"
        caption, lead = caption_parts(row, source)
        (images / name).write_bytes(image_bytes(run_dir, row))
        with Image.open(images / name) as im:
            size = im.size  # what was saved: a hi-res image is larger than width x height
        (images / f"{row['task_id']}{kohya.CAPTION_EXTENSION}").write_text(
            ", ".join(caption) + "\n", encoding="utf-8")
        meta[name] = kohya.metadata_entry(", ".join(caption), size)
        sizes.append(size)
        keep = max(keep, lead)
    if layout == "finetune":
        (folder / "metadata.json").write_text(
            json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if sizes:
        (folder / "dataset_config.toml").write_text(
            kohya.dataset_config(layout, final or folder, sub, sizes, keep), encoding="utf-8")


SCALAR = {pa.string(): "string", pa.int32(): "int32", pa.int64(): "int64",
          pa.float32(): "float32", pa.float64(): "float64", pa.bool_(): "bool"}


def shard_schema(run_dir: Path, table: pd.DataFrame) -> pa.Schema:
    """One Arrow schema for every shard, so `datasets` reads them as one table: the types the run
    declared (its results and scores parts), whatever a shard holds; text for the joined
    `wd14_tags`; for any other column the type of the whole column (text where all of it is
    null). Per-shard inference would type a column that is null throughout one shard as null."""
    parts = [p for p, _ in all_parts(run_dir)]
    declared = pa.unify_schemas([pq.read_schema(p).remove_metadata() for p in parts],
                                promote_options="permissive") if parts else pa.schema([])
    fields = []
    for name in table.columns:
        kind = declared.field(name).type if name in declared.names else None
        if name == "wd14_tags" or kind is None:
            kind = pa.string() if name == "wd14_tags" else pa.Table.from_pandas(
                table[[name]], preserve_index=False).schema.field(name).type
            kind = pa.string() if pa.types.is_null(kind) or pa.types.is_large_string(kind) \
                else kind
        if kind not in SCALAR:
            raise ResultsError(f"column {name} of {run_dir} has type {kind}, which the "
                               "hf-parquet export cannot declare as a datasets Value")
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def write_hf_parquet(run_dir: Path, rows: pd.DataFrame, folder: Path, source: str,
                     shard_rows: int = SHARD_ROWS) -> None:
    drop = [c for c in (EMBEDDING, "image_path", "error", "worker") if c in rows.columns]
    table = rows.drop(columns=drop)
    if "wd14_tags" in table.columns:
        table["wd14_tags"] = [", ".join(t) if isinstance(t, (list, tuple, np.ndarray)) else None
                              for t in table["wd14_tags"]]
    table.insert(0, "caption", [", ".join(caption_parts(r, source)[0])
                                for r in rows.to_dict("records")])
    schema = shard_schema(run_dir, table)
    features = {"image": {"_type": "Image"}}
    features |= {f.name: {"dtype": SCALAR[f.type], "_type": "Value"} for f in schema}
    meta = {"huggingface": json.dumps({"info": {"features": features}})}
    (folder / "data").mkdir()
    n_shards = max(1, -(-len(rows) // shard_rows))
    for shard in range(n_shards):
        lo, hi = shard * shard_rows, min(len(rows), (shard + 1) * shard_rows)
        image = pa.array([{"bytes": image_bytes(run_dir, r), "path": Path(r["image_path"]).name}
                          for r in rows.iloc[lo:hi].to_dict("records")],
                         pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        part = pa.Table.from_pandas(table.iloc[lo:hi], schema=schema, preserve_index=False)
        part = part.add_column(0, "image", image).replace_schema_metadata(meta)
        pq.write_table(part, folder / "data" / f"train-{shard:05d}-of-{n_shards:05d}.parquet",
                       row_group_size=100)
