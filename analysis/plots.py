"""Figures for reports (matplotlib, Agg backend): metric against a numeric axis, aesthetic-tag
distribution per strategy, score histograms, interaction heatmaps, special-tag control."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

TAG_ORDER = ["very displeasing", "displeasing", "aesthetic", "very aesthetic"]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def metric_vs(df: pd.DataFrame, axis: str, metric: str, path: Path, by: str | None = None) -> Path:
    """Mean of `metric` (with its standard error) at each level of a numeric axis."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    groups = [(None, df)] if by is None else list(df.groupby(by, sort=False))
    for label, sub in groups:
        g = sub.groupby(axis)[metric].agg(["mean", "sem"]).sort_index()
        ax.errorbar(g.index, g["mean"], yerr=g["sem"].fillna(0), marker="o", capsize=3,
                    label=None if label is None else str(label))
    ax.set_xlabel(axis)
    ax.set_ylabel(metric)
    if by is not None:
        ax.legend(title=by, fontsize=7)
    return _save(fig, path)


def tag_distribution(df: pd.DataFrame, by: str, path: Path) -> Path:
    """Share of each aesthetic tag per level of `by` (stacked bars)."""
    counts = pd.crosstab(df[by], df["aesthetic_tag"], normalize="index")
    counts = counts.reindex(columns=[t for t in TAG_ORDER if t in counts.columns])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bottom = np.zeros(len(counts))
    for tag in counts.columns:
        ax.bar([str(i) for i in counts.index], counts[tag], bottom=bottom, label=tag)
        bottom += counts[tag].to_numpy()
    ax.set_ylabel("share of images")
    ax.set_xlabel(by)
    ax.legend(fontsize=7)
    ax.tick_params(axis="x", labelrotation=30)
    return _save(fig, path)


def histogram(df: pd.DataFrame, metric: str, path: Path, by: str | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    groups = [(metric, df)] if by is None else list(df.groupby(by, sort=False))
    for label, sub in groups:
        values = pd.to_numeric(sub[metric].astype("float64"), errors="coerce").dropna()
        ax.hist(values, bins=20, alpha=0.5, label=str(label))
    ax.set_xlabel(metric)
    ax.set_ylabel("images")
    if by is not None:
        ax.legend(title=by, fontsize=7)
    return _save(fig, path)


def heatmap(table: pd.DataFrame, metric: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.6))
    im = ax.imshow(table.to_numpy(float), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(table.columns)), [str(c) for c in table.columns])
    ax.set_yticks(range(len(table.index)), [str(i) for i in table.index])
    ax.set_xlabel(table.columns.name)
    ax.set_ylabel(table.index.name)
    for (i, j), v in np.ndenumerate(table.to_numpy(float)):
        ax.text(j, i, f"{v:.3g}", ha="center", va="center", color="white", fontsize=7)
    fig.colorbar(im, ax=ax, label=metric)
    return _save(fig, path)


def control_figure(confusion: pd.DataFrame, means: pd.DataFrame, group: str, measure: str,
                   path: Path) -> Path:
    """A special-tag group: the share of each prompted level's images at each measured level
    (left), and the mean measure per prompted level with its 95% t-interval over prompts
    (right)."""
    shares = confusion.div(confusion.sum(axis=1).replace(0, np.nan), axis=0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    im = left.imshow(shares.to_numpy(float), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    left.set_xticks(range(len(shares.columns)), [str(c) for c in shares.columns], rotation=35,
                    ha="right", fontsize=7)
    left.set_yticks(range(len(shares.index)), [str(i) for i in shares.index], fontsize=7)
    left.set_xlabel(f"measured {group}")
    left.set_ylabel(f"prompted {group}")
    for (i, j), v in np.ndenumerate(shares.to_numpy(float)):
        if np.isfinite(v):
            left.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                      color="white" if v < 0.6 else "black")
    fig.colorbar(im, ax=left, label="share of the row's images")
    x = np.arange(len(means))
    err = np.vstack([means["mean"] - means["ci_low"], means["ci_high"] - means["mean"]])
    right.errorbar(x, means["mean"], yerr=np.nan_to_num(err), marker="o", capsize=3)
    right.set_xticks(x, [str(v) for v in means["level"]], rotation=35, ha="right", fontsize=7)
    right.set_xlabel(f"prompted {group}")
    right.set_ylabel(measure)
    return _save(fig, path)
