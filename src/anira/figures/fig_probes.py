"""Probe figure: how well a linear probe decodes each task feature after every iteration.

A panel per task × feature (wrapped in rows of ``COLS``): the cross-validated probe score (R² for
ridge, accuracy for logistic probes) against the iteration r = 0 (prelude output) … D, a line per
router with its 95 % band; the control task (labels permuted within token type) dotted; a diamond
right of D marks the score at each token's own halting iteration (adaptive routers).

Input: ``probes.csv`` of :mod:`anira.analysis.probes`.
"""

from __future__ import annotations

import sys

import matplotlib.pyplot as plt
import pandas as pd

from anira.figures.style import figure_cli, finish, router_palette, wrapped_panels

REQUIRED = ["task", "router", "feature", "probe", "labels", "readout", "iteration", "score"]
REQUIRED += ["ci_low", "ci_high"]
COLS = 5
STYLES = {"feature": "-", "control": ":"}


def draw(table: pd.DataFrame) -> plt.Figure:
    """Probe score against iteration, a panel per task feature, a line per router."""
    panels = sorted(table.groupby(["task", "feature"]).groups)
    palette = router_palette(table["router"].unique())
    fig, cells, cols = wrapped_panels(panels, COLS)
    last = table["iteration"].max()
    for ax, (task, feature) in cells:
        part = table[(table["task"] == task) & (table["feature"] == feature)]
        for router, colour in palette.items():
            mine = part[part["router"] == router]
            for labels, style in STYLES.items():
                line = mine[(mine["labels"] == labels) & (mine["readout"] == "iteration")]
                line = line.sort_values("iteration")
                name = router if labels == "feature" else f"{router} (control)"
                ax.plot(line["iteration"], line["score"], style, color=colour, label=name)
                if labels == "feature":
                    ax.fill_between(
                        line["iteration"], line["ci_low"], line["ci_high"], color=colour, alpha=0.15
                    )
            own = mine[(mine["labels"] == "feature") & (mine["readout"] == "own_halt")]
            ax.plot([last + 0.6] * len(own), own["score"], "D", color=colour, markersize=4)
        probe = "accuracy" if (part["probe"] == "logistic").all() else "R²"
        ax.set_title(f"{task}: {feature}")
        ax.set_xlabel("iteration (◆ own halt)")
        ax.set_ylabel(f"probe {probe}")
        ax.set_ylim(bottom=max(-0.2, min(0.0, part["score"].min())))
    legend_ax = cells[cols - 1][0]
    handles, labels = cells[0][0].get_legend_handles_labels()
    legend_ax.legend(handles, labels)
    fig.suptitle("linear probes of the recurrent state (held-out, grouped CV)", y=1.0)
    return finish(fig, legend_ax)


if __name__ == "__main__":
    sys.exit(figure_cli(draw, REQUIRED))
