"""Accuracy–compute figure: accuracy against mean active token-steps per answer token.

A panel per task (rows) and split (columns): every model is a point with its Wilson 95 % interval,
a colour per router (the inference rule in the legend); fixed-depth models are joined by the grey
frontier line. A point above the line beats fixed depth at equal compute. Matched-compute controls
(``control``) are hollow and labelled with the router they match.

Input: ``pareto.csv`` of :mod:`anira.analysis.pareto`.
"""

from __future__ import annotations

import sys

import matplotlib.pyplot as plt
import pandas as pd

from anira.figures.style import (
    SPLIT_LABELS,
    SPLIT_ORDER,
    figure_cli,
    finish,
    ordered,
    panel_grid,
    router_palette,
)

REQUIRED = ["task", "router", "inference_rule", "split", "token_steps", "accuracy"]
REQUIRED += ["ci_low", "ci_high", "fixed_depth", "control", "matches"]


def draw(table: pd.DataFrame) -> plt.Figure:
    """Accuracy against mean active token-steps per answer token, fixed-depth frontier."""
    tasks = sorted(table["task"].unique())
    splits = ordered(table["split"].unique(), SPLIT_ORDER)
    palette = router_palette(table["router"].unique())
    fig, axes = panel_grid(len(tasks), len(splits), sharey="row")
    for row, task in enumerate(tasks):
        for col, split in enumerate(splits):
            ax = axes[row, col]
            part = table[(table["task"] == task) & (table["split"] == split)]
            fixed = part[part["fixed_depth"].astype(bool)].sort_values("token_steps")
            ax.plot(
                fixed["token_steps"],
                fixed["accuracy"],
                "-",
                color="0.6",
                label="fixed-depth frontier",
            )
            for (router, rule), point in part.groupby(["router", "inference_rule"], sort=True):
                errors = [point["accuracy"] - point["ci_low"], point["ci_high"] - point["accuracy"]]
                label = router if rule in (router, "fixed", "random") else f"{router} ({rule})"
                marker = "s" if rule == "mode" and router != "early" else "o"
                control = bool(point["control"].iloc[0])
                if control:
                    label = f"{router} (control of {point['matches'].iloc[0]})"
                ax.errorbar(
                    point["token_steps"],
                    point["accuracy"],
                    yerr=errors,
                    fmt=marker,
                    color=palette[router],
                    label=label,
                    markersize=5,
                    capsize=2,
                    fillstyle="none" if control else "full",
                )
            ax.set_title(f"{task} · {SPLIT_LABELS.get(split, split)}")
            ax.set_xlabel("token-steps per answer token" if row == len(tasks) - 1 else "")
            ax.set_ylabel("accuracy" if col == 0 else "")
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    legend_ax = axes[0, -1]
    legend_ax.legend(handles.values(), handles.keys())
    return finish(fig, legend_ax)


if __name__ == "__main__":
    sys.exit(figure_cli(draw, REQUIRED))
