"""Decision-timing figure (paper Table 2): what share of each router's explained depth variance
goes to graph size, static structure and execution state.

A panel per population × depth kind (generated order / gold order; executed / expected depth) on
the in-distribution ``test`` split when present: bars of each feature group's Shapley (LMG) share
of R², a colour per router, with bootstrap 95 % intervals; the legend gives each router's R² and
its population (correct samples / tokens). A panel without a regression says why.

Input: ``decision_timing.csv`` of :mod:`anira.analysis.decision_timing`.
"""

from __future__ import annotations

import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from anira.figures.style import figure_cli, panel_grid, router_palette, shown_split

REQUIRED = ["router", "split", "order", "depth", "kind", "term", "estimate", "share"]
REQUIRED += ["share_ci_low", "share_ci_high", "n_examples", "n_tokens"]
GROUP_ORDER = ["size", "structure", "execution"]


def draw(table: pd.DataFrame) -> plt.Figure:
    """Share of explained depth variance per feature group, a bar per router."""
    split = shown_split(table)
    if "grouping" in table:  # the paper's grouping; the moved one is the scorecard's sensitivity
        table = table[table["grouping"] == "paper"]
    table = table[table["split"] == split]
    panels = sorted(table.groupby(["order", "depth"]).groups)
    palette = router_palette(table["router"].unique())
    fig, axes = panel_grid(1, len(panels), sharey=True)
    width = 0.8 / len(palette)
    for ax, (order, depth) in zip(axes.flat, panels, strict=True):
        part = table[(table["order"] == order) & (table["depth"] == depth)]
        for i, router in enumerate(palette):
            rows = part[part["router"] == router]
            lmg = rows[rows["kind"] == "lmg"].set_index("term").reindex(GROUP_ORDER)
            r2 = rows[rows["kind"] == "r2"]
            if r2.empty:
                continue
            n = f"{int(r2['n_examples'].iloc[0])}/{int(r2['n_tokens'].iloc[0])}"
            label = f"{router}: R²={r2['estimate'].iloc[0]:.2f}, n={n}"
            if lmg["share"].isna().all():
                label = f"{router}: no regression, n={n}"
            x = np.arange(len(GROUP_ORDER)) + (i - (len(palette) - 1) / 2) * width
            share = lmg["share"].to_numpy()
            errors = np.abs(lmg[["share_ci_low", "share_ci_high"]].to_numpy().T - share)
            ax.bar(x, np.nan_to_num(share), width, color=palette[router], label=label)
            ax.errorbar(x, share, np.nan_to_num(errors), fmt="none", ecolor="black", lw=0.8)
        ax.set_xticks(np.arange(len(GROUP_ORDER)), GROUP_ORDER)
        ax.set_title(f"{order} order · {depth} depth")
        ax.set_ylabel("share of R²" if ax is axes.flat[0] else "")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize="x-small", loc="upper left")
    fig.suptitle(f"decision timing: correct samples, {split} split (examples/tokens)", y=1.0)
    fig.tight_layout()  # each panel keeps its own legend: R² and n differ per panel
    return fig


if __name__ == "__main__":
    sys.exit(figure_cli(draw, REQUIRED))
