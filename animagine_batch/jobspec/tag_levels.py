"""The card's special-tag groups as ordered levels, and how each measuring classifier's classes
map onto them. This is the one place these mappings live: the quality and era scorers and the
control report (`analysis/control.py`) read them from here.

- quality: the deepghs `anime_aesthetic` classes are the card's seven tiers, cut at the same
  score percentiles (worst <= 10% < low <= 25% < normal <= 50% < good <= 75% < great <= 85% <
  best <= 95% < masterpiece).
- year: the deepghs `anime_style_ages` classes are coarser than the card's year tags. Each era
  stands for a span of years (its midpoint is the era's year); the expected year of an image (the
  probability-weighted mean of those midpoints) is turned into the card's year tag by the card's
  spans, with the cut between two spans half-way between their years. Years before the card's
  oldest span count as `oldest`.
- rating: the WD tagger's four ratings are the card's four rating tags (`tags.WD_RATING_TAG`).
- aesthetic: the aesthetic-shadow-v2 bucket is already a card tag.
"""

from __future__ import annotations

from .tags import AESTHETIC_TAGS, QUALITY_TAGS, RATING_TAGS, YEAR_TAGS

# Levels of each group, lowest first.
ORDER: dict[str, tuple[str, ...]] = {
    "quality": tuple(reversed(QUALITY_TAGS)),  # worst quality ... masterpiece
    "rating": RATING_TAGS,  # safe, sensitive, nsfw, explicit, nsfw
    "year": tuple(reversed(YEAR_TAGS)),  # oldest ... newest
    "aesthetic": tuple(reversed(AESTHETIC_TAGS)),  # very displeasing ... very aesthetic
}

# deepghs anime_aesthetic classes, lowest first, and the card tag of each.
QUALITY_TIERS = ("worst", "low", "normal", "good", "great", "best", "masterpiece")
TIER_TAG = dict(zip(QUALITY_TIERS, ORDER["quality"]))
TIER_PERCENTILES = {"worst": (0, 10), "low": (10, 25), "normal": (25, 50), "good": (50, 75),
                    "great": (75, 85), "best": (85, 95), "masterpiece": (95, 100)}

# deepghs anime_style_ages classes, oldest first, and the years each stands for.
ERAS = ("1970s-", "1980s", "1990s", "2000s", "2010s", "2015s", "2020s")
ERA_SPANS = {"1970s-": (1970, 1979), "1980s": (1980, 1989), "1990s": (1990, 1999),
             "2000s": (2000, 2009), "2010s": (2010, 2014), "2015s": (2015, 2019),
             "2020s": (2020, 2024)}
ERA_YEAR = {era: (lo + hi) / 2 for era, (lo, hi) in ERA_SPANS.items()}

# The card's year tags and their creation years.
YEAR_SPANS = {"oldest": (2005, 2010), "early": (2011, 2014), "mid": (2015, 2017),
              "recent": (2018, 2020), "newest": (2021, 2024)}

AESTHETIC_MIDPOINTS = {"very displeasing": 0.135, "displeasing": 0.36, "aesthetic": 0.58,
                       "very aesthetic": 0.855}


def era_column(era: str) -> str:
    """`1970s-` -> `era_p_1970s` (the class of the 1970s and earlier)."""
    return "era_p_" + era.rstrip("-")


def year_tag(year: float) -> str | None:
    """The card's year tag of a (fractional) creation year; None for NaN."""
    if year != year:
        return None
    spans = list(YEAR_SPANS.items())
    for (tag, (_, hi)), (_, (lo, _)) in zip(spans, spans[1:]):
        if year <= (hi + lo) / 2:
            return tag
    return spans[-1][0]


def target(group: str, level: str) -> float:
    """Where a card level lies on its group's measure: the tier or rating index, the middle of
    the year span, the middle of the aesthetic bucket."""
    if group == "year":
        lo, hi = YEAR_SPANS[level]
        return (lo + hi) / 2
    if group == "aesthetic":
        return AESTHETIC_MIDPOINTS[level]
    return float(ORDER[group].index(level))
