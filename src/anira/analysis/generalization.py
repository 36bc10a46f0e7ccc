"""Generalisation table: accuracy and mean depth per task × router × seed × split × size.

One row per group of the per-example records (``<split>.examples.parquet``):

- ``accuracy``: share of examples whose greedy answer the task scores correct;
- ``tf_accuracy``: share whose every answer token is the teacher-forced argmax;
- ``mean_depth``: mean over examples of the mean *executed* depth over answer tokens;
- ``mean_expected_depth``: the same for the expected depth E_q[d];
- ``n_examples`` and ``mean_answer_tokens``.

Example: two BREVO examples of size 5 in ``interp`` for router ``early``, seed 0, one correct with
mean depth 2.0 and one wrong with mean depth 3.0, give the row
``brevo, early, 0, interp, 5, n_examples=2, accuracy=0.5, mean_depth=2.5``.

Usage: ``python -m anira.analysis.generalization --out generalization.csv EVAL_DIR...``
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import pandas as pd

from anira.analysis.records import base_parser, load_records, run_cli, write_table

KEYS = ["task", "router", "seed", "split", "size"]
COLUMNS = KEYS + [
    "example_id",
    "correct",
    "tf_correct",
    "mean_depth",
    "mean_expected_depth",
    "n_answer_tokens",
]


def generalization_table(examples: pd.DataFrame) -> pd.DataFrame:
    """Aggregate per-example records into the generalisation table (sorted by the keys)."""
    frame = examples.assign(
        correct=examples["correct"].astype(float), tf_correct=examples["tf_correct"].astype(float)
    )
    table = (
        frame.groupby(KEYS, sort=True)
        .agg(
            n_examples=("example_id", "size"),
            accuracy=("correct", "mean"),
            tf_accuracy=("tf_correct", "mean"),
            mean_depth=("mean_depth", "mean"),
            mean_expected_depth=("mean_expected_depth", "mean"),
            mean_answer_tokens=("n_answer_tokens", "mean"),
        )
        .reset_index()
    )
    return table


def main(argv: Sequence[str] | None = None) -> None:
    args = base_parser(__doc__.splitlines()[0]).parse_args(argv)
    examples = load_records(args.eval_dirs, "examples", columns=COLUMNS)
    write_table(generalization_table(examples), args.out)


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
