"""Accuracy–compute frontier: does adaptive depth beat fixed-depth models at equal compute?

One row per task × router × inference rule × split (seeds pooled):

- ``accuracy`` of the generated answers with a Wilson 95 % interval (``<split>.examples.parquet``);
- ``token_steps``: mean active token-steps of the core per generated answer token (the mean
  executed depth the model spent on its own answers — the paper's execution compute);
- from a teacher-forced forward pass over (at most ``--max-examples``) examples of the split,
  ``model.flops`` per sequence token: ``head_calls_per_token`` (decision-head evaluations, counted
  apart as in the paper), ``core_flops_per_token``, ``head_flops_per_token``, ``flops_per_token``;
- ``fixed_depth``: a model of the fixed router at any D' (its records' inference rule is
  ``fixed``; an adaptive router that collapsed to one depth is still adaptive), and for the other
  rows ``frontier_accuracy``, the accuracy of the fixed-depth frontier (linear
  between the fixed-depth models of the task and split, sorted by compute) at the row's compute,
  with ``above_frontier`` = accuracy − frontier_accuracy (empty outside the frontier's range);
- ``control``: the router is a matched-compute control of an adaptive router (``random``, or a
  fixed depth at an adaptive router's mean; ``anira.analysis.controls``), named in ``matches``. A
  fixed control is a point of the frontier like any fixed-depth model.

Usage: ``python -m anira.analysis.pareto --out pareto.csv --model CKPT DATA EVAL ...``
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from statsmodels.stats.proportion import proportion_confint

from anira.analysis.records import load_records, run_cli, write_table
from anira.batches import PaddedSplit, set_threads
from anira.dataset import load_split, load_vocab
from anira.inference import load_checkpoint
from anira.io import AniraInputError
from anira.layout import REPORTED_SPLITS
from anira.spec import RunSpec

KEYS = ["task", "router", "inference_rule", "split"]
FLOPS = ("head_calls", "core_flops", "head_flops", "flops")
ONLINE_RULES = ("median", "mode")


@torch.no_grad()
def compute_per_token(model, frame: pd.DataFrame, batch_size: int = 64) -> dict[str, float]:
    """``model.flops`` of a teacher-forced pass over ``frame``, per non-pad token."""
    data = PaddedSplit.from_frame(frame)
    totals = dict.fromkeys(FLOPS, 0.0)
    n_tokens = 0
    for start in range(0, len(data), batch_size):
        tokens, _ = data.batch(np.arange(start, min(start + batch_size, len(data))))
        out = model(tokens)
        for key, value in model.flops(out).items():
            if key in totals:
                totals[key] += value
        n_tokens += int(out.valid.sum())
    return {f"{key}_per_token": value / n_tokens for key, value in totals.items()}


def frontier(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``frontier_accuracy`` / ``above_frontier`` against the fixed-depth models."""
    table = table.assign(frontier_accuracy=np.nan, above_frontier=np.nan)
    for _, group in table.groupby(["task", "split"]):
        fixed = group[group["fixed_depth"]].sort_values("token_steps")
        if len(fixed) < 2:
            continue  # one fixed point is not a frontier
        for index, row in group[~group["fixed_depth"]].iterrows():
            x = row["token_steps"]
            if fixed["token_steps"].min() <= x <= fixed["token_steps"].max():
                level = float(np.interp(x, fixed["token_steps"], fixed["accuracy"]))
                table.loc[index, "frontier_accuracy"] = level
                table.loc[index, "above_frontier"] = row["accuracy"] - level
    return table


def pareto_rows(examples: pd.DataFrame) -> pd.DataFrame:
    """Accuracy and token-steps per task × router × rule × split from the evaluation records."""
    frame = examples.assign(correct=examples["correct"].astype(float))
    rows = frame.groupby(KEYS, sort=True).agg(
        n_seeds=("seed", "nunique"),
        n_examples=("correct", "size"),
        n_correct=("correct", "sum"),
        token_steps=("mean_depth", "mean"),
    )
    rows["fixed_depth"] = rows.index.get_level_values("inference_rule") == "fixed"
    rows["accuracy"] = rows["n_correct"] / rows["n_examples"]
    low, high = proportion_confint(rows["n_correct"], rows["n_examples"], method="wilson")
    # Wilson bounds at 0 or n correct can miss the estimate by rounding (1e-17 above 0).
    rows["ci_low"] = np.minimum(low, rows["accuracy"])
    rows["ci_high"] = np.maximum(high, rows["accuracy"])
    return rows.drop(columns="n_correct").reset_index()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="CSV table to write")
    parser.add_argument(
        "--model", nargs=3, action="append", required=True, metavar=("CKPT", "DATA", "EVAL")
    )
    parser.add_argument("--splits", nargs="+", default=list(REPORTED_SPLITS))
    parser.add_argument("--max-examples", type=int, default=200, help="examples for the FLOPs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    if args.max_examples < 1:
        raise AniraInputError("need --max-examples >= 1")
    set_threads(args.threads)
    eval_dirs = [evaluation for _, _, evaluation in args.model]
    columns = KEYS + ["seed", "example_id", "correct", "mean_depth"]
    examples = load_records(eval_dirs, "examples", args.splits, columns=columns)
    table = pareto_rows(examples)
    compute, matches = {}, {}
    rng = np.random.default_rng(0)
    for index, (ckpt, data_dir, evaluation) in enumerate(args.model, start=1):
        # The FLOPs of the inference rule the evaluation used (online: median or mode).
        used = load_records([evaluation], "examples", args.splits, columns=["inference_rule"])
        rule = used["inference_rule"].iloc[0]
        online_rule = rule if rule in ONLINE_RULES else None
        model, state = load_checkpoint(Path(ckpt), load_vocab(data_dir), online_rule)
        run = RunSpec.from_saved(state["config"])
        key = (run.task, run.router, rule)
        matches[key] = run.match
        for split in args.splits:
            frame = load_split(data_dir, split)
            if frame.empty:
                continue
            if len(frame) > args.max_examples:
                keep = np.sort(rng.choice(len(frame), args.max_examples, replace=False))
                frame = frame.iloc[keep]
            part = compute_per_token(model, frame.reset_index(drop=True))
            compute.setdefault((*key, split), []).append(part)
        print(f"[{index}/{len(args.model)}] {ckpt}: compute measured", flush=True)
    for name in (f"{key}_per_token" for key in FLOPS):
        table[name] = [
            np.mean([c[name] for c in compute.get(key, [])] or [np.nan])
            for key in table[KEYS].itertuples(index=False, name=None)
        ]
    keys = table[KEYS[:3]].itertuples(index=False, name=None)
    table["matches"] = [matches.get(key) for key in keys]
    table["control"] = table["matches"].notna()
    write_table(frontier(table), args.out)


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
