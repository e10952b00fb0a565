"""A1111-style labelled image grids from a run's saved PNGs, seeds matched.

Columns are the levels of `x`, rows the levels of `y` (the seeds when no `y` is given), one file
per level of `z`. Every other factor is held at one value (its first level, unless `where` pins
it), so the cells differ only in what the axes say. Images are read one at a time: memory is
bounded by one grid. An image that is missing, damaged or outside the run leaves its cell empty
with a warning naming it.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from animagine_batch.rundir import ResultsError, warn
from animagine_batch.rundir.images import ImageProblem, open_image
from animagine_batch.rundir.storage import is_remote, location, upload_tree

from .compare import BASE_FACTORS, DERIVED

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
NAME_LIMIT = 120  # characters of a grid's file name (file systems allow 255 bytes)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def select(df: pd.DataFrame, axes: list[str], x: str, y: str | None, z: str | None,
           where: str | None) -> tuple[pd.DataFrame, dict]:
    """The rows of the grid(s) and the values at which the other factors are held."""
    rows = df[df["status"] == "ok"]
    if where:
        try:
            rows = rows.query(where, engine="python")
        except Exception as e:  # noqa: BLE001 - pandas raises many types for a bad expression
            raise ResultsError(f"--where {where!r}: {e}") from None
    for name, flag in ((x, "--x"), (y, "--y"), (z, "--z")):
        if name and name not in rows.columns:
            raise ResultsError(f"{flag} {name}: no such column; axes: {', '.join(axes)}")
    if rows.empty:
        raise ResultsError("no ok images match" + (f" --where {where!r}" if where else ""))
    shown = {a for a in (x, y, z) if a}
    shown |= {d for a in list(shown) for d in DERIVED.get(a, [])}
    fixed = {}
    for factor in dict.fromkeys([*BASE_FACTORS, *axes]):
        if factor in shown or factor not in rows.columns or rows[factor].nunique() <= 1:
            continue
        first = rows[factor].iloc[0]
        fixed[factor] = first
        rows = rows[rows[factor] == first]
    return rows, fixed


def _levels(rows: pd.DataFrame, col: str | None) -> list:
    return list(pd.unique(rows[col])) if col else [None]


def fit(image: Image.Image, cell: int) -> Image.Image:
    """Scale to fill a cell: smooth when shrinking, nearest when enlarging small images."""
    scale = cell / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.LANCZOS if scale < 1 else Image.NEAREST)


def render(run_dir: Path, rows: pd.DataFrame, x: str, y: str | None, title: str,
           cell: int = 256) -> Image.Image:
    xs, ys = _levels(rows, x), _levels(rows, y)
    font = _font(max(12, cell // 14))
    label_w = cell // 2 if y else 0
    head_h = max(28, cell // 8)
    title_h = max(24, cell // 10)
    grid = Image.new("RGB", (label_w + cell * len(xs), title_h + head_h + cell * len(ys)),
                     BACKGROUND)
    draw = ImageDraw.Draw(grid)
    draw.text((6, 4), title, fill=INK, font=font)
    for i, xv in enumerate(xs):
        draw.text((label_w + i * cell + 6, title_h + 4), f"{x}: {xv}", fill=INK, font=font)
    for j, yv in enumerate(ys):
        if y:
            draw.text((4, title_h + head_h + j * cell + cell // 2), f"{y}: {yv}", fill=INK,
                      font=font)
        for i, xv in enumerate(xs):
            match = rows[(rows[x] == xv) & ((rows[y] == yv) if y else True)]
            if match.empty:
                continue
            first = match.iloc[0]
            try:
                image = open_image(run_dir, first["image_path"], first.get("image_sha256"))
            except ImageProblem as e:
                warn(f"grid: cell {x}={xv}" + (f", {y}={yv}" if y else "") + f" left empty: {e}")
                continue
            thumb = fit(image, cell)
            ox = label_w + i * cell + (cell - thumb.width) // 2
            oy = title_h + head_h + j * cell + (cell - thumb.height) // 2
            grid.paste(thumb, (ox, oy))
    return grid


def file_name(*parts: str, hashed: bool = False) -> str:
    """A safe file name from axis names and levels: characters other than letters, digits and
    `.=+-` become `_`; a long name (or, with `hashed`, any) is cut and ends in a hash of the
    whole, which tells apart levels that read the same once made safe."""
    name = "_".join(p for p in parts if p)
    safe = re.sub(r"[^\w.=+-]+", "_", name).strip("._") or "grid"
    if hashed or len(safe) > NAME_LIMIT:
        safe = safe[:NAME_LIMIT - 17] + "-" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return safe + ".png"


def make_grids(run_dir: Path | str, df: pd.DataFrame, axes: list[str], x: str,
               y: str | None = None, z: str | None = None, where: str | None = None,
               out_dir: Path | str | None = None, cell: int = 256) -> list[Path]:
    """Write one grid PNG per level of `z`; returns their paths. A run on object storage gets
    its `grids/` there (drawn here, then uploaded) unless `out_dir` is given."""
    run_dir = location(run_dir)
    if isinstance(cell, bool) or not isinstance(cell, int) or cell < 1:
        raise ResultsError(f"--cell {cell!r}: a cell is a positive whole number of pixels")
    if not out_dir and is_remote(run_dir):
        with tempfile.TemporaryDirectory(prefix="grids-") as tmp:
            paths = make_grids(run_dir, df, axes, x, y, z, where, tmp, cell)
            try:
                upload_tree(Path(tmp), run_dir / "grids")
            except OSError as e:
                raise ResultsError(f"cannot write {run_dir / 'grids'} ({e})") from None
        return [run_dir / "grids" / p.name for p in paths]
    if y is None and x != "seed" and z != "seed":
        y = "seed"
    rows, fixed = select(df, axes, x, y, z, where)
    out_dir = Path(out_dir) if out_dir else run_dir / "grids"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ResultsError(f"--out {out_dir}: cannot create the folder ({e.strerror})") from None
    held = ", ".join(f"{k}={v}" for k, v in fixed.items() if k != "prompt_key")
    subject = f"{fixed['prompt_key']}" if "prompt_key" in fixed else ""
    paths = []
    for zv in _levels(rows, z):
        sub = rows if z is None else rows[rows[z] == zv]
        title = " | ".join(t for t in (subject, f"{z}: {zv}" if z else "", held) if t)
        name = "grid_" + "_".join(a for a in (x, y) if a)
        path = out_dir / file_name(name, f"{z}-{zv}" if z else "")
        if path in paths:
            path = out_dir / file_name(name, f"{z}-{zv}", hashed=True)
        image = render(run_dir, sub, x, y, title, cell)
        tmp = path.with_name(f".tmp-{path.name}")
        try:
            image.save(tmp, format="PNG")
            tmp.replace(path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise ResultsError(f"--out {out_dir}: cannot write {path.name} ({e.strerror or e})"
                               ) from None
        image.close()
        paths.append(path)
    return paths
