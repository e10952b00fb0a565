"""The control analysis as text (the `control` command), files (`--out DIR`) and a report
section."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import control as C
from . import plots
from .stats import MIN_PROMPTS

LEVEL_SHOW = ["level", "n_images", "n_prompts", "match", "adjacent", "chance", "n_pairs",
              "pair_prompts", "mean_none", "mean_level", "shift", "ci_low", "ci_high", "ci_level", "p_adj",
              "verdict", "toward"]
TREND_SHOW = ["group", "measure", "n_prompts", "rho", "ci_low", "ci_high", "ci_level", "p_adj",
              "verdict"]
READING = (f"match: share of a level's images measured at it; adjacent: within one level; "
           f"chance: the match share if measured levels ignored the prompt. shift: the measure "
           f"minus its value at none on paired tasks (t over per-prompt differences, "
           f"Bonferroni across levels); toward: whether a significant shift points from none "
           f"to the level. rho: Spearman between prompted order and measure within each "
           f"prompt, mean over prompts with a t-interval (Bonferroni across groups); fewer than "
           f"{MIN_PROMPTS} prompts: too few prompts.")


def fmt(df: pd.DataFrame, columns: list[str]) -> str:
    cols = [c for c in columns if c in df.columns]
    return df[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")


def text(results: list[C.GroupResult], trend: pd.DataFrame, notes: list[str]) -> str:
    out = []
    for r in results:
        out.append(f"== {r.group}: measured by {C.GROUPS[r.group].level_column} and "
                   f"{r.measure}, from {C.GROUPS[r.group].scorer}")
        out.append("images by prompted (rows) and measured (columns) level:")
        out.append(r.confusion.to_string())
        out.append(fmt(r.levels, LEVEL_SHOW))
        out += [f"note: {n}" for n in r.notes]
        out.append("")
    if len(trend):
        out.append("monotone trend (ordinal groups):")
        out.append(fmt(trend, TREND_SHOW))
    out += [f"note: {n}" for n in notes]
    out.append(READING)
    return "\n".join(out)


def write(results: list[C.GroupResult], trend: pd.DataFrame, out: Path) -> list[Path]:
    """control_levels.csv, control_trend.csv, confusion_<group>.csv and control_<group>.png."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    levels = pd.concat([r.levels.assign(group=r.group) for r in results], ignore_index=True)
    for name, table in (("control_levels.csv", levels), ("control_trend.csv", trend)):
        table.to_csv(out / name, index=False)
        written.append(out / name)
    for r in results:
        r.confusion.to_csv(out / f"confusion_{r.group}.csv")
        written.append(out / f"confusion_{r.group}.csv")
        written.append(plots.control_figure(r.confusion, r.level_means, r.group, r.measure,
                                            out / f"control_{r.group}.png"))
    return written


def measured_columns(df: pd.DataFrame) -> list[str]:
    return [c for g in C.GROUPS.values() for c in (g.level_column, g.measure) if c in df.columns]


def report_section(df: pd.DataFrame, axes: list[str], figures: Path, html_table,
                   mixed: dict[str, str]) -> dict:
    """Report context: one block per measured group, the trend table and the notes; empty
    when the run has no special-tag axis. A group whose measured columns come from scorers
    that differ (`mixed`) is left out, with the reason."""
    present = [g for g in C.GROUPS if g in axes and g in df.columns]
    if not present:
        return {}
    left_out = {g: mixed[c] for g in present for c in (C.GROUPS[g].level_column,
                                                       C.GROUPS[g].measure) if c in mixed}
    keep = [g for g in present if g not in left_out]
    results, trend, notes = C.control(df, axes, keep) if keep else ([], pd.DataFrame(), [])
    notes += [f"{g}: left out, its measure comes from scorers that differ ({why})"
              for g, why in left_out.items()]
    blocks = []
    for r in results:
        img = plots.control_figure(r.confusion, r.level_means, r.group, r.measure,
                                   figures / f"control_{r.group}.png")
        confusion = r.confusion.reset_index().rename(columns=str)
        blocks.append({"group": r.group, "measured": C.GROUPS[r.group].level_column,
                       "measure": r.measure, "scorer": C.GROUPS[r.group].scorer,
                       "confusion": html_table(confusion, list(confusion.columns)),
                       "levels": html_table(r.levels, LEVEL_SHOW), "notes": r.notes,
                       "image": f"figures/{img.name}"})
    return {"control": blocks, "control_notes": notes, "control_reading": READING,
            "control_trend": html_table(trend, TREND_SHOW) if len(trend) else ""}
