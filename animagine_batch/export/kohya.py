"""kohya sd-scripts layouts of a dataset export, written so that sd-scripts trains on them as they
are (SPEC.md section 9 records how it reads them).

- `finetune`: `<stem>.png` + `<stem>.txt` in one folder and `metadata.json` keyed by the image's
  file name (sd-scripts joins the key to `image_dir`), each entry holding the whole caption (no
  `tags`: sd-scripts appends them to the caption, so a tag in both would be trained twice) and
  the saved image's size (`train_resolution` for v0.9.1, `image_size` for later releases).
- `dreambooth`: the same pairs in a `1_<name>/` subfolder (`N_name`: N repeats), the form
  sd-scripts' folder mode looks for.

Both get a `dataset_config.toml` for `--dataset_config`: caption extension (folder mode),
shuffled captions whose first `keep_tokens` tags (subject, character, series) stay in place, and
bucketing that keeps every image at its saved size.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import tomli_w
from PIL import Image

from ..rundir.storage import location
from .base import ExportJob
from .select import image_bytes

LAYOUTS = ("finetune", "dreambooth")
CAPTION_EXTENSION = ".txt"
MIN_BUCKET = 256  # sd-scripts' default min_bucket_reso


def subset_folder(name: str) -> str:
    """`1_<name>`: one repeat per epoch; sd-scripts reads the name as the class token, used only
    for an image without a caption file (every exported image has one)."""
    return "1_" + (re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "images")


def metadata_entry(caption: str, size: tuple[int, int]) -> dict:
    return {"caption": caption, "train_resolution": list(size), "image_size": list(size)}


def bucketing(sizes: list[tuple[int, int]]) -> dict:
    """Bucket settings under which no image is scaled or cropped: `bucket_no_upscale` with a
    `resolution` whose area holds the largest image keeps each at its saved size, and a bucket
    step that divides every side (64, else 32: the SDXL scripts' smallest) leaves nothing to crop.
    `min_bucket_reso` <= `resolution` <= `max_bucket_reso`, all multiples of the step, as
    sd-scripts asserts."""
    steps = 64 if all(w % 64 == 0 and h % 64 == 0 for w, h in sizes) else 32
    up = lambda v: max(steps, math.ceil(v / steps) * steps)  # noqa: E731
    resolution = up(max(math.sqrt(w * h) for w, h in sizes))
    smallest = min(min(w, h) for w, h in sizes) // steps * steps
    return {"resolution": resolution, "enable_bucket": True, "bucket_no_upscale": True,
            "bucket_reso_steps": steps,
            "min_bucket_reso": max(steps, min(MIN_BUCKET, smallest, resolution)),
            "max_bucket_reso": max(resolution, up(max(max(w, h) for w, h in sizes)))}


def dataset_config(layout: str, folder: Path, image_dir: str, sizes: list[tuple[int, int]],
                   keep_tokens: int) -> str:
    """The `dataset_config.toml` of an export that will live at `folder`, its images in
    `folder/image_dir`. Paths are absolute: sd-scripts resolves relative ones against its
    working directory."""
    folder = Path(folder).resolve()
    general = {"shuffle_caption": True, "keep_tokens": keep_tokens}
    if layout == "dreambooth":
        subset = {"image_dir": str(folder / image_dir), "num_repeats": 1}
        general["caption_extension"] = CAPTION_EXTENSION
        how = "DreamBooth (folder) layout: each caption in the .txt file next to its image"
    else:
        subset = {"image_dir": str(folder), "metadata_file": str(folder / "metadata.json")}
        how = "fine-tune layout: the captions in metadata.json"
    config = {"general": general, "datasets": [{**bucketing(sizes), "subsets": [subset]}]}
    header = ("# sd-scripts --dataset_config of an animagine-batch export.\n"
              f"# {how}; keep_tokens holds the subject, character and series tags in place.\n\n")
    return header + tomli_w.dumps(config)


def write(job: ExportJob) -> None:
    """The pairs, `metadata.json` (fine-tune layout) and `dataset_config.toml` (its paths are
    where the folder will be: `job.final`)."""
    layout = job.kohya_layout
    sub = subset_folder(location(job.run_dir).resolve().name) if layout == "dreambooth" else ""
    images = job.folder / sub
    images.mkdir(exist_ok=True)
    meta, sizes, keep = {}, [], 0
    for row in job.rows.to_dict("records"):
        name = f"{row['task_id']}.png"
        caption, lead = job.caption(row)
        (images / name).write_bytes(image_bytes(job.run_dir, row))
        with Image.open(images / name) as im:
            size = im.size  # what was saved: a hi-res image is larger than width x height
        (images / f"{row['task_id']}{CAPTION_EXTENSION}").write_text(
            ", ".join(caption) + "\n", encoding="utf-8")
        meta[name] = metadata_entry(", ".join(caption), size)
        sizes.append(size)
        keep = max(keep, lead)
    if layout == "finetune":
        (job.folder / "metadata.json").write_text(
            json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if sizes:
        (job.folder / "dataset_config.toml").write_text(
            dataset_config(layout, job.final, sub, sizes, keep), encoding="utf-8")
