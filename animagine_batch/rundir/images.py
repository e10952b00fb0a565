"""Reading a run's images by the paths its results table gives, safely.

A results table is shared data, so its `image_path` is not trusted: it must resolve (symlinks
followed) to a regular file inside the run directory, and the bytes must match `image_sha256`
when the row has one. Every reader (export, grid, report, score, `run --verify`) goes through
here, and a row that fails is left out with a message naming the file, never a traceback.
"""

from __future__ import annotations

import hashlib
import io
import stat
from pathlib import Path

from PIL import Image

from .storage import is_remote, location


class ImageProblem(Exception):
    """An image a results row points at that cannot be used; the text says why."""


def image_file(run_dir: Path | str, image_path) -> Path:
    """The file `image_path` names, resolved inside the run directory."""
    if not isinstance(image_path, str) or not image_path:
        raise ImageProblem("the row has no image_path")
    if is_remote(location(run_dir)):
        return _remote_file(location(run_dir), image_path)
    root = Path(run_dir).resolve()
    path = (root / image_path).resolve()
    if not path.is_relative_to(root):
        raise ImageProblem(f"image_path {image_path!r} points outside the run directory {root}")
    try:
        mode = path.stat().st_mode
    except OSError:
        raise ImageProblem(f"{image_path} is missing from {root}") from None
    if not stat.S_ISREG(mode):
        raise ImageProblem(f"{image_path} is not a regular file")
    return path


def _remote_file(root, image_path: str):
    """On object storage: a relative key without `..` (there are no links). Whether the object
    exists is found by reading it, one request instead of two."""
    parts = image_path.replace("\\", "/").split("/")
    if image_path.startswith("/") or ".." in parts or "://" in image_path:
        raise ImageProblem(f"image_path {image_path!r} points outside the run directory {root}")
    return root / image_path


def read_image(run_dir: Path | str, image_path, sha256: str | None = None) -> bytes:
    """The image's bytes, checked against `sha256` when given."""
    path = image_file(run_dir, image_path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageProblem(f"{image_path} is missing from {location(run_dir)}") from None
    except OSError as e:
        raise ImageProblem(f"{image_path} cannot be read ({e.strerror or e})") from None
    if isinstance(sha256, str) and sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise ImageProblem(f"{image_path} does not match its image_sha256 (truncated or changed "
                           "since it was written)")
    return data


def open_image(run_dir: Path | str, image_path, sha256: str | None = None) -> Image.Image:
    """The image decoded to RGB (fully loaded), checked against `sha256` when given."""
    data = read_image(run_dir, image_path, sha256)
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for truncated or bad files
        raise ImageProblem(f"{image_path} cannot be decoded ({e})") from None


def check_image(run_dir: Path | str, image_path, sha256: str | None) -> str | None:
    """Why the image is unusable, or None when it is intact."""
    try:
        read_image(run_dir, image_path, sha256)
    except ImageProblem as e:
        return str(e)
    return None


def listed(problems: list[str], limit: int = 3) -> str:
    """`a; b; c and 4 more`: a few problems for a one-paragraph message."""
    head = "; ".join(problems[:limit])
    return head + (f" and {len(problems) - limit} more" if len(problems) > limit else "")
