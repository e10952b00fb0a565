"""WebP thumbnails of a run's images, made once, in parallel, and resumable.

A thumbnail is named after its image's sha256 (`thumbs/<24 hex>.webp`), so an existing one is
never made again and identical images share one. Each is written to a temporary name and
renamed into place, so a kill at any moment leaves only whole thumbnails (and temporary files,
removed by the next build). Each worker also reads the image's A1111 infotext (`parameters`).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image
from tqdm import tqdm

QUALITY = 80
NAME_HEX = 24


def thumb_name(sha256: str) -> str:
    return f"{sha256[:NAME_HEX]}.webp"


def _one(job: tuple[str, str, int]) -> tuple[str | None, bool, str | None]:
    """(infotext, whether a thumbnail was made, error) for one image."""
    src, dst, size = job
    try:
        with Image.open(src) as im:
            text = im.info.get("parameters")
            if os.path.exists(dst):
                return text, False, None
            im = im.convert("RGB")
            im.thumbnail((size, size), Image.LANCZOS)
            tmp = f"{dst}.tmp-{os.getpid()}"
            im.save(tmp, format="WEBP", quality=QUALITY, method=4)
            os.replace(tmp, dst)
            return text, True, None
    except (OSError, ValueError) as e:
        return None, False, f"{src}: {e}"


def make_thumbnails(run_dir: Path, rows: list[tuple[str, str]], folder: Path, size: int = 256,
                    workers: int | None = None, progress: bool = True) -> dict:
    """Thumbnails for (image_path, sha256) rows. Returns {"infotext": {image_path: text},
    "made": n, "kept": n, "errors": [...]}."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.tmp-*"):  # left by a build that was killed mid-write
        stale.unlink(missing_ok=True)
    jobs = [(str(run_dir / rel), str(folder / thumb_name(sha)), size) for rel, sha in rows]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) // 64 + 1))
    bar = tqdm(total=len(jobs), desc="thumbnails", unit="img", disable=not progress,
               mininterval=0.5)
    out = {"infotext": {}, "made": 0, "kept": 0, "errors": []}

    def collect(rel, result):
        text, made, error = result
        out["infotext"][rel] = text
        out["made" if made else "kept"] += error is None
        if error:
            out["errors"].append(error)
        bar.update()

    try:
        if workers == 1:
            for (rel, _), job in zip(rows, jobs):
                collect(rel, _one(job))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for (rel, _), result in zip(rows, pool.map(_one, jobs, chunksize=32)):
                    collect(rel, result)
    finally:
        bar.close()
    return out
