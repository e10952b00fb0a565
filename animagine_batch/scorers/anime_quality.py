"""Quality tier: the deepghs `anime_aesthetic` classifier, whose seven classes are the model
card's quality tiers cut at the card's percentiles (worst <= 10% < low <= 25% < normal <= 50% <
good <= 75% < great <= 85% < best <= 95% < masterpiece).

Columns: `quality_tier` (the most probable class), `quality_tag` (the card's quality tag of that
class), `quality_score` (the expected tier: sum of P(tier) x its index, 0 = worst ... 6 =
masterpiece) and `quality_p_<tier>` for each tier. Weights licence: openrail.
"""

from __future__ import annotations

from pathlib import Path

from ..jobspec.tag_levels import QUALITY_TIERS, TIER_TAG
from .deepghs import DeepghsClassifier, build_stand_in

STAND_IN_SIZE = 32


def ensure_tiny(seed: int = 0) -> Path:
    """The offline stand-in: labels listed best first, as the hub's meta.json lists them."""
    return build_stand_in("tiny-anime-quality", list(reversed(QUALITY_TIERS)), STAND_IN_SIZE,
                          seed)


class AnimeQualityScorer(DeepghsClassifier):
    kind = "anime_quality"
    labels = QUALITY_TIERS
    default_model = "swinv2pv3_v0_448_ls0.2_x"
    default_size = 448
    higher_is_better = {"quality_score": True}
    stand_in = staticmethod(ensure_tiny)

    @staticmethod
    def columns(options: dict) -> dict[str, str]:
        return {"quality_tier": "string", "quality_tag": "string", "quality_score": "float32",
                **{f"quality_p_{t}": "float32" for t in QUALITY_TIERS}}

    def __call__(self, images, rows) -> dict[str, list]:
        p = self.probabilities(images)
        tiers = [QUALITY_TIERS[i] for i in p.argmax(axis=1)] if len(p) else []
        out = {"quality_tier": tiers, "quality_tag": [TIER_TAG[t] for t in tiers],
               "quality_score": [float(v) for v in self.expected_index(p)]}
        for j, tier in enumerate(QUALITY_TIERS):
            out[f"quality_p_{tier}"] = [float(v) for v in p[:, j]]
        return out
