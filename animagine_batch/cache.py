"""The cache folder of built and recorded files (embedded models, stand-in scorers, tokenizer
files, the tiny LoRA, file hashes, scorer reference records), and building into it safely."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """`$ANIMAGINE_BATCH_CACHE`, else `$XDG_CACHE_HOME/animagine-batch` (`~/.cache/...`)."""
    env = os.environ.get("ANIMAGINE_BATCH_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "animagine-batch"


def build_once(target: Path, build) -> Path:
    """Build a cache folder once: `build(tmp)` fills a temporary sibling, which is then renamed
    into place, so readers only ever see a complete folder (safe against concurrent builders)."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
