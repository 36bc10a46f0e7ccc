"""Alignment table (paper Table 1): correlation of per-token depth with each complexity feature.

For every task × router × split, over the **answer tokens** of all seeds, and for each feature
column ``f_<feature>`` of the per-token records and each depth kind (``executed`` = the depth the
model ran, ``expected`` = E_q[d] under the router's distribution), the table gives

- ``spearman``: Pearson correlation of the average ranks (ties share their mean rank), and
  ``pearson``: the plain linear correlation, on the tokens where the feature is defined;
- ``pairing``: which depth token t is paired with. ``t-1`` (the one every other table, the
  figures and the paper comparison of the scorecard use): the depth of position t − 1, the
  computation that emitted token t; ``t``: the depth of position t itself, the computation that
  reads token t (the ``*_depth_at_t`` records). For LANO the two answer different questions — does
  the model think longer *before* writing a token that opens constituents, or *after* reading it —
  and the paper does not say which its Table 1 used;
- ``n_tokens``, ``n_examples``, ``n_seeds``: the population the estimate is computed on;
- ``ci_low``, ``ci_high``: a percentile bootstrap interval that resamples **seeds, then examples**
  within each seed drawn (with all their tokens; :func:`bootstrap_weights`): tokens of one example
  are not independent, and models of different training seeds differ more than the example noise
  of one model says (one seed: examples only; ``n_seeds`` says which).

Correlations with a constant column (e.g. the fixed router, whose depth is always D) are undefined
and written as empty cells with their ``n``.

Worked example: depths ``[1, 2, 2, 3]`` against a feature ``[0, 1, 1, 5]`` have ranks
``[1, 2.5, 2.5, 4]`` each, so Spearman = 1.0; Pearson = 0.89.

A second table, the *curves*, gives the mean depth (pairing ``t-1``) for each value of each
feature (a feature with more than ``--max-bins`` distinct values is cut into that many quantile
bins, each placed at the mean feature value inside it) — the data of ``fig_alignment``.

Usage: ``python -m anira.analysis.alignment --out alignment.csv --curves curves.csv EVAL_DIR...``
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from anira.analysis.records import (
    base_parser,
    feature_columns,
    load_records,
    run_cli,
    write_table,
)
from anira.io import AniraInputError
from anira.layout import REPORTED_SPLITS

# (pairing, depth kind) → record column; the pairing is the position whose depth token t gets.
DEPTHS = {
    ("t-1", "executed"): "executed_depth",
    ("t-1", "expected"): "expected_depth",
    ("t", "executed"): "executed_depth_at_t",
    ("t", "expected"): "expected_depth_at_t",
}
METHODS = ("spearman", "pearson")
GROUP = ["task", "router", "split"]
COLUMNS = GROUP + ["seed", "example_id", "is_answer", *DEPTHS.values(), "f_*"]


def rank_codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """The position of each value among the distinct values, sorted, and how many there are: all
    that :func:`weighted_ranks` needs of ``values``, so a bootstrap sorts each column once."""
    unique, inverse = np.unique(values, return_inverse=True)
    return inverse, len(unique)


def weighted_ranks(
    values: np.ndarray, weights: np.ndarray, codes: tuple[np.ndarray, int] | None = None
) -> np.ndarray:
    """Average ranks of ``values`` in the sample where value i occurs ``weights[i]`` times.

    With unit weights these are the usual ranks (ties get their mean rank), so that the weighted
    correlation of ranks is Spearman's rho; with integer weights they equal the ranks of the sample
    with each value repeated ``weights[i]`` times — a bootstrap resample without copying it.
    ``codes`` is ``rank_codes(values)`` when already known.
    """
    inverse, n_unique = rank_codes(values) if codes is None else codes
    total = np.bincount(inverse, weights=weights, minlength=n_unique)
    before = np.cumsum(total) - total
    return (before + (total + 1.0) / 2.0)[inverse]


def weighted_pearson(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    """Pearson correlation of ``x`` and ``y`` where pair i counts ``weights[i]`` times."""
    total = weights.sum()
    if total <= 0:
        return float("nan")
    dx = x - (weights @ x) / total
    dy = y - (weights @ y) / total
    sxx = weights @ (dx * dx)
    syy = weights @ (dy * dy)
    scale = np.sqrt(sxx * syy)
    if not scale > 1e-12 * max(1.0, total):
        return float("nan")
    return float(np.clip((weights @ (dx * dy)) / scale, -1.0, 1.0))


def bootstrap_weights(
    example_index: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
    example_seeds: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """Token weights of ``n_boot`` resamples of examples: a token counts as often as its example.

    ``example_index[i]`` is the example (0..n-1) of token i. Without ``example_seeds`` each resample
    draws n examples with replacement. With ``example_seeds`` (the training seed of each example
    0..n-1) and two or more seeds, the resample is **hierarchical**: it draws the seeds with
    replacement, then for each seed drawn its examples with replacement, so the interval carries
    the seed-to-seed (training-run) variation as well as the example noise. Yields one weight
    vector at a time, so memory stays O(tokens).
    """
    n_examples = int(example_index.max()) + 1
    seeds = np.zeros(n_examples, dtype=int)
    if example_seeds is not None:
        seeds = pd.factorize(np.asarray(example_seeds))[0]
    members = [np.flatnonzero(seeds == s) for s in range(int(seeds.max()) + 1)]
    for _ in range(n_boot):
        if len(members) == 1:
            draws = rng.integers(0, n_examples, n_examples)
        else:
            picked = rng.integers(0, len(members), len(members))
            draws = np.concatenate([rng.choice(members[s], len(members[s])) for s in picked])
        counts = np.bincount(draws, minlength=n_examples)
        yield counts[example_index].astype(float)


def example_seeds(tokens: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(example index of each token, seed of each example) of token records keyed by
    (seed, example_id): the arguments of :func:`bootstrap_weights`."""
    index, uniques = pd.factorize(pd.MultiIndex.from_frame(tokens[["seed", "example_id"]]))
    return index, uniques.get_level_values(0).to_numpy()


def _estimates(
    x: np.ndarray,
    depths: dict[tuple, np.ndarray],
    weights: np.ndarray,
    codes: list[tuple[np.ndarray, int]] | None = None,
) -> np.ndarray:
    """[depth kind, method] correlations of feature ``x`` with each depth under ``weights``;
    ``codes``: the :func:`rank_codes` of ``x`` and then of each depth, when already known."""
    codes = codes or [rank_codes(values) for values in (x, *depths.values())]
    x_ranks = weighted_ranks(x, weights, codes[0])
    out = np.empty((len(depths), len(METHODS)))
    for i, y in enumerate(depths.values()):
        out[i, 0] = weighted_pearson(x_ranks, weighted_ranks(y, weights, codes[i + 1]), weights)
        out[i, 1] = weighted_pearson(x, y, weights)
    return out


def group_correlations(
    tokens: pd.DataFrame,
    features: Sequence[str],
    n_boot: int,
    ci: float,
    seed: int,
    depths: dict[tuple[str, str], str] = DEPTHS,
) -> list[dict]:
    """The correlation rows of one task × router × split (answer tokens only), for each
    (pairing, depth kind) → column of ``depths``."""
    rows = []
    examples, seeds = example_seeds(tokens)
    for feature in features:
        defined = tokens[feature].notna().to_numpy()
        if not defined.any():
            continue  # a feature of another task
        x = tokens.loc[defined, feature].to_numpy(dtype=float)
        ys = {k: tokens.loc[defined, c].to_numpy(dtype=float) for k, c in depths.items()}
        kept, example_index = np.unique(examples[defined], return_inverse=True)
        codes = [rank_codes(values) for values in (x, *ys.values())]
        estimate = _estimates(x, ys, np.ones(len(x)), codes)
        # One RNG stream per feature, so adding a feature never changes another's interval.
        rng = np.random.default_rng([seed, zlib.crc32(feature.encode())])
        weights = bootstrap_weights(example_index, n_boot, rng, seeds[kept])
        reps = np.stack([_estimates(x, ys, w, codes) for w in weights])
        base = {
            "feature": feature.removeprefix("f_"),
            "n_tokens": len(x),
            "n_examples": int(example_index.max()) + 1,
            "n_seeds": int(tokens.loc[defined, "seed"].nunique()),
        }
        for i, (pairing, kind) in enumerate(ys):
            for j, method in enumerate(METHODS):
                finite = reps[:, i, j][np.isfinite(reps[:, i, j])]
                low = high = np.nan
                if np.isfinite(estimate[i, j]) and len(finite):
                    low, high = np.quantile(finite, [(1 - ci) / 2, (1 + ci) / 2])
                rows.append(
                    base
                    | {
                        "pairing": pairing,
                        "depth": kind,
                        "method": method,
                        "estimate": float(estimate[i, j]),
                        "ci_low": float(low),
                        "ci_high": float(high),
                        "ci_level": ci,
                        "n_bootstrap": n_boot,
                    }
                )
    return rows


def alignment_table(
    tokens: pd.DataFrame,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    depths: dict[tuple[str, str], str] = DEPTHS,
) -> pd.DataFrame:
    """Correlation of depth with every feature per task × router × split (answer tokens), for
    each (pairing, depth kind) of ``depths`` (default: all four)."""
    answers = tokens[tokens["is_answer"].astype(bool)]
    features = feature_columns(answers)
    rows = []
    for key, group in answers.groupby(GROUP, sort=True):
        for row in group_correlations(group, features, n_boot, ci, seed, depths):
            rows.append(dict(zip(GROUP, key, strict=True)) | row)
    columns = GROUP + ["feature", "pairing", "depth", "method", "estimate", "ci_low", "ci_high"]
    columns += ["ci_level", "n_bootstrap", "n_tokens", "n_examples", "n_seeds"]
    return pd.DataFrame(rows, columns=columns)


def alignment_curves(tokens: pd.DataFrame, max_bins: int = 12) -> pd.DataFrame:
    """Mean depth (executed and expected) per feature value, binned when values are many."""
    answers = tokens[tokens["is_answer"].astype(bool)]
    frames = []
    for feature in feature_columns(answers):
        part = answers[answers[feature].notna()]
        if part.empty:
            continue
        for key, group in part.groupby(GROUP, sort=True):
            values = group[feature].astype(float)
            if values.nunique() > max_bins:
                bins = pd.qcut(values, max_bins, labels=False, duplicates="drop")
            else:
                bins = pd.Series(pd.factorize(values, sort=True)[0], index=values.index)
            frame = pd.DataFrame(
                {
                    "bin": bins.to_numpy(),
                    "value": values.to_numpy(),
                    "executed": group["executed_depth"].to_numpy(dtype=float),
                    "expected": group["expected_depth"].to_numpy(dtype=float),
                }
            )
            long = frame.melt(["bin", "value"], var_name="depth", value_name="d")
            stats = long.groupby(["depth", "bin"], sort=True).agg(
                feature_value=("value", "mean"),
                mean_depth=("d", "mean"),
                sd_depth=("d", "std"),
                n_tokens=("d", "size"),
            )
            stats = stats.reset_index().drop(columns="bin")
            for name, value in zip(GROUP, key, strict=True):
                stats[name] = value
            stats["feature"] = feature.removeprefix("f_")
            frames.append(stats)
    columns = GROUP + ["feature", "depth", "feature_value", "mean_depth", "sd_depth", "n_tokens"]
    if not frames:
        return pd.DataFrame(columns=columns)
    curves = pd.concat(frames, ignore_index=True)[columns]
    return curves.sort_values(GROUP + ["feature", "depth", "feature_value"], ignore_index=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--curves", required=True, help="CSV of mean depth per feature value")
    parser.add_argument("--splits", nargs="+", default=list(REPORTED_SPLITS))
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--ci", type=float, default=0.95, help="confidence level")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--max-bins", type=int, default=12, help="bins of a many-valued feature")
    args = parser.parse_args(argv)
    if args.bootstrap < 1 or not 0 < args.ci < 1 or args.max_bins < 2:
        raise AniraInputError("need --bootstrap >= 1, 0 < --ci < 1 and --max-bins >= 2")
    tokens = load_records(args.eval_dirs, "tokens", args.splits, columns=COLUMNS)
    write_table(alignment_table(tokens, args.bootstrap, args.ci, args.seed), args.out)
    write_table(alignment_curves(tokens, args.max_bins), args.curves)


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
