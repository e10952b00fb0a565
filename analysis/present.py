"""Numbers and sentences a person reads: estimates rounded to what their interval supports, and
a one-paragraph summary of the effects of a run's axes."""

from __future__ import annotations

import math

import pandas as pd

from .stats import MIN_PROMPTS, TOO_FEW

VERDICTS = ("better", "worse")


def decimals(half_width: float | None, value: float | None = None) -> int:
    """Decimals that show two significant digits of an interval's half-width (three of the
    value when there is no interval)."""
    if half_width is not None and math.isfinite(half_width) and half_width > 0:
        return max(0, 1 - math.floor(math.log10(half_width)))
    if value is not None and math.isfinite(value) and value != 0:
        return max(0, 2 - math.floor(math.log10(abs(value))))
    return 3


def fmt(v, places: int, sign: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return ""
    v = 0.0 if round(v, places) == 0 else v  # no "-0.000"
    return f"{v:+.{places}f}" if sign and v else f"{v:.{places}f}"


def estimate(mean: float, low: float, high: float, sign: bool = False) -> str:
    """`0.031 [0.012, 0.050]`, or the mean alone when there is no interval."""
    places = decimals((high - low) / 2 if math.isfinite(low) and math.isfinite(high) else None,
                      mean)
    if not (math.isfinite(low) and math.isfinite(high)):
        return fmt(mean, places, sign)
    return f"{fmt(mean, places, sign)} [{fmt(low, places)}, {fmt(high, places)}]"


def p_text(p: float) -> str:
    if p is None or not math.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def percent(v: float, places: int = 0) -> str:
    return f"{100 * v:.{places}f}%" if v is not None and math.isfinite(v) else ""


def level_text(v: float) -> str:
    """An interval's level: 95%, 98.3%."""
    return f"{100 * v:.3g}%"


def effect_sentences(effects: pd.DataFrame, human: pd.DataFrame | None = None) -> str:
    """The summary paragraph: every verdict in words, then what did not differ."""
    parts = []
    decided = effects[effects["verdict"].isin(VERDICTS)] if len(effects) else effects
    for r in decided.itertuples():
        moved = "raised" if r.mean_diff > 0 else "lowered"
        size = estimate(abs(r.mean_diff), *sorted((abs(r.ci_low), abs(r.ci_high))))
        parts.append(f"`{r.level}` ({r.axis}) {moved} {r.metric} by {size} against "
                     f"`{r.reference}` over {r.n_prompts} prompts")
    if human is not None and len(human):
        for r in human[human["verdict"].isin(VERDICTS)].itertuples():
            up = r.strength > 0
            won, lost = (r.level, r.reference) if up else (r.reference, r.level)
            share = (r.prefer, r.prefer_low, r.prefer_high) if up else \
                (1 - r.prefer, 1 - r.prefer_high, 1 - r.prefer_low)
            parts.append(f"raters preferred `{won}` to `{lost}` ({r.axis}) in "
                         f"{percent(share[0])} [{percent(share[1])}, {percent(share[2])}] of "
                         f"decisive votes over {r.n_prompts} prompts")
    rows = pd.concat([effects, human]) if human is not None and len(human) else effects
    few = rows[rows["verdict"] == TOO_FEW] if len(rows) else rows
    undecided = rows[rows["verdict"] == "no difference"] if len(rows) else rows
    if not len(rows):
        return "Nothing to compare: no axis of the run has two levels with scores."
    text = "; ".join(parts)
    if parts and len(undecided):
        text += "; no other level differed"
    elif not parts and len(undecided):
        text = "No level differed from its reference"
    if len(few) == len(rows):
        return (f"No verdicts: every comparison has fewer than {MIN_PROMPTS} prompts "
                f"(at most {int(rows['n_prompts'].max())}); the tables show means only.")
    if len(few):
        text += f" ({len(few)} comparisons have fewer than {MIN_PROMPTS} prompts: no verdict)"
    return text + "."
