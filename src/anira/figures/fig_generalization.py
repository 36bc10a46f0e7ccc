"""Generalisation figure: accuracy and mean executed depth against input size.

One column of panels per task; top row accuracy (greedy answers scored by the task), bottom row
mean executed depth over answer tokens; a line per router (mean over seeds, ±1 s.d. band when there
are several). In-distribution sizes come from the ``test`` split; sizes held out inside the
training range (``interp``) and beyond it (``extrap``) are shaded.

Input: ``generalization.csv`` of :mod:`anira.analysis.generalization`.
"""

from __future__ import annotations

import sys

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from anira.figures.style import figure_cli, finish, ordered, panel_grid, router_palette
from anira.layout import EXTRAP, INTERP, REPORTED_SPLITS

REQUIRED = ["task", "router", "seed", "split", "size", "accuracy", "mean_depth"]
METRICS = {"accuracy": "accuracy", "mean_depth": "mean executed depth"}
REGIONS = {INTERP: ("interpolation", "#fdae61"), EXTRAP: ("extrapolation", "#d7191c")}


def shade_regions(ax: plt.Axes, sizes: pd.DataFrame) -> None:
    """Shade the held-out sizes: each interp size, and the extrapolation range."""
    for split, (label, colour) in REGIONS.items():
        values = sorted(sizes.loc[sizes["split"] == split, "size"].unique())
        spans = [(v - 0.5, v + 0.5) for v in values] if split == INTERP else []
        if split == EXTRAP and values:
            spans = [(values[0] - 0.5, values[-1] + 0.5)]
        for i, (low, high) in enumerate(spans):
            ax.axvspan(low, high, color=colour, alpha=0.12, lw=0, label=label if i == 0 else None)


def draw(table: pd.DataFrame) -> plt.Figure:
    """Accuracy and mean depth against size, a panel per task, a line per router."""
    table = table[table["split"].isin(REPORTED_SPLITS)]
    tasks = sorted(table["task"].unique())
    palette = router_palette(table["router"].unique())
    hue_order = ordered(table["router"].unique(), list(palette))
    fig, axes = panel_grid(
        len(METRICS),
        len(tasks),
        sharex="col",
    )
    for col, task in enumerate(tasks):
        part = table[table["task"] == task].sort_values(["router", "seed", "size"])
        for row, (metric, label) in enumerate(METRICS.items()):
            ax = axes[row, col]
            shade_regions(ax, part)
            sns.lineplot(
                data=part,
                x="size",
                y=metric,
                hue="router",
                hue_order=hue_order,
                palette=palette,
                marker="o",
                errorbar="sd",
                ax=ax,
                legend=row == 0 and col == len(tasks) - 1,
            )
            ax.set_ylabel(label if col == 0 else "")
            ax.set_xlabel("size" if row == len(METRICS) - 1 else "")
            if metric == "accuracy":
                ax.set_ylim(-0.03, 1.03)
                ax.set_title(task)
    legend_ax = axes[0, -1]
    return finish(fig, legend_ax)


if __name__ == "__main__":
    sys.exit(figure_cli(draw, REQUIRED))
