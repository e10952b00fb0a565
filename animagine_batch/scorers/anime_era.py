"""Era: the deepghs `anime_style_ages` classifier (drawing style by decade: 1970s and earlier,
1980s, 1990s, 2000s, 2010-2014, 2015-2019, 2020s).

Columns: `era` (the most probable class), `era_year` (the expected year: sum of P(era) x the
middle year of its span), `era_year_tag` (the card's year tag of `era_year`) and `era_p_<era>`
for each class (`era_p_1970s` is the class `1970s-`). The spans and the year-tag mapping are in
`tag_levels`. Weights licence: openrail.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..jobspec.tag_levels import ERA_YEAR, ERAS, era_column, year_tag
from .deepghs import DeepghsClassifier, build_stand_in

STAND_IN_SIZE = 32


def ensure_tiny(seed: int = 0) -> Path:
    """The offline stand-in: labels in the hub's order (oldest first)."""
    return build_stand_in("tiny-anime-era", list(ERAS), STAND_IN_SIZE, seed)


class AnimeEraScorer(DeepghsClassifier):
    kind = "anime_era"
    labels = ERAS
    default_model = "caformer_s36_v0"
    default_size = 384
    higher_is_better: dict[str, bool] = {}  # an era is neither better nor worse
    stand_in = staticmethod(ensure_tiny)

    @staticmethod
    def columns(options: dict) -> dict[str, str]:
        return {"era": "string", "era_year": "float32", "era_year_tag": "string",
                **{era_column(e): "float32" for e in ERAS}}

    def __call__(self, images, rows) -> dict[str, list]:
        p = self.probabilities(images)
        years = p @ np.array([ERA_YEAR[e] for e in ERAS])
        out = {"era": [ERAS[i] for i in p.argmax(axis=1)] if len(p) else [],
               "era_year": [float(y) for y in years],
               "era_year_tag": [year_tag(float(y)) for y in years]}
        for j, era in enumerate(ERAS):
            out[era_column(era)] = [float(v) for v in p[:, j]]
        return out
