"""Decision timing (paper Table 2): which features does each router's per-token depth follow?

On **correctly solved** BREVO samples only, per task × router × split × population, the depth of
each answer token that emits a node is regressed (statsmodels OLS) on the standardised features,
with graph size N among them so that every other coefficient is controlled for size:

- ``r2``: the model's R² (interval: percentile bootstrap resampling seeds, then examples);
- ``r2_size``: the R² of graph size **alone** (a linear model of depth on N) — our reading of the
  paper's "graph size alone explains ≈ 28 % of the variance", the number the scorecard compares;
- ``coefficient``: the standardised coefficient of each feature (depth and features as z-scores),
  with a 95 % interval from standard errors clustered by example (tokens of one example are not
  independent);
- ``lmg``: the Shapley / LMG decomposition of R² into feature groups — each group's R² gain
  averaged over every order of adding the groups, so the parts sum to R² whatever the order —
  as ``estimate`` (its part of R²) and ``share`` (its fraction of R²), with bootstrap intervals.

Groups (``GROUPS``, ``grouping=paper``): ``size`` (N), ``structure`` (static properties of the node
in the graph: degrees, hub, height) and ``execution`` (state of the emission: DFS depth, frontier,
newly enabled, distance to query). **Ours**: ``height`` counts as static structure (it does not
depend on the order of emission) and ``dep_set_size`` is left out (it is nearly N at small sizes and
would split the size share in two). Both placements of ``height`` and ``dist_from_query`` are
judgement calls, so every row is repeated under ``grouping=moved`` (``MOVED``: ``height`` in
execution, ``dist_from_query`` in structure) — the sensitivity of the verdicts to the grouping.

Two populations (column ``order``), because the features must follow the order of the answer:

- ``generated``: every correctly generated answer, features recomputed along the order the model
  emitted (``<split>.generated.parquet``), with the executed depth that emitted each token (and the
  expected depth when the records carry it);
- ``gold``: the teacher-forced records of the examples whose generated answer *equals* the gold one
  token for token, so the gold-order features are those of the emitted order; both the executed
  and the expected depth E_q[d] are available there.

Routers whose depth is constant (the fixed router) have no regression: their rows carry only the
population sizes ``n_examples`` / ``n_tokens``. Seeds are pooled in the fit; an example is a (seed,
example) pair for clustering, and the bootstrap resamples seeds, then examples within them
(:func:`anira.analysis.alignment.bootstrap_weights`), so the intervals carry the training-run
variation when there are several seeds (``n_seeds``).

Usage: ``python -m anira.analysis.decision_timing --out decision_timing.csv EVAL_DIR...``
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm

from anira.analysis.alignment import bootstrap_weights, example_seeds
from anira.analysis.records import base_parser, load_records, run_cli, write_table
from anira.io import AniraInputError
from anira.layout import REPORTED_SPLITS

GROUPS = {
    "size": ("graph_size",),
    "structure": ("in_degree", "out_degree", "is_hub", "max_degree", "height"),
    "execution": ("dfs_depth", "frontier", "newly_enabled", "dist_from_query"),
}
# The sensitivity grouping: the two features whose group is a judgement call moved across.
MOVED = {
    "size": GROUPS["size"],
    "structure": ("in_degree", "out_degree", "is_hub", "max_degree", "dist_from_query"),
    "execution": ("dfs_depth", "frontier", "newly_enabled", "height"),
}
GROUPINGS = {"paper": GROUPS, "moved": MOVED}
FEATURES = [f"f_{name}" for names in GROUPS.values() for name in names]
KEYS = ["task", "router", "split", "order", "depth", "grouping"]
DEPTH_COLUMNS = {"executed": "executed_depth", "expected": "expected_depth"}
COLUMNS = KEYS + ["n_seeds", "n_examples", "n_tokens", "kind", "term", "group"]
COLUMNS += ["estimate", "ci_low", "ci_high", "share", "share_ci_low", "share_ci_high", "ci_level"]


def subset_r2(cov: np.ndarray, columns: Sequence[int]) -> float:
    """R² of the least-squares fit of variable 0 on ``columns`` (with intercept), from the
    covariance matrix of [y, x_1, ...]: R² = c' C⁺ c / var(y). The pseudo-inverse gives the fit of
    the column space, so collinear or constant features are handled as in OLS."""
    if not columns or cov[0, 0] <= 0:
        return 0.0
    idx = np.asarray(columns)
    c = cov[idx, 0]
    return float(c @ np.linalg.pinv(cov[np.ix_(idx, idx)]) @ c / cov[0, 0])


def shapley_parts(r2_of: dict[frozenset, float], groups: Sequence[str]) -> dict[str, float]:
    """Shapley value of each group in the game ``subset -> R²``: its marginal gain averaged over
    every order of adding the groups, i.e. Σ_S |S|!(k−|S|−1)!/k! · (R²(S∪g) − R²(S))."""
    k = len(groups)
    parts = {}
    for g in groups:
        others = [h for h in groups if h != g]
        total = 0.0
        for size in range(k):
            weight = math.factorial(size) * math.factorial(k - size - 1) / math.factorial(k)
            for subset in itertools.combinations(others, size):
                base = frozenset(subset)
                total += weight * (r2_of[base | {g}] - r2_of[base])
        parts[g] = total
    return parts


def group_r2(cov: np.ndarray, members: dict[str, list[int]]) -> dict[frozenset, float]:
    """R² of every union of groups (``members``: group -> column indices in ``cov``)."""
    names = list(members)
    return {
        frozenset(subset): subset_r2(cov, [i for g in subset for i in members[g]])
        for size in range(len(names) + 1)
        for subset in itertools.combinations(names, size)
    }


def weighted_cov(data: np.ndarray, weights: np.ndarray) -> np.ndarray:
    total = weights.sum()
    centred = data - (weights @ data) / total
    return (centred * weights[:, None]).T @ centred / total


def regression_rows(
    frame: pd.DataFrame, depth_column: str, n_boot: int, ci: float, seed: int
) -> list[dict]:
    """The r2, r2_size, coefficient and lmg rows of one population (rows: tokens with every
    feature), each under every grouping of ``GROUPINGS`` (column ``grouping``)."""
    features = [f for f in FEATURES if frame[f].std(ddof=0) > 0]
    y = frame[depth_column].to_numpy(dtype=float)
    if len(features) == 0 or not y.std() > 0 or len(frame) <= len(features) + 1:
        return []
    x = frame[features].to_numpy(dtype=float)
    z = (x - x.mean(0)) / x.std(0)
    zy = (y - y.mean()) / y.std()
    clusters, seeds = example_seeds(frame)
    fit = sm.OLS(zy, sm.add_constant(z, has_constant="add")).fit(
        cov_type="cluster", cov_kwds={"groups": clusters}
    )
    bounds = fit.conf_int(alpha=1 - ci)[1:]
    size = [1 + i for i, f in enumerate(features) if f == "f_graph_size"]
    members = {name: grouping_members(features, groups) for name, groups in GROUPINGS.items()}
    data = np.column_stack([zy, z])

    def decompose(weights: np.ndarray) -> np.ndarray:
        cov = weighted_cov(data, weights)
        out = [subset_r2(cov, size)]
        for groups in members.values():
            r2_of = group_r2(cov, groups)
            parts = shapley_parts(r2_of, list(groups))
            full = r2_of[frozenset(groups)]
            shares = [p / full if full > 0 else np.nan for p in parts.values()]
            out += [full, *parts.values(), *shares]
        return np.array(out)

    point = decompose(np.ones(len(zy)))
    rng = np.random.default_rng(seed)
    reps = np.stack([decompose(w) for w in bootstrap_weights(clusters, n_boot, rng, seeds)])
    low, high = np.nanquantile(reps, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    rows = []
    at = 1
    for grouping, groups in members.items():
        group_of = {f: g for g, names in GROUPINGS[grouping].items() for f in names}
        rows.append(
            {"grouping": grouping, "kind": "r2", "term": "all", "estimate": fit.rsquared}
            | {"ci_low": low[at], "ci_high": high[at]}
        )
        rows.append(
            {"grouping": grouping, "kind": "r2_size", "term": "size", "group": "size"}
            | {"estimate": point[0], "ci_low": low[0], "ci_high": high[0]}
        )
        for i, feature in enumerate(features):
            rows.append(
                {
                    "grouping": grouping,
                    "kind": "coefficient",
                    "term": feature.removeprefix("f_"),
                    "group": group_of[feature.removeprefix("f_")],
                    "estimate": fit.params[1 + i],
                    "ci_low": bounds[i, 0],
                    "ci_high": bounds[i, 1],
                }
            )
        k = len(groups)
        for j, group in enumerate(groups):
            part, share = at + 1 + j, at + 1 + k + j
            rows.append(
                {
                    "grouping": grouping,
                    "kind": "lmg",
                    "term": group,
                    "group": group,
                    "estimate": point[part],
                    "ci_low": low[part],
                    "ci_high": high[part],
                    "share": point[share],
                    "share_ci_low": low[share],
                    "share_ci_high": high[share],
                }
            )
        at += 1 + 2 * k
    return rows


def grouping_members(features: Sequence[str], groups: dict) -> dict[str, list[int]]:
    """Group -> column indices (1-based, column 0 is the depth) of ``features`` under ``groups``;
    a group none of whose features varies is left out."""
    group_of = {f"f_{n}": g for g, names in groups.items() for n in names}
    return {
        g: [1 + i for i, f in enumerate(features) if group_of[f] == g]
        for g in groups
        if any(group_of[f] == g for f in features)
    }


def gold_order_population(tokens: pd.DataFrame, examples: pd.DataFrame) -> pd.DataFrame:
    """Answer tokens of the teacher-forced records whose example's generated answer is the gold
    answer token for token (so the gold-order features are those of the emitted order)."""
    keys = ["task", "router", "split", "seed", "example_id"]  # example ids repeat across tasks
    answers = tokens[tokens["is_answer"].astype(bool)].sort_values([*keys, "position"])
    gold = answers.groupby(keys, sort=False)["token"].agg(lambda t: " ".join(map(str, t)))
    emitted = examples.set_index(keys)["generated"]
    same = gold.index[(gold == emitted.reindex(gold.index)).to_numpy()]
    return answers.set_index(keys).loc[same].reset_index()


def decision_timing_table(
    populations: dict[str, pd.DataFrame],
    keys: pd.DataFrame,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Table 2 for each task × router × split of ``keys`` and each population (``order`` ->
    token records with the ``FEATURES`` and depths); an empty population keeps its counts."""
    rows = []
    groups = ["task", "router", "split"]
    for key in keys[groups].drop_duplicates().sort_values(groups).to_numpy():
        for order, frame in populations.items():
            part = frame[(frame[groups] == key).all(axis=1)]
            defined = part.dropna(subset=FEATURES)
            for depth, column in DEPTH_COLUMNS.items():
                if column not in frame.columns:
                    continue
                base = dict(zip(KEYS, [*key, order, depth, "paper"], strict=True)) | {
                    "n_seeds": defined["seed"].nunique(),
                    "n_examples": len(defined[["seed", "example_id"]].drop_duplicates()),
                    "n_tokens": len(defined),
                    "ci_level": ci,
                }
                found = regression_rows(defined, column, n_boot, ci, seed)
                rows += [base | row for row in found or [{"kind": "r2", "term": "all"}]]
    return pd.DataFrame(rows, columns=COLUMNS)


def timing_keys(tokens: pd.DataFrame) -> pd.DataFrame:
    """The task × router × split groups of tasks whose answer tokens carry every feature."""
    has = tokens.groupby("task")[FEATURES].count().gt(0).all(axis=1)
    return tokens.loc[tokens["task"].isin(has.index[has]), ["task", "router", "split"]]


def main(argv: Sequence[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--splits", nargs="+", default=list(REPORTED_SPLITS))
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--ci", type=float, default=0.95, help="confidence level")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    args = parser.parse_args(argv)
    if args.bootstrap < 1 or not 0 < args.ci < 1:
        raise AniraInputError("need --bootstrap >= 1 and 0 < --ci < 1")
    common = ["task", "router", "seed", "split", "example_id"]
    tokens = load_records(
        args.eval_dirs,
        "tokens",
        args.splits,
        columns=common + ["position", "token", "is_answer", *DEPTH_COLUMNS.values(), "f_*"],
    )
    for feature in FEATURES:  # a study without BREVO gets a table with no rows
        tokens[feature] = tokens.get(feature, np.nan)
    examples = load_records(args.eval_dirs, "examples", args.splits, columns=common + ["generated"])
    generated = load_records(args.eval_dirs, "generated", args.splits, allow_empty=True)
    if generated.empty:  # no correct answer anywhere: the population sizes are still reported
        generated = pd.DataFrame(columns=common + ["executed_depth", *FEATURES])
    populations = {"generated": generated, "gold": gold_order_population(tokens, examples)}
    table = decision_timing_table(
        populations, timing_keys(tokens), args.bootstrap, args.ci, args.seed
    )
    write_table(table, args.out)


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
