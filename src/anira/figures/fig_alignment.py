"""Alignment figure: mean depth against each complexity feature, a line per router.

A panel per task × feature (wrapped in rows of ``COLS``): the mean executed depth (solid) and
expected depth E_q[d] (dashed) of answer tokens at each feature value (or quantile bin), on the
in-distribution ``test`` split when present. A rising line is depth that tracks complexity.

Input: ``alignment_curves.csv`` of :mod:`anira.analysis.alignment`.
"""

from __future__ import annotations

import sys

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from anira.figures.style import (
    figure_cli,
    finish,
    ordered,
    router_palette,
    shown_split,
    wrapped_panels,
)

REQUIRED = ["task", "router", "split", "feature", "depth", "feature_value", "mean_depth"]
COLS = 5
DASHES = {"executed": "", "expected": (4, 2)}


def draw(table: pd.DataFrame) -> plt.Figure:
    """Mean depth against each complexity feature, per task, a line per router."""
    split = shown_split(table)
    table = table[table["split"] == split].sort_values(["task", "feature", "router", "depth"])
    panels = list(table.groupby(["task", "feature"], sort=True).groups)
    palette = router_palette(table["router"].unique())
    hue_order = ordered(table["router"].unique(), list(palette))
    fig, cells, cols = wrapped_panels(panels, COLS)
    for index, (ax, (task, feature)) in enumerate(cells):
        part = table[(table["task"] == task) & (table["feature"] == feature)]
        sns.lineplot(
            data=part,
            x="feature_value",
            y="mean_depth",
            hue="router",
            hue_order=hue_order,
            palette=palette,
            style="depth",
            style_order=list(DASHES),
            dashes=DASHES,
            marker="o",
            markersize=4,
            errorbar=None,
            ax=ax,
            legend=index == cols - 1,
        )
        ax.set_title(f"{task}: {feature}")
        ax.set_xlabel(feature)
        ax.set_ylabel("mean depth" if index % cols == 0 else "")
    legend_ax = cells[cols - 1][0]
    fig.suptitle(f"depth against complexity ({split} split, answer tokens)", y=1.0)
    return finish(fig, legend_ax)


if __name__ == "__main__":
    sys.exit(figure_cli(draw, REQUIRED))
