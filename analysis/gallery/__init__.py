"""A browsable gallery of a run: a static site that opens from disk (`animagine-batch gallery`).

`<out>/index.html` with `gallery.js` and `gallery.css`, `data.js` and `detail/*.js` (the table,
analysis.gallery.data) and `thumbs/*.webp` (analysis.gallery.thumbs). The page filters by any
axis level, status, tag and score range, sorts by any score, shows an X/Y view with seeds
matched, a detail view, and keeps selections (keep / reject / starred) that it downloads as
`selection.json` or, when served (`gallery --serve`), saves to `<run>/selection.json`.

The gallery of a run on object storage is built in a local `--out` folder that also holds a
copy of the run's images (`<out>/images/`, fetched once and checked against their hashes), so it
opens from disk like any other.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from animagine_batch.rundir import ResultsError, load_run
from animagine_batch.rundir.images import ImageProblem, read_image
from animagine_batch.rundir.storage import is_remote, location

from ..compare import directions, job_axes
from .data import detail_records, gallery_data, write_atomic, write_data
from .thumbs import make_thumbnails, thumb_name

STATIC = Path(__file__).parent / "static"
PAGE_FILES = ("gallery.js", "gallery.css")


def build_gallery(run_dir: Path | str, out: Path | str | None = None, thumb_size: int = 256,
                  workers: int | None = None, progress: bool = True) -> tuple[Path, dict]:
    """Write the gallery; returns its index.html and the thumbnail counts."""
    run_dir = location(run_dir)
    if is_remote(run_dir) and not out:
        raise ResultsError(f"gallery {run_dir}: a run on object storage needs --out, a local "
                           "folder for the gallery and a copy of the run's images")
    out = Path(out) if out else run_dir / "gallery"
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out} is a file; give a folder for the gallery")
    if not 16 <= thumb_size <= 1024:
        raise ResultsError(f"--thumb-size {thumb_size}: allowed: 16 to 1024 pixels")
    df = load_run(run_dir)
    if df.empty:
        raise ResultsError(f"{run_dir} has no result rows: run its job first")
    ok = df[(df["status"] == "ok") & df["image_path"].notna() & df["image_sha256"].notna()]
    rows = list(zip(ok["image_path"], ok["image_sha256"]))
    out.mkdir(parents=True, exist_ok=True)
    images = local_copies(run_dir, rows, out) if is_remote(run_dir) else run_dir
    made = make_thumbnails(images, rows, out / "thumbs", thumb_size, workers, progress)
    thumbs = {p.name for p in (out / "thumbs").glob("*.webp")}
    prefix = os.path.relpath(images.resolve(), out.resolve()).replace(os.sep, "/") + "/"
    data = gallery_data(run_dir, df, job_axes(run_dir), directions(run_dir), thumbs,
                        "" if prefix == "./" else prefix)
    write_data(out, data, detail_records(df, made["infotext"]))
    for name in PAGE_FILES:
        shutil.copyfile(STATIC / name, out / f".{name}.tmp")
        os.replace(out / f".{name}.tmp", out / name)
    page = (STATIC / "gallery.html").read_text(encoding="utf-8")
    write_atomic(out / "index.html", page.replace("{{run}}", _html(data["run"])))
    counts = {"images": len(df), "thumbnails": len({thumb_name(s) for _, s in rows}),
              "made": made["made"], "kept": made["kept"], "errors": made["errors"]}
    return out / "index.html", counts


def local_copies(run_dir, rows: list[tuple[str, str]], out: Path) -> Path:
    """Copy the images of a run on object storage to `out` (same relative paths), each once:
    a copy whose bytes match its hash is kept. An image that cannot be fetched is left out
    (the thumbnails name it). Returns the folder the copies are relative to."""
    import hashlib

    for rel, sha in rows:
        try:
            target = out / rel
            if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == sha:
                continue
            data = read_image(run_dir, rel, sha)
        except ImageProblem:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return out


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
