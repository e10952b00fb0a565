"""The report's reading aids: the summary in words, the forest plot, the effect table with the
verdict first and rounded numbers, notes on metrics without data, and the human-rating section
(when the run has votes)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from markupsafe import Markup, escape

from . import present as P
from .compare import LOWER_IS_BETTER, _numeric, axis_levels
from .forest import forest
from .ratings import read_votes

EFFECT_HEAD = ["verdict", "axis", "level", "vs", "metric", "difference [interval]", "level mean",
               "reference mean", "prompts", "pairs", "win rate", "p (adj.)", "interval"]
HUMAN_HEAD = ["verdict", "axis", "level", "vs", "strength [interval]", "preferred [interval]",
              "prompts", "votes", "ties", "win rate", "p (adj.)", "interval"]
AGREE_HEAD = ["verdict", "metric", "agreement [interval]", "votes", "prompts", "p (adj.)",
              "interval"]


def _table(head: list[str], rows: list[list[str]], verdicts: list[str]) -> Markup:
    th = "".join(f'<th class="{"text" if i < 5 else ""}">{escape(h)}</th>'
                 for i, h in enumerate(head))
    body = "".join(
        f'<tr class="{escape(v.replace(" ", "-"))}">' +
        "".join(f'<td class="{"text" if i < 5 else ""}">{escape(c)}</td>'
                for i, c in enumerate(r)) + "</tr>" for r, v in zip(rows, verdicts))
    return Markup(f'<table class="effects"><tr>{th}</tr>{body}</table>')


def effect_rows(effects: pd.DataFrame) -> list[list[str]]:
    rows = []
    for r in effects.itertuples():
        places = P.decimals((r.ci_high - r.ci_low) / 2 if pd.notna(r.ci_low) else None,
                            r.mean_diff)
        rows.append([r.verdict, str(r.axis), str(r.level), str(r.reference), r.metric,
                     P.estimate(r.mean_diff, r.ci_low, r.ci_high, sign=True),
                     P.fmt(r.mean_level, places), P.fmt(r.mean_reference, places),
                     str(r.n_prompts), f"{r.n_pairs:,}", P.percent(r.win_rate),
                     P.p_text(r.p_adj), P.level_text(r.ci_level)])
    return rows


def no_data_notes(df: pd.DataFrame, dirs: dict[str, bool], metrics: list[str],
                  effects: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Drop effect rows without pairs and name the metrics that have no values."""
    notes = []
    empty = [c for c in dirs if c in df.columns and c not in LOWER_IS_BETTER
             and c not in metrics and not _numeric(df[c]).notna().any()]
    if empty:
        notes.append(f"Left out, no values in this run: {', '.join(empty)} (for example a "
                     "rating match where no rating tag was prompted).")
    if len(effects):
        none = effects[effects["n_pairs"] == 0]
        if len(none):
            notes.append(f"Left out, no pairs with values: {len(none)} comparisons ("
                         + ", ".join(sorted(set(none["metric"]))) + ").")
        effects = effects[effects["n_pairs"] > 0]
    return effects, notes


def effects_section(df, dirs, metrics, effects: pd.DataFrame, human: pd.DataFrame | None,
                    figs: Path) -> dict:
    effects, notes = no_data_notes(df, dirs, metrics, effects)
    ctx = {"summary_text": P.effect_sentences(effects, human), "notes": notes, "effects": "",
           "forest": None}
    panels = {m: t for m, t in effects.groupby("metric", sort=False)} if len(effects) else {}
    if human is not None and len(human):
        for axis, t in human.groupby("axis", sort=False):
            panels[f"human preference, {axis} (log-odds)"] = t
    if panels:
        ctx["forest"] = f"figures/{forest(panels, figs / 'forest.png').name}"
    if len(effects):
        ctx["effects"] = _table(EFFECT_HEAD, effect_rows(effects), list(effects["verdict"]))
    return ctx


def human_tables(run_dir: Path, df: pd.DataFrame) -> pd.DataFrame | None:
    """compare_human for every axis the run's votes are on; None without votes."""
    from .human import compare_human

    votes, _ = read_votes(run_dir)
    if votes.empty:
        return None
    parts = [compare_human(df, votes, axis, axis_levels(run_dir, axis))
             for axis in sorted(set(votes["axis"])) if axis in df.columns]
    return pd.concat(parts, ignore_index=True) if parts else None


def human_section(run_dir: Path, df: pd.DataFrame, dirs, metrics, human: pd.DataFrame) -> dict:
    from .agreement import agreement_table, inter_rater, inter_rater_text

    votes, torn = read_votes(run_dir)
    rows = [[r.verdict, str(r.axis), str(r.level), str(r.reference),
             P.estimate(r.strength, r.ci_low, r.ci_high, sign=True),
             f"{P.percent(r.prefer)} [{P.percent(r.prefer_low)}, {P.percent(r.prefer_high)}]"
             if pd.notna(r.ci_low) else P.percent(r.prefer),
             str(r.n_prompts), f"{r.n_votes:,}", f"{r.n_ties:,}", P.percent(r.win_rate),
             P.p_text(r.p_adj), P.level_text(r.ci_level)] for r in human.itertuples()]
    out = {"human": _table(HUMAN_HEAD, rows, list(human["verdict"])),
           "human_votes": f"{len(votes):,} votes by {votes['rater'].nunique()} raters"
                          + (f" ({torn} torn lines skipped)" if torn else ""),
           "inter_rater": inter_rater_text(inter_rater(votes)), "agreement": ""}
    if metrics:
        a = agreement_table(df, votes, metrics, dirs)
        rows = [[r.verdict, r.metric, f"{P.percent(r.agreement)} [{P.percent(r.ci_low)}, "
                 f"{P.percent(r.ci_high)}]" if pd.notna(r.ci_low) else P.percent(r.agreement),
                 f"{r.n_votes:,}", str(r.n_prompts), P.p_text(r.p_adj), P.level_text(r.ci_level)]
                for r in a.itertuples()]
        out["agreement"] = _table(AGREE_HEAD, rows, list(a["verdict"]))
    return out
