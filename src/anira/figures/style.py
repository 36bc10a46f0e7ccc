"""The shared look of every figure, and byte-deterministic saving.

``apply_style()`` sets one seaborn theme for all figures; ``ROUTER_ORDER``/``router_palette`` keep a
router's colour the same in every figure. ``save(fig, paths)`` writes each path atomically in the
format of its extension with fixed metadata: matplotlib otherwise stamps PDFs with a creation date
and both formats with its version, so two renders of the same table would differ.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from anira.io import AniraInputError, atomic_path, report_input_error  # noqa: E402
from anira.layout import EXTRAP, INTERP, REPORTED_SPLITS, TEST, TRAIN  # noqa: E402

ROUTER_ORDER = ["fixed", "early", "online", "act", "expert_choice"]
SPLIT_ORDER = [TRAIN, *REPORTED_SPLITS]
SPLIT_LABELS = {
    TRAIN: "train",
    TEST: "in-distribution",
    INTERP: "interpolation",
    EXTRAP: "extrapolation",
}
PANEL_SIZE = (3.2, 2.6)  # inches per panel
DPI = 150
_UMASK = os.umask(0)
os.umask(_UMASK)
METADATA = {
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None},
    "png": {"Software": None},
}


def apply_style() -> None:
    """The seaborn theme shared by every figure."""
    sns.set_theme(context="paper", style="whitegrid", font="DejaVu Sans", font_scale=1.0)
    plt.rcParams.update(
        {
            "figure.dpi": DPI,
            "savefig.dpi": DPI,
            "axes.titlesize": "medium",
            "legend.frameon": False,
            "pdf.compression": 6,
            "svg.hashsalt": "anira",
        }
    )


def shown_split(table: pd.DataFrame) -> str:
    """The split a one-split figure shows: ``test``, else the first split the table has."""
    return TEST if (table["split"] == TEST).any() else sorted(table["split"].unique())[0]


def ordered(values: Iterable[str], order: Sequence[str]) -> list[str]:
    """``values`` (unique) in ``order`` first, then any others alphabetically."""
    values = set(values)
    return [v for v in order if v in values] + sorted(values - set(order))


def router_palette(routers: Iterable[str]) -> dict[str, tuple]:
    """A colour per router, fixed by its slot in ROUTER_ORDER (other routers follow)."""
    names = ordered(routers, ROUTER_ORDER)
    slots = ROUTER_ORDER + [name for name in names if name not in ROUTER_ORDER]
    colours = sns.color_palette("colorblind", len(slots))
    return {name: colours[slots.index(name)] for name in names}


def panel_grid(rows: int, cols: int, **kwargs) -> tuple[plt.Figure, np.ndarray]:
    """A ``rows`` × ``cols`` grid of panels of the shared size (axes always 2-D)."""
    size = (PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows)
    return plt.subplots(rows, cols, figsize=size, squeeze=False, **kwargs)


def wrapped_panels(
    panels: Sequence[Any], max_cols: int
) -> tuple[plt.Figure, list[tuple[plt.Axes, Any]], int]:
    """One panel per item of ``panels``, wrapped in rows of at most ``max_cols``; the unused
    cells of the last row hidden. Returns the figure, (axes, item) pairs and the column count."""
    cols = min(max_cols, len(panels))
    fig, axes = panel_grid(math.ceil(len(panels) / cols), cols)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    return fig, list(zip(axes.flat, panels, strict=False)), cols


def finish(fig: plt.Figure, legend_ax: plt.Axes) -> plt.Figure:
    """Move ``legend_ax``'s legend outside the grid, to its right, and tighten the layout."""
    if legend_ax.get_legend() is not None:
        legend_ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    fig.tight_layout()
    return fig


def save(fig: plt.Figure, paths: Sequence[str | os.PathLike]) -> None:
    """Write ``fig`` to every path (format from the extension), atomically and reproducibly."""
    for path in paths:
        fmt = Path(path).suffix.lstrip(".").lower()
        if fmt not in METADATA:
            raise AniraInputError(f"unsupported figure format {path!r}: use .pdf or .png")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, metadata=METADATA[fmt], bbox_inches="tight")
            tmp.chmod(0o666 & ~_UMASK)  # a shareable file, not mkstemp's private 0600
    plt.close(fig)


def read_table(path: str | os.PathLike, required: Sequence[str]) -> pd.DataFrame:
    """Read a CSV table and check it has the columns a figure needs."""
    path = Path(path)
    if not path.is_file():
        raise AniraInputError(f"table not found: {path}")
    table = pd.read_csv(path)
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise AniraInputError(f"{path} lacks columns {missing}")
    if table.empty:
        raise AniraInputError(f"{path} has no rows")
    return table


def figure_cli(draw: Callable[[pd.DataFrame], plt.Figure], required: Sequence[str]) -> int:
    """Parse ``TABLE --out PATH...``, draw the figure and save it; errors as one line."""
    parser = argparse.ArgumentParser(description=(draw.__doc__ or "").splitlines()[0])
    parser.add_argument("table", help="CSV table from anira.analysis")
    parser.add_argument("--out", nargs="+", required=True, help="output files (.pdf, .png)")
    args = parser.parse_args()
    try:
        apply_style()
        save(draw(read_table(args.table, required)), args.out)
    except AniraInputError as err:
        return report_input_error(err)
    return 0
