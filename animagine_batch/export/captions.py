"""Captions of exported images, in Animagine's order: subject, character, series, general tags,
then rating, quality, aesthetic tag (the bucket of the MEASURED aesthetic score) and year, each
tag once. Where the general tags come from is a caption source (`SOURCES`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..jobspec import tags as T


def _from_prompt(row: dict) -> list[str]:
    return T.split_tags(T.field_text(row.get("content_prompt")) or "")


def _from_wd14(row: dict) -> list[str]:
    found = row.get("wd14_tags")
    found = list(found) if isinstance(found, (list, tuple, np.ndarray)) else []
    return [T.strip_emphasis(T.normalise_tag(t)) for t in found]


@dataclass(frozen=True)
class CaptionSource:
    name: str
    general: Callable[[dict], list[str]]  # a row's general tags
    column: str | None = None  # the results column it reads, which the run must have


# The caption-source registry (`--caption-source`).
SOURCES = {s.name: s for s in (
    CaptionSource("prompt", _from_prompt),  # the prompt's own general tags
    CaptionSource("wd14", _from_wd14, "wd14_tags"),  # the WD tagger's tags of the image
)}


def _tokens(tags: list[str]) -> list[str]:
    """Tags as sd-scripts reads a caption: split at every comma and stripped, each kept once."""
    return list(dict.fromkeys(t.strip() for tag in tags for t in tag.split(",") if t.strip()))


def caption_parts(row: dict, source: str) -> tuple[list[str], int]:
    """(caption tags of one row in Animagine order, each once and without commas; how many of
    them lead the caption: the subject, character and series)."""
    plain = lambda v: T.strip_emphasis(T.normalise_tag(v)) if v else None  # noqa: E731
    head = _tokens([h for k in ("subject", "character", "series")
                    if (h := plain(T.field_text(row.get(k))))])
    general = SOURCES[source].general(row)
    prompt = T.split_tags(T.field_text(row.get("prompt")) or "")
    rating = [r] if (r := T.prompted_rating(prompt)) else []
    if not rating and row.get("wd14_rating") in T.WD_RATING_TAG:
        rating = [T.WD_RATING_TAG[row["wd14_rating"]]]
    quality = [t for t in prompt if t in T.QUALITY_TAGS]
    aesthetic = [a] if (a := T.field_text(row.get("aesthetic_tag"))) else []
    year = [t for t in prompt if t in T.YEAR_TAGS]
    rest = _tokens(general + rating + quality + aesthetic + year)
    return head + [t for t in rest if t not in head], len(head)
