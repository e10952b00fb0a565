"""Scorer registry: names -> scorer classes, imported only when a job asks for them.

A scorer module defines a class with `name`, `version`, `higher_is_better`, `columns`, an
`__init__` that loads its weights once and `__call__(images, rows) -> dict of column arrays`.
"""

from __future__ import annotations

import importlib

# name -> "module:Class" inside animagine_batch.scorers
SCORERS: dict[str, str] = {}


def names() -> list[str]:
    return sorted(SCORERS)


def get(name: str):
    if name not in SCORERS:
        raise KeyError(f"unknown scorer {name!r}; allowed: {', '.join(names()) or '(none)'}")
    module, cls = SCORERS[name].split(":")
    return getattr(importlib.import_module(f"animagine_batch.scorers.{module}"), cls)
