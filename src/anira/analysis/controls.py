"""Adaptive routers against controls at the same compute: does adaptive depth spend compute where
it helps, or would the same compute spent blindly do as well?

Two controls match an adaptive router A (ANIRA-E or ANIRA-O) of the same task and seed, each
trained like every other router; their router config names A as ``match``:

- ``random`` (kind ``random``): every token's depth is drawn at random from A's executed-depth
  histogram on ``val``, whatever the token (:class:`anira.model.routers.RandomRouter`), so the mean
  and the spread of the compute match A's and its alignment with any feature is 0 by construction;
- fixed at A's mean (kind ``fixed``): every token runs D' = round(mean executed depth of A on
  ``val``) iterations.

``anira.train`` reads A's ``val`` records (:func:`val_depth_histogram`, ``match_records=…``) and
stores the histogram (``router.depth_probs``) or D' (``router.depth``) in the control's run config.

One row per task × adaptive router × control × split (``test`` by default), seeds pooled:

- ``compute_adaptive`` / ``compute_control``: mean executed depth per generated answer token (the
  compute of ``pareto.csv``'s ``token_steps``), and ``max_depth`` (D of the adaptive model);
- ``accuracy_adaptive`` / ``accuracy_control`` and ``difference`` = adaptive − control with a
  percentile bootstrap interval that is **hierarchical** when both have ≥ 2 seeds: seeds are
  resampled, then the examples within each drawn seed (paired: an example's two answers move
  together, both models read the same test set); with one seed, examples only;
- alignment (from ``alignment.csv``: Spearman of *executed* depth, pairing t − 1, answer tokens):
  the adaptive router's strongest feature (largest |ρ|) with its interval, and the control's ρ on
  that feature with its interval (empty for a fixed control, whose depth is constant).

The scorecard (``anira.analysis.scorecard.control_rows``) turns the table into its rows: "adaptive
depth spends compute where it helps" holds for a task and router only if the adaptive router beats
its random control at matched compute (difference interval above 0), gated as every router finding
(depth matters on the task, the router allocates, three seeds).

Usage: ``python -m anira.analysis.controls --out controls.csv --alignment alignment.csv
--model CKPT EVAL ...`` (every model of the study; the controls and the routers they match are
found from the checkpoints' run configs).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from anira.analysis.records import load_records, run_cli, write_table
from anira.io import AniraInputError, verify_manifest
from anira.layout import RUN_CONFIG, TEST, VAL
from anira.spec import RunSpec

# An adaptive router "allocates" when its mean executed depth is at most this share of D (the
# compute-aware selection's target, docs/study.md); above it, a control matches almost fixed D.
COLUMNS = [
    "task",
    "adaptive",
    "control",
    "control_kind",
    "split",
    "n_seeds",
    "n_examples",
    "max_depth",
    "compute_adaptive",
    "compute_control",
    "accuracy_adaptive",
    "accuracy_control",
    "difference",
    "ci_low",
    "ci_high",
    "feature",
    "alignment_adaptive",
    "alignment_adaptive_low",
    "alignment_adaptive_high",
    "alignment_control",
    "alignment_control_low",
    "alignment_control_high",
]


def val_depth_histogram(eval_dir: str | Path, max_depth: int) -> list[float]:
    """P(d) for d = 1..max_depth: the executed depths of an evaluation's ``val`` answer tokens
    (teacher-forced, the position that emits each token), checked against its manifest."""
    tokens = load_records([eval_dir], "tokens", [VAL], columns=["is_answer", "executed_depth"])
    depths = tokens.loc[tokens["is_answer"].astype(bool), "executed_depth"].to_numpy(dtype=int)
    if len(depths) == 0:
        raise AniraInputError(f"{eval_dir} has no val answer tokens to match")
    if depths.min() < 1 or depths.max() > max_depth:
        raise AniraInputError(f"{eval_dir}: executed depths outside 1..{max_depth}")
    counts = np.bincount(depths, minlength=max_depth + 1)[1:]
    return (counts / counts.sum()).tolist()


def matched_setting(kind: str, eval_dir: str | Path, max_depth: int) -> dict:
    """The router settings a control of ``kind`` takes from the adaptive model evaluated in
    ``eval_dir``: a random control its ``depth_probs``, a fixed one ``depth`` = D' (the rounded
    mean; ties round half to even, as Python's ``round``)."""
    probs = val_depth_histogram(eval_dir, max_depth)
    if kind == "random":
        return {"depth_probs": probs}
    if kind == "fixed":
        mean = float(np.dot(np.arange(1, max_depth + 1), probs))
        return {"depth": max(1, round(mean))}
    raise AniraInputError(f"router.match needs a random or fixed router, got {kind}")


def paired_bootstrap(
    differences: list[np.ndarray], n_boot: int, ci: float, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile interval of the mean paired difference over seeds (one array of per-example
    differences per seed): each replicate draws the seeds with replacement (when ≥ 2), then the
    examples within each drawn seed with replacement, independently per draw."""
    n_seeds = len(differences)
    reps = np.zeros(n_boot)
    for _ in range(n_seeds):  # slot k of the replicate's seeds
        seed = rng.integers(n_seeds, size=n_boot) if n_seeds > 1 else np.zeros(n_boot, int)
        means = np.empty((n_seeds, n_boot))
        for s, diff in enumerate(differences):
            means[s] = diff[rng.integers(len(diff), size=(n_boot, len(diff)))].mean(1)
        reps += means[seed, np.arange(n_boot)]
    reps /= n_seeds
    low, high = np.quantile(reps, [(1 - ci) / 2, (1 + ci) / 2])
    return float(low), float(high)


def strongest_alignment(alignment: pd.DataFrame, task, router, control, split) -> dict:
    """The adaptive router's strongest feature (executed depth, pairing t − 1, Spearman) and both
    routers' correlation with it."""
    pick = alignment[
        (alignment["task"] == task)
        & (alignment["split"] == split)
        & (alignment["pairing"] == "t-1")
        & (alignment["depth"] == "executed")
        & (alignment["method"] == "spearman")
    ]
    adaptive = pick[(pick["router"] == router)].dropna(subset=["estimate"])
    if adaptive.empty:
        return {"feature": None}
    best = adaptive.loc[adaptive["estimate"].abs().idxmax()]
    other = pick[(pick["router"] == control) & (pick["feature"] == best["feature"])]
    found = {
        "feature": best["feature"],
        "alignment_adaptive": best["estimate"],
        "alignment_adaptive_low": best["ci_low"],
        "alignment_adaptive_high": best["ci_high"],
    }
    if len(other):
        found |= {
            "alignment_control": other["estimate"].iloc[0],
            "alignment_control_low": other["ci_low"].iloc[0],
            "alignment_control_high": other["ci_high"].iloc[0],
        }
    return found


def controls_table(
    examples: pd.DataFrame,
    models: pd.DataFrame,
    alignment: pd.DataFrame,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per task × adaptive router × control × split. ``examples``: the evaluation records
    (task, router, seed, split, example_id, correct, mean_depth); ``models``: one row per study
    router and task with ``kind``, ``match`` (the router a control matches, else None) and
    ``max_depth``."""
    rows = []
    controls = models[models["match"].notna()]
    for control in controls.itertuples(index=False):
        task, adaptive = control.task, control.match
        target = models[(models["task"] == task) & (models["router"] == adaptive)]
        if target.empty:
            raise AniraInputError(f"{task}/{control.router} matches {adaptive}: no such model")
        for split, part in examples[examples["task"] == task].groupby("split", sort=True):
            a = part[part["router"] == adaptive].set_index(["seed", "example_id"])
            c = part[part["router"] == control.router].set_index(["seed", "example_id"])
            if a.empty or c.empty:
                continue
            both = a.index.intersection(c.index)  # paired: the same seed and example
            a, c = a.loc[both], c.loc[both]
            paired = a["correct"].astype(float) - c["correct"].astype(float)
            seeds = sorted(both.get_level_values("seed").unique())
            diffs = [paired.xs(s, level="seed").to_numpy() for s in seeds]
            rng = np.random.default_rng([seed, len(rows)])
            low, high = paired_bootstrap(diffs, n_boot, ci, rng)
            rows.append(
                {
                    "task": task,
                    "adaptive": adaptive,
                    "control": control.router,
                    "control_kind": control.kind,
                    "split": split,
                    "n_seeds": len(seeds),
                    "n_examples": len(both),
                    "max_depth": int(target["max_depth"].iloc[0]),
                    "compute_adaptive": a["mean_depth"].mean(),
                    "compute_control": c["mean_depth"].mean(),
                    "accuracy_adaptive": a["correct"].astype(float).mean(),
                    "accuracy_control": c["correct"].astype(float).mean(),
                    "difference": float(np.mean([d.mean() for d in diffs])),
                    "ci_low": low,
                    "ci_high": high,
                    **strongest_alignment(alignment, task, adaptive, control.router, split),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def model_spec(ckpt: str | Path) -> RunSpec:
    """The run spec a checkpoint directory's config holds (checked against its manifest)."""
    verify_manifest(ckpt, [RUN_CONFIG])
    config = OmegaConf.to_container(OmegaConf.load(Path(ckpt) / RUN_CONFIG), resolve=True)
    return RunSpec.from_saved(config)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="CSV table to write")
    parser.add_argument("--alignment", required=True, help="alignment.csv of the same models")
    parser.add_argument(
        "--model", nargs=2, action="append", required=True, metavar=("CKPT", "EVAL")
    )
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--ci", type=float, default=0.95, help="confidence level")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--splits", nargs="+", default=[TEST])
    args = parser.parse_args(argv)
    if args.bootstrap < 1 or not 0 < args.ci < 1:
        raise AniraInputError("need --bootstrap >= 1 and 0 < --ci < 1")
    try:
        alignment = pd.read_csv(args.alignment)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise AniraInputError(f"cannot read table {args.alignment}: {err}") from err
    specs = [model_spec(ckpt) for ckpt, _ in args.model]
    models = pd.DataFrame(
        [
            {
                "task": spec.task,
                "router": spec.router,
                "kind": spec.model.router,
                "match": spec.match,
                "max_depth": spec.model.max_depth,
            }
            for spec in specs
        ]
    ).drop_duplicates(["task", "router"])
    columns = ["task", "router", "seed", "split", "example_id", "correct", "mean_depth"]
    eval_dirs = [evaluation for _, evaluation in args.model]
    examples = load_records(eval_dirs, "examples", args.splits, columns=columns)
    table = controls_table(examples, models, alignment, args.bootstrap, args.ci, args.seed)
    write_table(table, args.out)


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
