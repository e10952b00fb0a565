"""Helpers shared by scorers: model sources, load errors, batching."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

from ..errors import ConfigError


def batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + size]


def load_error(name: str, what: str, err: Exception, hint: str) -> ConfigError:
    first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
    return ConfigError(f"scorer {name!r}: cannot load {what} ({first}). {hint}")


def local_or_hub(options: dict) -> tuple[str, str | None]:
    """(source, revision): a local folder (`path`) wins over a hub id (`id` + `revision`)."""
    path = options.get("path")
    if path:
        p = Path(path).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
        return str(p), None
    return str(options["id"]), options.get("revision")


def offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def require_cached(name: str, repo: str, filenames: tuple[str, ...], revision: str | None,
                   hint: str) -> None:
    """With the hub offline, one of `filenames` of `repo` must be in the local cache."""
    if not offline():
        return
    from huggingface_hub import try_to_load_from_cache

    for f in filenames:
        if isinstance(try_to_load_from_cache(repo, f, revision=revision or "main"), str):
            return
    raise ConfigError(f"scorer {name!r}: {repo!r} (revision {revision or 'main'}) is not in the "
                      f"local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1). {hint}")
