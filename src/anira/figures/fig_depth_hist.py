"""Depth histogram figure: the distribution of executed depth on answer tokens.

A panel per task (rows) and router (columns): the share of answer tokens that ran each depth, one
bar colour per evaluation split (in-distribution, interpolation, extrapolation).

Input: ``depth_hist.csv`` of :mod:`anira.analysis.depth_hist`.
"""

from __future__ import annotations

import sys

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from anira.figures.style import (
    SPLIT_LABELS,
    figure_cli,
    finish,
    ordered,
    panel_grid,
    router_palette,
)
from anira.layout import REPORTED_SPLITS

REQUIRED = ["task", "router", "split", "depth", "fraction"]


def draw(table: pd.DataFrame) -> plt.Figure:
    """Distribution of executed depth per task and router."""
    table = table[table["split"].isin(REPORTED_SPLITS)].copy()
    table["split"] = table["split"].map(SPLIT_LABELS)
    tasks = sorted(table["task"].unique())
    routers = list(router_palette(table["router"].unique()))
    hue_order = [SPLIT_LABELS[s] for s in ordered(REPORTED_SPLITS, REPORTED_SPLITS)]
    depths = list(range(1, int(table["depth"].max()) + 1))
    fig, axes = panel_grid(
        len(tasks),
        len(routers),
        sharey="row",
    )
    for row, task in enumerate(tasks):
        for col, router in enumerate(routers):
            ax = axes[row, col]
            part = table[(table["task"] == task) & (table["router"] == router)]
            sns.barplot(
                data=part,
                x="depth",
                y="fraction",
                hue="split",
                order=depths,
                hue_order=hue_order,
                palette="crest",
                errorbar=None,
                ax=ax,
                legend=row == 0 and col == len(routers) - 1,
            )
            ax.set_title(f"{task} · {router}")
            ax.set_xlabel("executed depth" if row == len(tasks) - 1 else "")
            ax.set_ylabel("share of answer tokens" if col == 0 else "")
    legend_ax = axes[0, -1]
    return finish(fig, legend_ax)


if __name__ == "__main__":
    sys.exit(figure_cli(draw, REQUIRED))
