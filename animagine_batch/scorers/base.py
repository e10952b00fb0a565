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
