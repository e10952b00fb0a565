"""Small rules about setting values that the parsers, the axes table and the engine share."""

from __future__ import annotations

import re

SEED_LIMIT = 2**63
HIRES_SCALE = (1.0, 2.0)  # the demo app offers 1.0-1.5
UPSCALERS = ("nearest-exact", "bilinear", "bicubic")


def parse_size(value) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(value))
    if not m:
        raise ValueError(f"{value!r} is not a size; write WIDTHxHEIGHT, e.g. 832x1216")
    return int(m.group(1)), int(m.group(2))


def is_off(value) -> bool:
    """`none`/null levels switch an optional pass (hi-res, LoRA) off."""
    return value is None or str(value).strip().lower() in ("none", "null", "off", "")


def cfg_cutoff_off(value) -> bool:
    """`none`, null or 0: classifier-free guidance for every step."""
    return is_off(value) or (not isinstance(value, bool) and value == 0)


def hires_side(size: int, scale: float) -> int:
    """Side of a hi-res image: latents (size / 8) upscaled by `scale`, floored, times 8."""
    return int(size // 8 * scale) * 8
