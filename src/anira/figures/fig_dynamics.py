"""Training-dynamics figure: accuracy, mean depth, depth entropy and alignment over training.

A row of panels per task, a column per metric, a line per router (and inference rule) against the
training step on a log axis, with its 95 % band (seeds pooled). The alignment panel shows the
Spearman correlation of expected depth with each router's strongest feature (rank 1 at the last
step, named in the legend); a fixed router has none. Does alignment emerge before or after
accuracy?

Input: ``dynamics.csv`` of :mod:`anira.analysis.dynamics`.
"""

from __future__ import annotations

import sys

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import pandas as pd

from anira.figures.style import figure_cli, finish, ordered, panel_grid, router_palette

REQUIRED = ["task", "router", "inference_rule", "step", "metric", "feature", "feature_rank"]
REQUIRED += ["estimate", "ci_low", "ci_high"]
PANELS = {
    "accuracy": "accuracy (val)",
    "mean_depth": "mean executed depth",
    "depth_entropy": "depth entropy (bits)",
    "spearman": "Spearman ρ, strongest feature",
}


def curves(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows drawn in a metric's panel: for alignment, the strongest feature only."""
    rows = table[table["metric"] == metric]
    if metric == "spearman":
        rows = rows[rows["feature_rank"] == 1]
    return rows.sort_values("step")


def draw(table: pd.DataFrame) -> plt.Figure:
    """Accuracy, mean depth, depth entropy and alignment against the training step."""
    tasks = sorted(table["task"].unique())
    palette = router_palette(table["router"].unique())
    fig, axes = panel_grid(len(tasks), len(PANELS), sharex="row")
    for row, task in enumerate(tasks):
        for col, (metric, label) in enumerate(PANELS.items()):
            ax = axes[row, col]
            part = curves(table[table["task"] == task], metric)
            for (router, rule), line in part.groupby(["router", "inference_rule"], sort=True):
                colour = palette[router]
                name = router if rule in (router, "fixed", "mode") else f"{router} ({rule})"
                ax.plot(line["step"], line["estimate"], "o-", color=colour, label=name, ms=3)
                ax.fill_between(
                    line["step"], line["ci_low"], line["ci_high"], color=colour, alpha=0.2
                )
                if metric == "spearman":  # name the feature at the end of its line
                    end = line.iloc[-1]
                    ax.annotate(end["feature"], (end["step"], end["estimate"]), fontsize="x-small")
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.set_title(f"{task} · {label}" if col == 0 else label)
            ax.set_xlabel("training step" if row == len(tasks) - 1 else "")
            if metric == "accuracy":
                ax.set_ylim(-0.03, 1.03)
    handles = {}
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(name, handle)
    names = ordered(handles, list(palette))
    legend_ax = axes[0, -1]
    legend_ax.legend([handles[name] for name in names], names)
    return finish(fig, legend_ax)


if __name__ == "__main__":
    sys.exit(figure_cli(draw, REQUIRED))
