"""Forest plot of the effects of a run's axes: each level's difference from its reference with
its interval, one panel per metric, the verdict in the marker's colour (matplotlib, Agg)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

COLOURS = {"better": "#1a8a1a", "worse": "#c62828", "no difference": "#555555"}
PER_ROW = 3


def forest(panels: dict[str, pd.DataFrame], path: Path) -> Path:
    """`panels`: title -> rows with axis, level, reference, mean_diff (or strength), ci_low,
    ci_high, verdict. Rows without an interval (too few prompts) are hollow markers."""
    names = list(panels)
    ncols = min(PER_ROW, len(names))
    nrows = math.ceil(len(names) / ncols)
    height = max(len(t) for t in panels.values())
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, nrows * (0.9 + 0.32 * height)),
                             squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        t = panels[name]
        y = np.arange(len(t))[::-1]
        mean = t["mean_diff"] if "mean_diff" in t else t["strength"]
        for yi, m, lo, hi, verdict in zip(y, mean, t["ci_low"], t["ci_high"], t["verdict"]):
            colour = COLOURS.get(verdict, "#999999")
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [yi, yi], color=colour, lw=2)
                ax.plot(m, yi, "o", color=colour)
            else:
                ax.plot(m, yi, "o", mfc="white", color=colour)
        ax.axvline(0, color="#999999", lw=1, ls="--")
        ax.set_yticks(y, [f"{a}: {lv} vs {r}" for a, lv, r in
                          zip(t["axis"], t["level"], t["reference"])], fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_ylim(-0.7, len(t) - 0.3)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=c, marker="o", lw=2, label=v) for v, c in COLOURS.items()]
    handles.append(plt.Line2D([], [], color="#999999", marker="o", mfc="white", lw=0,
                              label="too few prompts"))
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06 if nrows == 1 else 0.03, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
