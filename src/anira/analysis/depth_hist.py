"""Depth histogram table: how often each executed depth occurs on answer tokens.

One row per task × router × split × depth, pooled over seeds: ``n_tokens`` answer tokens ran that
many iterations of the core, ``fraction`` is their share of the group's answer tokens (the
fractions of a group sum to 1). Depths that never occur are omitted.

Example: answer tokens with executed depths ``[1, 1, 3, 6]`` give rows ``depth=1, n_tokens=2,
fraction=0.5``, ``depth=3, n_tokens=1, fraction=0.25`` and ``depth=6, n_tokens=1,
fraction=0.25``.

Usage: ``python -m anira.analysis.depth_hist --out depth_hist.csv EVAL_DIR...``
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import pandas as pd

from anira.analysis.records import base_parser, load_records, run_cli, write_table

GROUP = ["task", "router", "split"]


def depth_hist_table(tokens: pd.DataFrame) -> pd.DataFrame:
    """Counts and fractions of executed depth over answer tokens per task × router × split."""
    answers = tokens[tokens["is_answer"].astype(bool)]
    counts = (
        answers.groupby(GROUP + ["executed_depth"], sort=True)
        .size()
        .rename("n_tokens")
        .reset_index()
        .rename(columns={"executed_depth": "depth"})
    )
    counts["depth"] = counts["depth"].astype(int)
    counts["fraction"] = counts["n_tokens"] / counts.groupby(GROUP)["n_tokens"].transform("sum")
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    args = base_parser(__doc__.splitlines()[0]).parse_args(argv)
    columns = GROUP + ["is_answer", "executed_depth"]
    tokens = load_records(args.eval_dirs, "tokens", columns=columns)
    write_table(depth_hist_table(tokens), args.out)


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
