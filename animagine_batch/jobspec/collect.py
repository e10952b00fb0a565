"""Problem collection for validation: every problem is gathered with its key path, so one run
of a broken job shows all of them."""

from __future__ import annotations

import math
from dataclasses import fields


def fields_of(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


class Collector:
    """Gathers problems while parsing so one run reports all of them."""

    def __init__(self):
        self.problems: list[str] = []

    def add(self, key: str, msg: str):
        self.problems.append(f"{key}: {msg}")

    def section(self, raw, key: str, cls, defaults=None):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.add(key, f"must be a mapping of {', '.join(fields_of(cls))}")
            return defaults or cls()
        for k in sorted(set(raw) - set(fields_of(cls))):
            self.add(f"{key}.{k}", f"unknown key; allowed: {', '.join(fields_of(cls))}")
        kwargs = {k: v for k, v in raw.items() if k in fields_of(cls)}
        try:
            return cls(**{**(defaults.__dict__ if defaults else {}), **kwargs})
        except TypeError as e:
            self.add(key, str(e))
            return defaults or cls()


def check_int(c: Collector, key: str, value, low: int | None = None) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        c.add(key, f"{value!r} is not an integer")
        return None
    if low is not None and value < low:
        c.add(key, f"{value} must be >= {low}")
        return None
    return value


def number_in(value, low: float, high: float) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value) and low <= value <= high)
