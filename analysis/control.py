"""Do the card's special tags do what the card says? For each special-tag group that is an
axis of a run, the prompted level against the level the images are measured at.

| group | measured level | measure (ordinal) | scorer |
|---|---|---|---|
| quality | `quality_tag` | `quality_score` (expected tier, 0-6) | anime_quality |
| year | `era_year_tag` | `era_year` (expected year) | anime_era |
| aesthetic | `aesthetic_tag` | `aesthetic_score` | aesthetic_shadow_v2 |
| rating | `wd14_rating` as the card's tag | its index (safe 0 ... explicit 3) | wd14 |

Per group: a confusion matrix (images by prompted and measured level); per prompted level the
share measured at that level (`match`), within one level of it (`adjacent`) and the match share
that chance alone gives (`chance`: measured levels drawn from their overall distribution); the
paired shift of the measure against `none` (`analysis.compare`: tasks that share every other
factor, t over per-prompt mean differences, Bonferroni across the levels); and, for the ordinal
groups (quality, year, aesthetic), the monotone trend: Spearman's rank correlation between the
prompted order and the measure within each prompt, averaged over prompts with a t-interval
(`analysis.stats`, Bonferroni across the groups). Within-prompt correlation leaves out the
differences between prompts, as pairing does; its interval is over prompts, the unit of
inference, and reads "too few prompts" below `stats.MIN_PROMPTS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from animagine_batch.jobspec.tag_levels import ORDER, target
from animagine_batch.jobspec.tags import WD_RATING_TAG, parse_special
from animagine_batch.rundir import ResultsError

from . import stats
from .compare import _numeric, compare

NONE = "none"
ORDINAL = ("quality", "year", "aesthetic")


@dataclass(frozen=True)
class Group:
    level_column: str
    measure: str
    scorer: str
    to_card: dict | None = None  # measured value -> the card's tag


GROUPS = {
    "quality": Group("quality_tag", "quality_score", "anime_quality (offline: tiny_anime_quality)"),
    "year": Group("era_year_tag", "era_year", "anime_era (offline: tiny_anime_era)"),
    "aesthetic": Group("aesthetic_tag", "aesthetic_score",
                       "aesthetic_shadow_v2 (offline: tiny_aesthetic)"),
    "rating": Group("wd14_rating", "rating_level", "wd14 (offline: tiny_wd14)", WD_RATING_TAG),
}
LEVEL_COLUMNS = ["level", "n_images", "n_prompts", "match", "adjacent", "chance", "n_pairs",
                 "pair_prompts", "mean_none", "mean_level", "shift", "ci_low", "ci_high", "ci_level", "p_adj",
                 "verdict", "toward"]
TREND_COLUMNS = ["group", "measure", "n_images", "n_prompts", "rho", "ci_low", "ci_high",
                 "ci_level", "p_value", "p_adj", "family", "verdict"]


@dataclass
class GroupResult:
    group: str
    measure: str
    confusion: pd.DataFrame  # images: rows prompted level (none first), columns measured level
    levels: pd.DataFrame  # LEVEL_COLUMNS, one row per prompted card level
    level_means: pd.DataFrame  # per prompted level: mean of the per-prompt means, t-interval
    notes: list[str] = field(default_factory=list)


def prompted(values: pd.Series, group: str) -> pd.Series:
    """Each axis value as the card level it prompts, `none`, or None (not one card level, e.g.
    `masterpiece, best quality`)."""
    def one(value):
        try:
            tags = parse_special(group, str(value))
        except ValueError:
            return None
        text = ", ".join(tags)
        return NONE if not tags else text if text in ORDER[group] else None

    return values.map({u: one(u) for u in pd.unique(values)})


def measured(df: pd.DataFrame, group: str) -> tuple[pd.Series, pd.Series]:
    """The measured card level and the group's measure of each row (NaN where unscored)."""
    g = GROUPS[group]
    level = df[g.level_column].astype(object)
    if g.to_card:
        level = level.map(g.to_card)
    level = level.where(level.isin(ORDER[group]))
    if group == "rating":
        measure = level.map({t: float(i) for i, t in enumerate(ORDER[group])}).astype(float)
    else:
        measure = _numeric(df[g.measure])
    return level, measure


def missing(df: pd.DataFrame, group: str) -> list[str]:
    g = GROUPS[group]
    need = [g.level_column] + ([] if group == "rating" else [g.measure])
    return [c for c in need if c not in df.columns]


def prompt_spearman(x: np.ndarray, y: np.ndarray, codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Spearman's rho between x and y within each code (average ranks for ties); NaN for a
    code where x or y is constant (with two rows, rho is the sign of their difference)."""
    frame = pd.DataFrame({"c": codes, "x": x, "y": y})
    rx = frame.groupby("c")["x"].rank().to_numpy()
    ry = frame.groupby("c")["y"].rank().to_numpy()
    n = np.bincount(codes, minlength=n_codes).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = rx - (np.bincount(codes, rx, n_codes) / n)[codes]
        dy = ry - (np.bincount(codes, ry, n_codes) / n)[codes]
        sxx, syy = np.bincount(codes, dx * dx, n_codes), np.bincount(codes, dy * dy, n_codes)
        rho = np.bincount(codes, dx * dy, n_codes) / np.sqrt(sxx * syy)
    return np.where((n >= 2) & (sxx > 1e-12) & (syy > 1e-12), rho, np.nan)


def trend_verdicts(inf: stats.Inference) -> np.ndarray:
    out = np.where(inf.ci_low > 0, "increasing",
                   np.where(inf.ci_high < 0, "decreasing", "no trend"))
    return np.where(inf.enough, out, stats.TOO_FEW)


def agreement(prompt_idx: np.ndarray, measured_idx: np.ndarray, n_levels: int) -> pd.DataFrame:
    """Per prompted level index: images, share measured at it, within one level, and by
    chance (the measured levels' distribution over all prompted images)."""
    dist = np.bincount(measured_idx, minlength=n_levels) / max(len(measured_idx), 1)
    rows = []
    for i in range(n_levels):
        m = measured_idx[prompt_idx == i]
        rows.append({"n_images": len(m), "match": np.mean(m == i) if len(m) else np.nan,
                     "adjacent": np.mean(np.abs(m - i) <= 1) if len(m) else np.nan,
                     "chance": dist[i]})
    return pd.DataFrame(rows)


def analyse_group(df: pd.DataFrame, group: str, axes: list[str]) -> GroupResult:
    """The control analysis of one group (its axis is the column named like the group)."""
    order = list(ORDER[group])
    ok = df[df["status"] == "ok"].copy()
    ok[group] = prompted(ok[group], group)
    notes = []
    other = int(ok[group].isna().sum())
    if other:
        notes.append(f"{other:,} images prompt {group} levels that are not one card level "
                     "(such as a list of tags); they are left out")
    level, measure = measured(ok, group)
    ok = ok.assign(_level=level, _measure=measure)
    ok = ok[ok[group].notna()]
    unscored = int(ok["_measure"].isna().sum())
    if unscored:
        notes.append(f"{unscored:,} images have no measured {group} level and are left out")
    ok = ok[ok["_measure"].notna() & ok["_level"].notna()]
    rows = [lv for lv in [NONE] + order if lv in set(ok[group])]
    confusion = pd.crosstab(pd.Categorical(ok[group], rows), pd.Categorical(ok["_level"], order),
                            dropna=False).rename_axis(index=f"prompted {group}",
                                                      columns=f"measured {group}")
    tagged = ok[ok[group] != NONE]
    p_idx = tagged[group].map(order.index).to_numpy(int)
    m_idx = tagged["_level"].map(order.index).to_numpy(int)
    table = agreement(p_idx, m_idx, len(order)).assign(level=order)
    table["n_prompts"] = [tagged.loc[tagged[group] == lv, "prompt_key"].nunique() for lv in order]
    table = table.merge(_shifts(ok, group, axes, order, notes), on="level", how="left")
    present = table[table["n_images"] > 0]
    means = _level_means(ok, group, rows)
    return GroupResult(group, GROUPS[group].measure, confusion,
                       present.reindex(columns=LEVEL_COLUMNS).reset_index(drop=True), means, notes)


def _shifts(ok: pd.DataFrame, group: str, axes: list[str], order: list[str],
            notes: list[str]) -> pd.DataFrame:
    """Each level's paired shift of the measure against `none` (`compare`)."""
    empty = pd.DataFrame({"level": order})
    if NONE not in set(ok[group]):
        notes.append(f"the {group} axis has no `none` level: no shift against none")
        return empty
    levels = [NONE] + [lv for lv in order if lv in set(ok[group])]
    frame = ok.assign(_shift_measure=ok["_measure"])
    shift = compare(frame, group, ["_shift_measure"], {"_shift_measure": True}, axes, NONE,
                    levels)
    shift = shift.rename(columns={"mean_reference": "mean_none", "mean_diff": "shift",
                                  "n_prompts": "pair_prompts"})
    shift["verdict"] = shift["verdict"].replace({"better": "higher", "worse": "lower"})
    toward = []
    for r in shift.itertuples():
        goal = np.sign(target(group, r.level) - r.mean_none)
        moved = {"higher": 1.0, "lower": -1.0}.get(r.verdict)
        toward.append("" if moved is None or goal == 0 else "yes" if moved == goal else "no")
    shift["toward"] = toward
    return empty.merge(shift.drop(columns=["axis", "reference", "metric"]), on="level",
                       how="left")


def _level_means(ok: pd.DataFrame, group: str, rows: list[str]) -> pd.DataFrame:
    out = []
    for lv in rows:
        sub = ok[ok[group] == lv]
        if sub.empty:
            continue
        codes, _ = pd.factorize(sub["prompt_key"])
        inf = stats.t_inference(stats.prompt_means(sub["_measure"].to_numpy(float), codes,
                                                   int(codes.max()) + 1))
        out.append({"level": lv, "mean": float(inf.mean), "ci_low": float(inf.ci_low),
                    "ci_high": float(inf.ci_high), "n_prompts": int(inf.n_prompts)})
    return pd.DataFrame(out, columns=["level", "mean", "ci_low", "ci_high", "n_prompts"])


def trends(df: pd.DataFrame, groups: list[str], alpha: float = stats.ALPHA) -> pd.DataFrame:
    """The monotone-trend row of each ordinal group: Spearman within prompts, t over prompts,
    Bonferroni across the groups."""
    ordinal = [g for g in groups if g in ORDINAL]
    rows = []
    for group in ordinal:
        order = list(ORDER[group])
        ok = df[df["status"] == "ok"]
        level = prompted(ok[group], group)
        _, measure = measured(ok, group)
        use = level.isin(order) & measure.notna()
        sub = ok[use]
        x = level[use].map(order.index).to_numpy(float)
        codes, _ = pd.factorize(sub["prompt_key"])
        n_codes = int(codes.max()) + 1 if len(codes) else 0
        rho = prompt_spearman(x, measure[use].to_numpy(float), codes, n_codes)
        inf = stats.t_inference(rho, len(ordinal), alpha)
        rows.append({"group": group, "measure": GROUPS[group].measure, "n_images": int(use.sum()),
                     "n_prompts": int(inf.n_prompts), "rho": float(inf.mean),
                     "ci_low": float(inf.ci_low), "ci_high": float(inf.ci_high),
                     "ci_level": inf.level, "p_value": float(inf.p_value),
                     "p_adj": float(inf.p_adj), "family": inf.family,
                     "verdict": str(trend_verdicts(inf))})
    return pd.DataFrame(rows, columns=TREND_COLUMNS)


def control(df: pd.DataFrame, axes: list[str], groups: list[str] | None = None
            ) -> tuple[list[GroupResult], pd.DataFrame, list[str]]:
    """(per-group results, trend table, notes) for every special-tag group that is an axis
    of the run (or the named `groups`)."""
    available = [g for g in GROUPS if g in axes and g in df.columns]
    if groups:
        bad = [g for g in groups if g not in available]
        if bad:
            raise ResultsError(f"--group {', '.join(bad)}: not a special-tag axis of this run; "
                               f"its special-tag axes: {', '.join(available) or '(none)'}")
        available = [g for g in available if g in groups]
    if not available:
        raise ResultsError("control: the run has no special-tag axis (quality, rating, year or "
                           f"aesthetic); its axes: {', '.join(axes) or '(none)'}. Sweep one, "
                           "with none as a level, e.g. jobs/tag_control.yaml")
    notes, results = [], []
    for group in available:
        lacking = missing(df, group)
        if lacking:
            notes.append(f"{group}: not measured (no column {', '.join(lacking)}); add the scorer "
                         f"{GROUPS[group].scorer} and rescore: animagine-batch score RUN "
                         f"scorers=[...]")
            continue
        results.append(analyse_group(df, group, axes))
    return results, trends(df, [r.group for r in results]), notes
