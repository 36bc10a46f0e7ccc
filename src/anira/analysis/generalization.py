"""Generalisation table: accuracy and mean depth per task × router × seed × split × size.

One row per group of the per-example records (``<split>.examples.parquet``):

- ``accuracy``: share of examples whose greedy answer the task scores correct;
- ``tf_accuracy``: share whose every answer token is the teacher-forced argmax;
- ``mean_depth``: mean over examples of the mean *executed* depth over answer tokens;
- ``mean_expected_depth``: the same for the expected depth E_q[d];
- ``n_examples`` and ``mean_answer_tokens``.

Tasks scored by sampling (LANO: one temperature-1 sample per example from the shared prompt,
see :mod:`anira.evaluate`) add, and leave NaN for the others:

- ``accuracy`` is then the share of samples in the language;
- ``distinct_share``: distinct samples / samples; ``length_tv``: total-variation distance between
  the sampled length distribution and the grammar's exact one (a sample without ``<eos>`` is a bin
  of its own, of grammar probability 0), computed from each sample's length and its grammar
  probability ``length_prob`` as ½·Σ_seen |p̂(m) − p(m)| + ½·(1 − Σ_seen p(m));
- ``completion_quarter`` / ``completion_half``: share of gold prefixes (¼, ½ of the string)
  whose sampled completion is in the language;
- ``mean_kl_bits``: mean over examples of the per-token KL(grammar ‖ model) on the gold string;
- ``token_best_match``: mean share of answer tokens predicted (teacher-forced argmax) equal to
  the grammar's unique most likely next token.

Per-size rows hold few samples; ``--generative OUT`` also writes the same columns pooled over the
sizes of each split (one row per task × router × seed × split), the per-model figures.

Example: two BREVO examples of size 5 in ``interp`` for router ``early``, seed 0, one correct with
mean depth 2.0 and one wrong with mean depth 3.0, give the row
``brevo, early, 0, interp, 5, n_examples=2, accuracy=0.5, mean_depth=2.5``.

Usage: ``python -m anira.analysis.generalization --out generalization.csv
[--generative generative.csv] EVAL_DIR...``
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
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


SAMPLED_MEANS = ("completion_quarter", "completion_half", "mean_kl_bits", "token_best_match")
SAMPLED_COLUMNS = ("ended", "sample_length", "length_prob", *SAMPLED_MEANS)


def length_tv(group: pd.DataFrame) -> float:
    """Total-variation distance between the sampled lengths of ``group`` and the grammar's."""
    if "ended" not in group or group["ended"].isna().all():
        return np.nan
    bins = np.where(group["ended"].astype(bool), group["sample_length"], -1)
    share = pd.Series(bins).value_counts(normalize=True)
    prob = pd.Series(group["length_prob"].to_numpy(), index=bins).groupby(level=0).first()
    prob = prob.reindex(share.index)
    return float(0.5 * (share - prob).abs().sum() + 0.5 * (1.0 - prob.sum()))


def generative_columns(group: pd.DataFrame) -> pd.Series:
    """The sampled-answer columns of one group (NaN for tasks scored greedily)."""
    sampled = "ended" in group and not group["ended"].isna().all()
    values = {
        "distinct_share": group["generated"].nunique() / len(group) if sampled else np.nan,
        "length_tv": length_tv(group),
    }
    for name in SAMPLED_MEANS:
        values[name] = group[name].astype(float).mean() if name in group else np.nan
    return pd.Series(values)


def generalization_table(examples: pd.DataFrame, keys: Sequence[str] = KEYS) -> pd.DataFrame:
    """Aggregate per-example records into the generalisation table (sorted by the keys)."""
    frame = examples.assign(
        correct=examples["correct"].astype(float), tf_correct=examples["tf_correct"].astype(float)
    )
    grouped = frame.groupby(list(keys), sort=True)
    table = grouped.agg(
        n_examples=("example_id", "size"),
        accuracy=("correct", "mean"),
        tf_accuracy=("tf_correct", "mean"),
        mean_depth=("mean_depth", "mean"),
        mean_expected_depth=("mean_expected_depth", "mean"),
        mean_answer_tokens=("n_answer_tokens", "mean"),
    ).reset_index()
    generative = grouped[frame.columns.tolist()].apply(generative_columns).reset_index()
    return table.merge(generative, on=list(keys), how="left")


def main(argv: Sequence[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--generative", help="also write the per-split table pooled over sizes")
    args = parser.parse_args(argv)
    examples = load_records(args.eval_dirs, "examples", columns=COLUMNS)
    extra = load_records(args.eval_dirs, "examples")  # sampled-answer columns, where present
    for name in ("generated", *SAMPLED_COLUMNS):
        examples[name] = extra.get(name, np.nan)
    write_table(generalization_table(examples), args.out)
    if args.generative:
        pooled = generalization_table(examples, [k for k in KEYS if k != "size"])
        write_table(pooled, args.generative)


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
