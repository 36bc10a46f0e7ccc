"""Probes of the recurrent state: after which iteration is each task feature linearly decodable?

For every model, teacher-forced on held-out examples (the ``test`` split by default, at most
``--max-examples`` of them, drawn with a fixed seed), the state of the position that **emits**
each answer token (position t−1 for token t, the position whose depth the alignment tables report)
is read after every iteration r = 0 (the prelude output, all the early router sees) … D, with
``forward(..., return_states=True)``. A linear probe per task feature and iteration predicts the
feature of the emitted token from that state:

- ridge regression (``RidgeCV`` on standardised states, its penalty chosen inside each training
  fold) scored by R² for numeric features; logistic regression scored by accuracy for 0/1 ones;
- out-of-fold predictions from ``GroupKFold`` by example (tokens of one example never straddle
  train and test), pooled over seeds (each seed's states get their own probes);
- a **control task** (``labels=control``, Hewitt & Liang, 2019): every type of the token *at the
  probed position* (position t − 1, whose state is read) gets one random label, drawn from the
  feature's empirical distribution and fixed across examples (:func:`control_labels`); a probe
  that scores well on it memorises token identity, not the feature. ``selectivity`` = task score
  − control score;
- ``readout=own_halt`` (adaptive routers): each token scored by the probe of its own halting
  iteration d_t instead of one iteration for all — near the ``iteration=D`` score when a token
  stops once its feature is decodable there.

Intervals: percentile bootstrap over (seed, example) of the pooled out-of-fold predictions.

Usage: ``python -m anira.analysis.probes --out probes.csv --model CKPT_DIR DATA_DIR ...``
"""

from __future__ import annotations

import argparse
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from anira.analysis.alignment import bootstrap_weights
from anira.analysis.records import run_cli, sample_examples, write_table
from anira.batches import PaddedSplit, set_threads
from anira.dataset import load_split, load_vocab
from anira.inference import inference_rule, load_checkpoint
from anira.io import AniraInputError
from anira.layout import TEST
from anira.spec import RunSpec

RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0)
KEYS = ["task", "router", "inference_rule", "feature", "probe", "labels", "readout", "iteration"]
COLUMNS = KEYS + ["score", "ci_low", "ci_high", "selectivity", "ci_level"]
COLUMNS += ["n_tokens", "n_examples", "n_seeds"]


def is_binary(values: np.ndarray) -> bool:
    return set(np.unique(values)) <= {0.0, 1.0}


def make_probe(binary: bool):
    """Logistic regression for a 0/1 feature, ridge (penalty by internal CV) otherwise."""
    head = LogisticRegression(max_iter=1000) if binary else RidgeCV(alphas=RIDGE_ALPHAS)
    return make_pipeline(StandardScaler(), head)


def out_of_fold(states: np.ndarray, labels: np.ndarray, groups: np.ndarray, folds: int):
    """Out-of-fold predictions [iterations, tokens] of one probe per iteration of ``states``
    ([tokens, iterations, width]), folds grouped by ``groups``."""
    binary = is_binary(labels)
    splitter = GroupKFold(n_splits=min(folds, len(np.unique(groups))))
    return np.stack(
        [
            cross_val_predict(make_probe(binary), states[:, r], labels, groups=groups, cv=splitter)
            for r in range(states.shape[1])
        ]
    )


def weighted_scores(y: np.ndarray, pred: np.ndarray, weights: np.ndarray, binary: bool):
    """R² (or accuracy for 0/1 labels) of ``pred`` [..., tokens] under token ``weights``
    [n, tokens]: an array [n, ...]."""
    total = weights.sum(-1)
    if binary:
        return np.einsum("nt,...t->n...", weights, (pred == y).astype(float)) / total[:, None]
    mean = weights @ y / total
    residual = np.einsum("nt,...t->n...", weights, (y - pred) ** 2)
    spread = (weights * (y[None] - mean[:, None]) ** 2).sum(-1)
    spread = np.where(spread > 0, spread, np.nan)  # a resample with one label value: undefined
    return 1.0 - residual / spread[:, None]


def control_labels(labels: np.ndarray, token_types: np.ndarray, key: Sequence[int]) -> np.ndarray:
    """Hewitt & Liang's control task: one random label per token type, drawn from the empirical
    distribution of ``labels`` by a generator seeded with ``key`` and the type's name, so a type
    keeps its label across examples (and models) whatever else occurs with it."""
    values, counts = np.unique(labels, return_counts=True)
    label_of = {
        token: rng.choice(values, p=counts / counts.sum())
        for token in np.unique(token_types)
        for rng in [np.random.default_rng([*key, zlib.crc32(str(token).encode())])]
    }
    return np.array([label_of[token] for token in token_types], dtype=labels.dtype)


def control_predictions(states: np.ndarray, control: np.ndarray, groups: np.ndarray, folds: int):
    """Out-of-fold predictions of the control probes; a control with one label (or a 0/1 class
    too rare for every fold to see it) is predicted by its majority label, as a probe would."""
    values, counts = np.unique(control, return_counts=True)
    if len(values) < 2 or (is_binary(control) and counts.min() < folds):
        return np.full((states.shape[1], len(control)), values[np.argmax(counts)], dtype=float)
    return out_of_fold(states, control, groups, folds)


@torch.no_grad()
def collect_states(model, frame: pd.DataFrame, batch_size: int = 64):
    """States [answer tokens, D+1, width] of the emitting positions, their depth, the emitted
    token, the example and every ``f_`` feature of the emitted token."""
    data = PaddedSplit.from_frame(frame)
    features = [c for c in frame.columns if c.startswith("f_")]
    states, rows = [], []
    for start in range(0, len(data), batch_size):
        idx = np.arange(start, min(start + batch_size, len(data)))
        tokens, mask = data.batch(idx)
        out = model(tokens, return_states=True)
        stacked = torch.stack(out.states, dim=2)  # [B, T, D+1, width]
        for b, i in enumerate(idx):
            record = frame.iloc[i]
            positions = np.flatnonzero(mask[b].numpy())
            positions = positions[positions >= 1]
            states.append(stacked[b, positions - 1].float().numpy())
            part = {
                "example_id": record["id"],
                "token": np.asarray(record["token_str"], dtype=object)[positions],
                # the token at the probed (emitting) position: the control task's type
                "probed": np.asarray(record["token_str"], dtype=object)[positions - 1],
                "depth": out.depth[b, positions - 1].numpy(),
            }
            for name in features:
                part[name] = np.asarray(record[name], dtype=float)[positions]
            rows.append(pd.DataFrame(part))
    return np.concatenate(states), pd.concat(rows, ignore_index=True)


def model_predictions(ckpt: Path, data_dir: Path, args) -> tuple[dict, list[dict]]:
    """Out-of-fold predictions of every feature's probes (and controls) for one model."""
    vocab = load_vocab(data_dir)
    model, state = load_checkpoint(ckpt, vocab, args.inference_rule)
    frame = sample_examples(load_split(data_dir, args.split), args.max_examples, args.seed)
    states, tokens = collect_states(model, frame.reset_index(drop=True))
    run = RunSpec.from_saved(state["config"])
    meta = {
        "task": run.task,
        "router": run.router,
        "adaptive": model.cfg.router != "fixed",  # fixed-depth baselines (any D') never halt early
        "inference_rule": inference_rule(model.cfg),
        "seed": run.seed,
    }
    results = []
    for feature in (c for c in tokens.columns if c.startswith("f_")):
        defined = tokens[feature].notna().to_numpy()
        labels = tokens.loc[defined, feature].to_numpy()
        groups = tokens.loc[defined, "example_id"].to_numpy()
        if len(np.unique(groups)) < 2 or len(np.unique(labels)) < 2:
            continue  # undefined here, or constant: nothing to decode
        if is_binary(labels) and np.bincount(labels.astype(int)).min() < args.folds:
            continue  # too rare a class for every fold to see it
        key = [args.seed, zlib.crc32(feature.encode())]
        control = control_labels(labels, tokens.loc[defined, "probed"].to_numpy(), key)
        results.append(
            meta
            | {
                "feature": feature.removeprefix("f_"),
                "labels": labels,
                "examples": groups,
                "depth": tokens.loc[defined, "depth"].to_numpy(),
                "feature_pred": out_of_fold(states[defined], labels, groups, args.folds),
                "control_pred": control_predictions(states[defined], control, groups, args.folds),
                "control_labels": control,
            }
        )
    return meta, results


def score_rows(parts: list[dict], n_boot: int, ci: float, seed: int) -> list[dict]:
    """Rows of one task × router × feature: pooled over the seeds in ``parts``."""
    y = np.concatenate([p["labels"] for p in parts])
    examples = np.concatenate([[f"{p['seed']}/{e}" for e in p["examples"]] for p in parts])
    example_index, uniques = pd.factorize(examples)
    seeds = [name.split("/", 1)[0] for name in uniques]
    depth = np.concatenate([p["depth"] for p in parts])
    binary = is_binary(y)
    readouts = [("iteration", r) for r in range(parts[0]["feature_pred"].shape[0])]
    if parts[0]["adaptive"]:
        readouts.append(("own_halt", np.nan))
    rng = np.random.default_rng(seed)
    boot = np.stack(list(bootstrap_weights(example_index, n_boot, rng, seeds)))
    scores = {}
    for labels in ("feature", "control"):
        target = y if labels == "feature" else np.concatenate([p["control_labels"] for p in parts])
        pred = np.concatenate([p[f"{labels}_pred"] for p in parts], axis=1)
        own = pred[depth, np.arange(len(y))]  # each token read at its own halting iteration
        stacked = np.concatenate([pred, own[None]])[: len(readouts)]
        point = weighted_scores(target, stacked, np.ones((1, len(y))), binary)[0]
        bounds = np.nanquantile(
            weighted_scores(target, stacked, boot, binary), [(1 - ci) / 2, (1 + ci) / 2], axis=0
        )
        scores[labels] = (point, *bounds)
    base = {key: parts[0][key] for key in ("task", "router", "inference_rule", "feature")}
    base |= {
        "probe": "logistic" if binary else "ridge",
        "ci_level": ci,
        "n_tokens": len(y),
        "n_examples": int(example_index.max()) + 1,
        "n_seeds": len({p["seed"] for p in parts}),
    }
    rows = []
    for labels, (point, low, high) in scores.items():
        for k, (readout, iteration) in enumerate(readouts):
            row = {"labels": labels, "readout": readout, "iteration": iteration}
            row |= {"score": point[k], "ci_low": low[k], "ci_high": high[k]}
            if labels == "feature":
                row["selectivity"] = point[k] - scores["control"][0][k]
            rows.append(base | row)
    return rows


def probes_table(predictions: list[dict], n_boot: int, ci: float, seed: int) -> pd.DataFrame:
    grouped: dict[tuple, list[dict]] = {}
    for part in predictions:
        key = (part["task"], part["router"], part["inference_rule"], part["feature"])
        grouped.setdefault(key, []).append(part)
    rows = [row for key in sorted(grouped) for row in score_rows(grouped[key], n_boot, ci, seed)]
    return pd.DataFrame(rows, columns=COLUMNS)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="CSV table to write")
    parser.add_argument(
        "--model", nargs=2, action="append", required=True, metavar=("CKPT_DIR", "DATA_DIR")
    )
    parser.add_argument("--split", default=TEST, help="held-out split the probes read")
    parser.add_argument("--max-examples", type=int, default=300, help="examples per model")
    parser.add_argument("--folds", type=int, default=5, help="GroupKFold folds")
    parser.add_argument("--inference-rule", default=None, help="online rule: median or mode")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--ci", type=float, default=0.95, help="confidence level")
    parser.add_argument("--seed", type=int, default=0, help="seed of subsampling and bootstrap")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    if args.bootstrap < 1 or not 0 < args.ci < 1 or args.folds < 2 or args.max_examples < 2:
        raise AniraInputError(
            "need --bootstrap >= 1, 0 < --ci < 1, --folds >= 2, --max-examples >= 2"
        )
    set_threads(args.threads)
    predictions = []
    for index, (ckpt, data_dir) in enumerate(args.model, start=1):
        meta, parts = model_predictions(Path(ckpt), Path(data_dir), args)
        print(f"[{index}/{len(args.model)}] {meta}: {len(parts)} features probed", flush=True)
        predictions += parts
    write_table(probes_table(predictions, args.bootstrap, args.ci, args.seed), args.out)


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
