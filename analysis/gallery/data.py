"""The gallery's data files: `data.js` (what filtering and sorting need, column-wise and
dictionary-coded) and `detail/NNNNN.js` (prompts, negatives and infotexts, 1,000 rows a file,
loaded when an image is opened). Both are scripts rather than JSON so that the page works when
opened from disk, where a browser refuses to fetch files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..compare import BASE_FACTORS, axis_levels
from .thumbs import thumb_name

DETAIL_ROWS = 1000
OUTCOMES = ["status", "aesthetic_tag", "wd14_rating"]  # filters, but not factors of the design
DESCRIPTIVE = ["model_name", "subject", "character", "series"]
MAX_LEVELS = 100_000


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _levels(df: pd.DataFrame, col: str, run_dir: Path, axes: list[str]) -> tuple[list, np.ndarray]:
    values = df[col]
    present = list(pd.unique(values.dropna()))
    if col in axes:
        order = [v for v in axis_levels(run_dir, col) if v in present]
        present = order + [v for v in present if v not in order]
    elif pd.api.types.is_numeric_dtype(values):
        present = sorted(present)
    else:
        present = sorted(present, key=str)
    code = {v: i for i, v in enumerate(present)}
    codes = values.map(code)
    if values.isna().any():
        present.append(None)
        codes = codes.fillna(len(present) - 1)
    return [("(none)" if v is None else _label(v)) for v in present], codes.to_numpy(int)


def _label(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return f"{v:.1f}"
    return str(v)


def _round(values: pd.Series) -> list:
    v = pd.to_numeric(values.astype("float64") if values.dtype == bool else values,
                      errors="coerce").to_numpy(float)
    return [None if not np.isfinite(x) else float(f"{x:.7g}") for x in v]  # float32 precision


def _tag_lists(lists) -> dict:
    """Flat code lists with offsets: {"vocab": [...], "offsets": [...], "codes": [...]}."""
    counts: dict[str, int] = {}
    for tags in lists:
        for t in tags:
            counts[t] = counts.get(t, 0) + 1
    vocab = sorted(counts, key=lambda t: (-counts[t], t))
    index = {t: i for i, t in enumerate(vocab)}
    offsets, codes = [0], []
    for tags in lists:
        codes += [index[t] for t in dict.fromkeys(tags)]
        offsets.append(len(codes))
    return {"vocab": vocab, "offsets": offsets, "codes": codes}


def gallery_data(run_dir: Path, df: pd.DataFrame, axes: list[str], dirs: dict[str, bool],
                 thumbs: set[str], images_prefix: str) -> dict:
    """The `data.js` object for the table `df` (one row per task)."""
    factors = {}
    design = [c for c in dict.fromkeys([*axes, *BASE_FACTORS]) if c in df.columns]
    for col in design + [c for c in OUTCOMES + DESCRIPTIVE if c in df.columns]:
        if col not in design and (df[col].isna().all() or df[col].nunique() > MAX_LEVELS):
            continue
        labels, codes = _levels(df, col, run_dir, axes)
        factors[col] = {"levels": labels, "codes": codes.tolist(), "design": col in design,
                        "axis": col in axes}
    scores = {c: {"values": _round(df[c]), "higher_is_better": bool(hib)}
              for c, hib in dirs.items() if c in df.columns and c != "gen_seconds"
              and pd.api.types.is_numeric_dtype(df[c].astype("float64") if df[c].dtype == bool
                                                 else df[c])}
    if "gen_seconds" in df.columns:
        scores["gen_seconds"] = {"values": _round(df["gen_seconds"]), "higher_is_better": False}
    prompt_tags = [[t.strip() for t in str(p).split(",") if t.strip()] if isinstance(p, str)
                   else [] for p in df.get("content_prompt", pd.Series([None] * len(df)))]
    found = df["wd14_tags"] if "wd14_tags" in df.columns else pd.Series([None] * len(df))
    found_tags = [[] if t is None or (isinstance(t, float) and np.isnan(t)) else list(t)
                  for t in found]
    sha = df["image_sha256"].where(df["status"] == "ok") if "image_sha256" in df.columns \
        else pd.Series([None] * len(df))
    thumb = [thumb_name(s) if isinstance(s, str) and thumb_name(s) in thumbs else None
             for s in sha]
    return {"version": 1, "run": str(df["job"].iloc[0]) if "job" in df.columns else run_dir.name,
            "n": len(df), "ids": df["task_id"].tolist(), "images": images_prefix,
            "thumb": thumb, "factors": factors, "axes": [a for a in axes if a in factors],
            "scores": scores, "prompt_tags": _tag_lists(prompt_tags),
            "found_tags": _tag_lists(found_tags), "detail_rows": DETAIL_ROWS}


def detail_records(df: pd.DataFrame, infotext: dict) -> list[dict]:
    keep = [c for c in ("prompt", "negative_prompt", "content_prompt", "image_path", "error",
                        "loras") if c in df.columns]
    records = df[keep].astype(object).where(df[keep].notna(), None).to_dict("records")
    for r in records:
        r["infotext"] = infotext.get(r.get("image_path"))
    return records


def write_data(out: Path, data: dict, details: list[dict]) -> None:
    folder = out / "detail"
    folder.mkdir(parents=True, exist_ok=True)
    for chunk, lo in enumerate(range(0, len(details), DETAIL_ROWS)):
        body = json.dumps(details[lo:lo + DETAIL_ROWS], ensure_ascii=False,
                          separators=(",", ":"))
        write_atomic(folder / f"{chunk:05d}.js", f"galleryDetail({chunk},{body});\n")
    write_atomic(out / "data.js", "window.GALLERY=" + json.dumps(
        data, ensure_ascii=False, separators=(",", ":")) + ";\n")
