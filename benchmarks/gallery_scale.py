"""Gallery at scale: a synthetic run of 100,000 rows, its gallery built and opened in headless
Chromium (Debian's chromium + chromium-driver through Selenium).

1. build: `build_gallery` over the run (rows share a pool of 64 px PNGs, so thumbnails are made
   for the pool only; data.js and the detail files cover every row): seconds and sizes;
2. thumbnails of distinct full-size images (832x1216), in parallel: images per second;
3. the page: time from navigation to the first rendered grid, then filtering by a level, by a
   score range and sorting by a score, as the page measures them, and the cells in the DOM.

    python benchmarks/gallery_scale.py [--quick]     # --quick: 10,000 rows, under a minute

Prints one line per figure and, last, one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def bench_build(root: Path, rows: int, pool: int) -> dict:
    from analysis import simulate
    from analysis.gallery import build_gallery

    start = time.perf_counter()
    run = simulate.write_image_run(root / "big", rows // 20, 4, [0.0, 0.05, 0.0, -0.05, 0.0],
                                   distinct_images=pool)
    made = time.perf_counter() - start
    start = time.perf_counter()
    index, counts = build_gallery(run, progress=False)
    seconds = time.perf_counter() - start
    detail = sum(p.stat().st_size for p in (index.parent / "detail").glob("*.js"))
    return {"rows": counts["images"], "thumbnails": counts["thumbnails"],
            "write_run_s": round(made, 2), "build_s": round(seconds, 2),
            "data_js_mib": round((index.parent / "data.js").stat().st_size / 2**20, 2),
            "detail_mib": round(detail / 2**20, 2), "index": str(index)}


def bench_thumbnails(root: Path, images: int) -> dict:
    import numpy as np
    from PIL import Image

    from analysis.gallery.thumbs import make_thumbnails

    folder = root / "full" / "images"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1216 // 8, 832 // 8, 3), dtype=np.uint8)
    rows = []
    for i in range(images):
        img = Image.fromarray(np.roll(base, i, axis=1)).resize((832, 1216), Image.BILINEAR)
        img.save(folder / f"{i}.png", compress_level=1)
        rows.append((f"images/{i}.png", hashlib.sha256(str(i).encode()).hexdigest()))
    start = time.perf_counter()
    out = make_thumbnails(root / "full", rows, root / "full" / "thumbs", progress=False)
    seconds = time.perf_counter() - start
    return {"images": images, "size": "832x1216", "workers": os.cpu_count(),
            "seconds": round(seconds, 2), "images_per_s": round(images / seconds, 1),
            "made": out["made"]}


def bench_page(index: str, budget: float = 60.0) -> dict:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium.webdriver.common.by import By
    except ImportError:
        return {"skipped": "selenium is not installed"}
    if not (chromium and driver_path):
        return {"skipped": "no chromium and chromedriver"}
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import chromium_driver

    driver = chromium_driver(Path(tempfile.mkdtemp(prefix="gallery-bench-")))
    data = lambda key: driver.execute_script(f"return document.body.dataset.{key}")  # noqa: E731

    def until(cond):
        end = time.time() + budget
        while time.time() < end:
            if cond():
                return
            time.sleep(0.02)
        raise TimeoutError("the page did not answer in time")

    try:
        start = time.perf_counter()
        driver.get(Path(index).as_uri())
        until(lambda: data("ready") == "1")
        opened = time.perf_counter() - start
        out = {"open_s": round(opened, 2), "page_load_ms": int(data("loadMs")),
               "first_filter_ms": float(data("filterMs")),
               "cells_in_dom": len(driver.find_elements(By.CSS_SELECTOR, "#grid .cell"))}
        driver.find_element(By.CSS_SELECTOR, '[data-factor="strategy"] input[value="0"]').click()
        out["filter_level_ms"] = float(data("filterMs"))
        out["shown_after_level"] = int(data("shown"))
        box = driver.find_element(By.CSS_SELECTOR, '[data-score="aesthetic_score"] [data-bound="min"]')
        box.send_keys("0.5")
        out["filter_score_ms"] = float(data("filterMs"))
        out["shown_after_score"] = int(data("shown"))
        driver.find_element(By.CSS_SELECTOR, '#sort option[value="aesthetic_score"]').click()
        out["sort_ms"] = float(data("filterMs"))
        driver.execute_script("document.getElementById('grid').scrollTop = 1e6")
        time.sleep(0.3)
        out["cells_in_dom_after_scroll"] = len(driver.find_elements(By.CSS_SELECTOR, "#grid .cell"))
        out["errors"] = int(data("errors") or 0)
        return out
    finally:
        driver.quit()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10,000 rows and 40 full-size images")
    args = ap.parse_args()
    rows, full = (10_000, 40) if args.quick else (100_000, 400)
    result = {"benchmark": "gallery_scale", "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="gallery-scale-") as tmp:
        root = Path(tmp)
        result["build"] = bench_build(root, rows, pool=500)
        print(f"build: {result['build']}", flush=True)
        result["thumbnails"] = bench_thumbnails(root, full)
        print(f"thumbnails: {result['thumbnails']}", flush=True)
        result["page"] = bench_page(result["build"].pop("index"))
        print(f"page: {result['page']}", flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
