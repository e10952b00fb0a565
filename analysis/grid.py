"""A1111-style labelled image grids from a run's saved PNGs, seeds matched.

Columns are the levels of `x`, rows the levels of `y` (the seeds when no `y` is given), one file
per level of `z`. Every other factor is held at one value (its first level, unless `where` pins
it), so the cells differ only in what the axes say. Images are read one at a time: memory is
bounded by one grid.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from .compare import BASE_FACTORS, DERIVED
from .load import ResultsError

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)


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
            with Image.open(Path(run_dir) / match["image_path"].iloc[0]) as im:
                thumb = fit(im.convert("RGB"), cell)
                ox = label_w + i * cell + (cell - thumb.width) // 2
                oy = title_h + head_h + j * cell + (cell - thumb.height) // 2
                grid.paste(thumb, (ox, oy))
    return grid


def make_grids(run_dir: Path | str, df: pd.DataFrame, axes: list[str], x: str,
               y: str | None = None, z: str | None = None, where: str | None = None,
               out_dir: Path | str | None = None, cell: int = 256) -> list[Path]:
    """Write one grid PNG per level of `z`; returns their paths."""
    run_dir = Path(run_dir)
    if y is None and x != "seed" and z != "seed":
        y = "seed"
    rows, fixed = select(df, axes, x, y, z, where)
    out_dir = Path(out_dir) if out_dir else run_dir / "grids"
    out_dir.mkdir(parents=True, exist_ok=True)
    held = ", ".join(f"{k}={v}" for k, v in fixed.items() if k != "prompt_key")
    subject = f"{fixed['prompt_key']}" if "prompt_key" in fixed else ""
    paths = []
    for zv in _levels(rows, z):
        sub = rows if z is None else rows[rows[z] == zv]
        title = " | ".join(t for t in (subject, f"{z}: {zv}" if z else "", held) if t)
        name = "grid_" + "_".join(a for a in (x, y) if a)
        if z:
            name += f"_{z}-{str(zv).replace('/', '-').replace(' ', '_')}"
        path = out_dir / f"{name}.png"
        image = render(run_dir, sub, x, y, title, cell)
        tmp = path.with_name(f".tmp-{path.name}")
        image.save(tmp, format="PNG")
        tmp.replace(path)
        image.close()
        paths.append(path)
    return paths
