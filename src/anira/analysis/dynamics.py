"""Training dynamics: accuracy, depth and alignment of the weights kept over training.

Every model trained with ``scale.train.dynamics_checkpoints`` > 0 keeps its weights at
log-spaced steps (``dynamics/step<k>.pt`` in its checkpoint directory, see
:func:`anira.train.dynamics_steps`). Each of them is evaluated as ``anira.evaluate`` evaluates a
model (:func:`anira.inference.evaluate_split`) on the same fixed subset of the ``val`` split
(``--max-examples`` examples drawn with ``--seed``, the same for every step and model of a task),
and the table gives, per task × router × inference rule × step, seeds pooled (tidy, one
``metric`` per row):

- ``accuracy``: share of generated answers the task scores correct, Wilson interval;
- ``mean_depth``: mean executed depth over the answer tokens (teacher-forced, position t − 1 for
  token t, as in the alignment table), percentile bootstrap interval over examples;
- ``depth_entropy``: Shannon entropy in bits of the distribution of that executed depth over the
  answer tokens (0: one depth for every token; log2 D: every depth equally often), same interval;
- ``spearman``: Spearman correlation of expected depth E_q[d] with each task feature, computed by
  the alignment table's code (:func:`anira.analysis.alignment.group_correlations`), with its
  bootstrap interval. ``feature_rank`` orders a router's features by |Spearman| at the last step
  (1 = the task's strongest feature for that router, on ``val``): the figure draws it, but the
  scorecard reads a feature fixed in advance, since a feature picked for its strength on these
  very numbers would pass a test on them almost automatically.

``fraction`` is the step over the model's last step. A constant depth (a fixed router) has no
correlation: empty estimate, no rank.

Usage: ``python -m anira.analysis.dynamics --out dynamics.csv --model CKPT_DIR DATA_DIR ...``
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from anira.analysis.alignment import DEPTHS, bootstrap_weights, example_seeds, group_correlations
from anira.analysis.records import feature_columns, run_cli, sample_examples, write_table
from anira.batches import select_device, set_threads
from anira.dataset import load_split, load_task, load_vocab
from anira.inference import evaluate_split, inference_rule, load_checkpoint
from anira.io import AniraInputError, format_duration, read_manifest
from anira.layout import DYNAMICS_DIR, SPLITS, VAL
from anira.spec import RunSpec

KEYS = ["task", "router", "inference_rule", "step"]
METRICS = ("accuracy", "mean_depth", "depth_entropy", "spearman")
COLUMNS = KEYS + ["fraction", "metric", "feature", "feature_rank", "estimate", "ci_low"]
COLUMNS += ["ci_high", "ci_level", "n_examples", "n_tokens", "n_seeds"]
# Alignment over training: expected depth of the position that emits the token (pairing t − 1).
EXPECTED = {("t-1", "expected"): DEPTHS[("t-1", "expected")]}


def snapshot_names(ckpt: Path) -> list[str]:
    """The training-dynamics weights a checkpoint's manifest lists, in step order."""
    names = [name for name in read_manifest(ckpt) if name.startswith(f"{DYNAMICS_DIR}/")]
    return sorted(names)


def depth_entropy(depths: np.ndarray, weights: np.ndarray) -> float:
    """Entropy in bits of the depth distribution of the sample where depth i occurs
    ``weights[i]`` times (a bootstrap resample without copying it)."""
    _, inverse = np.unique(depths, return_inverse=True)
    counts = np.bincount(inverse, weights=weights)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def depth_rows(answers: pd.DataFrame, n_boot: int, ci: float, seed: int) -> list[dict]:
    """Mean executed depth and its entropy over one group's answer tokens, with percentile
    intervals from resampled examples."""
    examples, seeds = example_seeds(answers)
    depths = answers["executed_depth"].to_numpy(dtype=float)

    def statistics(weights: np.ndarray) -> tuple[float, float]:
        return float(weights @ depths / weights.sum()), depth_entropy(depths, weights)

    point = statistics(np.ones(len(depths)))
    rng = np.random.default_rng(seed)
    reps = np.array([statistics(w) for w in bootstrap_weights(examples, n_boot, rng, seeds)])
    rows = []
    for i, metric in enumerate(("mean_depth", "depth_entropy")):
        low, high = np.quantile(reps[:, i], [(1 - ci) / 2, (1 + ci) / 2])
        rows.append(
            {
                "metric": metric,
                "estimate": point[i],
                "ci_low": min(low, point[i]),
                "ci_high": max(high, point[i]),
            }
        )
    return rows


def dynamics_table(
    examples: pd.DataFrame, tokens: pd.DataFrame, n_boot: int, ci: float, seed: int
) -> pd.DataFrame:
    """The tidy table from the records of every step (``step`` and ``last_step`` columns)."""
    if examples.empty:
        return pd.DataFrame(columns=COLUMNS)
    answers = tokens[tokens["is_answer"].astype(bool)]
    features = feature_columns(answers)
    answer_groups = dict(iter(answers.groupby(KEYS, sort=True)))
    rows = []
    for key, group in examples.groupby(KEYS, sort=True):
        mine = answer_groups[key]
        base = dict(zip(KEYS, key, strict=True))
        base |= {"fraction": key[-1] / group["last_step"].max(), "ci_level": ci}
        base |= {"n_examples": len(group), "n_seeds": group["seed"].nunique()}
        n_correct = int(group["correct"].sum())
        low, high = proportion_confint(n_correct, len(group), 1 - ci, method="wilson")
        accuracy = n_correct / len(group)
        rows.append(
            base
            | {
                "metric": "accuracy",
                "estimate": accuracy,
                "ci_low": min(low, accuracy),
                "ci_high": max(high, accuracy),
            }
        )
        rows += [base | {"n_tokens": len(mine)} | row for row in depth_rows(mine, n_boot, ci, seed)]
        for row in group_correlations(mine, features, n_boot, ci, seed, EXPECTED):
            if row["method"] == "spearman":
                kept = {k: row[k] for k in ("feature", "estimate", "ci_low", "ci_high")}
                rows.append(base | kept | {"metric": "spearman", "n_tokens": row["n_tokens"]})
    table = pd.DataFrame(rows)
    table["feature_rank"] = feature_ranks(table)
    return table.reindex(columns=COLUMNS)


def feature_ranks(table: pd.DataFrame) -> pd.Series:
    """Rank of each Spearman row's feature by |Spearman| at its router's last step (1 = the
    largest); empty where the correlation is undefined there."""
    ranks = pd.Series(np.nan, index=table.index)
    spearman = table[table["metric"] == "spearman"]
    for _, group in spearman.groupby(["task", "router", "inference_rule"]):
        last = group[group["step"] == group["step"].max()].dropna(subset=["estimate"])
        order = last["estimate"].abs().rank(ascending=False, method="first")
        rank = dict(zip(last["feature"], order, strict=True))
        ranks[group.index] = group["feature"].map(rank)
    return ranks


def evaluate_snapshots(
    ckpt: Path, data_dir: Path, split: str, max_examples: int, seed: int, device
) -> Iterator[tuple[int, pd.DataFrame, pd.DataFrame]]:
    """(step, answer-token records, example records) of each kept step of one model."""
    vocab, task = load_vocab(data_dir), load_task(data_dir)
    frame = sample_examples(load_split(data_dir, split), max_examples, seed)
    if frame.empty:
        raise AniraInputError(f"split {split} of {data_dir} holds no examples")
    frame = frame.reset_index(drop=True)
    for name in snapshot_names(ckpt):
        model, state = load_checkpoint(ckpt, vocab, None, name)
        run = RunSpec.from_saved(state["config"])
        meta = {"task": run.task, "router": run.router, "seed": run.seed}
        meta["inference_rule"] = inference_rule(model.cfg)
        tokens, examples, _ = evaluate_split(
            model.to(device),
            task,
            vocab,
            frame,
            meta,
            run.eval_batch_size,
            device,
            sample_seed=[seed, SPLITS.index(split)],
        )
        yield int(state["step"]), tokens[tokens["is_answer"].astype(bool)], examples


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="CSV table to write")
    parser.add_argument(
        "--model",
        nargs=2,
        action="append",
        default=[],
        metavar=("CKPT", "DATA"),
        help="a checkpoint directory with dynamics weights and its dataset (none: empty table)",
    )
    parser.add_argument("--split", default=VAL, choices=SPLITS, help="split evaluated")
    parser.add_argument("--max-examples", type=int, default=200, help="examples per model")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--ci", type=float, default=0.95, help="confidence level")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subset and bootstrap")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    args = parser.parse_args(argv)
    if args.bootstrap < 1 or not 0 < args.ci < 1 or args.max_examples < 2:
        raise AniraInputError("need --bootstrap >= 1, 0 < --ci < 1 and --max-examples >= 2")
    models = [(Path(ckpt), Path(data)) for ckpt, data in args.model]
    counts = {ckpt: len(snapshot_names(ckpt)) for ckpt, _ in models}  # checks every manifest
    empty = [str(ckpt) for ckpt, n in counts.items() if n == 0]
    if empty:
        raise AniraInputError(f"no dynamics weights in {', '.join(empty)}")
    set_threads(args.threads)
    device = select_device(args.device)
    total, done, started = sum(counts.values()), 0, time.perf_counter()
    tokens, examples = [], []
    for ckpt, data_dir in models:
        steps = []
        for step, answer_tokens, example_records in evaluate_snapshots(
            ckpt, data_dir, args.split, args.max_examples, args.seed, device
        ):
            steps.append((step, answer_tokens, example_records))
            done += 1
            rate = done / (time.perf_counter() - started)
            print(
                f"[{done}/{total}] {ckpt} step {step}: accuracy "
                f"{example_records['correct'].mean():.3f} | {rate:.2f} checkpoints/s | "
                f"ETA {format_duration((total - done) / rate)}",
                flush=True,
            )
        last_step = max(step for step, _, _ in steps)  # the run's last step is always kept
        for step, answer_tokens, example_records in steps:
            tokens.append(answer_tokens.assign(step=step, last_step=last_step))
            examples.append(example_records.assign(step=step, last_step=last_step))
    table = dynamics_table(
        pd.concat(examples, ignore_index=True) if examples else pd.DataFrame(),
        pd.concat(tokens, ignore_index=True) if tokens else pd.DataFrame(),
        args.bootstrap,
        args.ci,
        args.seed,
    )
    write_table(table, args.out)


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
