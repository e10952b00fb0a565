"""Finishing a generated unit: status per image (`nan` for non-finite or blank output), PNG
bytes with the infotext and demo-app metadata, the scores (the shared scoring loop), and the
time per image. It reads no pipeline state, so the overlapped runner finishes one unit on
another thread while the next generates."""

from __future__ import annotations

import hashlib
import time

import numpy as np

from .. import __version__
from ..jobspec import samplers
from ..rundir import metadata
from ..rundir.layout import image_path
from ..scorers.apply import score
from . import sources
from .loras import short_hash
from .pixels import Pixels


class Finisher:
    """PNGs and scores of one model's images."""

    def __init__(self, model, png_compress_level: int = 1, scorers: tuple = ()):
        self.png_compress_level = png_compress_level
        self.scorers = scorers
        self.model_hash = sources.model_hash(model)
        self.model_name = sources.display_name(model)
        self.model_title = sources.title(model)

    def finish(self, tasks, rows: list[dict], images: Pixels | None,
               start: float) -> tuple[list, float]:
        """Fill the rows of generated images (None: generation failed, the rows say why);
        returns the PNG bytes aligned with the rows (None where no image was made) and the
        unit's seconds since `start`."""
        pngs: list[bytes | None] = [None] * len(rows)
        if images is not None:
            pixels, finite = images.values, images.finite  # waits for the host copy
            ok = [i for i, (row, t) in enumerate(zip(rows, tasks))
                  if self._encode(i, row, t, finite[i], pixels[i], pngs)]
            try:
                score(self.scorers, [_image(pixels[i]) for i in ok], [rows[i] for i in ok])
            except Exception as e:  # noqa: BLE001 - a scorer failing on one unit must not stop the job
                for i in ok:
                    rows[i].update(status="error",
                                   error=f"scoring failed: {type(e).__name__}: {e}"[:2000],
                                   image_path=None, image_sha256=None)
                    pngs[i] = None
        seconds = time.perf_counter() - start
        for row in rows:
            row["gen_seconds"] = seconds / len(rows)
        return pngs, seconds

    def _encode(self, i: int, row: dict, task, finite: bool, pixels: np.ndarray,
                pngs: list) -> bool:
        if not finite:
            row.update(status="nan", error="non-finite values in the decoded image")
            return False
        if pixels.min() == pixels.max():
            row.update(status="nan", error="blank image (every pixel the same)")
            return False
        sampler_name = samplers.get(task.sampler).name
        params = metadata.infotext_params(task, self.model_name, self.model_hash, sampler_name,
                                          __version__, {p: short_hash(p) for p, _ in task.loras})
        text = metadata.infotext(metadata.infotext_prompt(task), task.negative_prompt, params)
        png = metadata.encode_png(
            pixels, text, metadata.demo_metadata(task, self.model_title, sampler_name,
                                                 self.model_hash), self.png_compress_level)
        pngs[i] = png
        row.update(status="ok", error=None, image_path=image_path(task.task_id),
                   image_sha256=hashlib.sha256(png).hexdigest())
        return True


def _image(pixels: np.ndarray):
    from PIL import Image

    return Image.fromarray(pixels, "RGB")
