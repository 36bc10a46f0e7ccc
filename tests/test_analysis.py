"""Analysis tables against independent references (scipy, plain Python loops).

The evaluation records are synthetic but follow the contract of ``anira.evaluate`` exactly
(column names, one row per token / per example, a checksum manifest), so these tests need no model.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from anira.analysis.alignment import (
    DEPTHS,
    _estimates,
    alignment_curves,
    alignment_table,
    bootstrap_weights,
    weighted_pearson,
    weighted_ranks,
)
from anira.analysis.depth_hist import depth_hist_table
from anira.analysis.generalization import generalization_table
from anira.analysis.records import load_records
from anira.io import AniraInputError
from tests.factories import fake_records, write_eval_dir


@pytest.fixture(scope="module")
def eval_dirs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("eval")
    dirs = []
    for router in ("fixed", "early", "online"):
        for seed in (0, 1):
            tokens, examples = fake_records("brevo", router, seed)
            dirs.append(write_eval_dir(root / router / f"seed{seed}", tokens, examples))
    return dirs


def test_weighted_ranks_match_scipy_on_the_repeated_sample():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 5, 40).astype(float)
    assert np.allclose(weighted_ranks(values, np.ones(40)), stats.rankdata(values))
    weights = rng.integers(0, 4, 40)
    repeated = np.repeat(values, weights)
    reference = stats.rankdata(repeated)
    ranks = weighted_ranks(values, weights.astype(float))
    # Each kept value's rank in the repeated sample equals its weighted rank.
    positions = np.repeat(np.arange(40), weights)
    for i in np.unique(positions):
        assert np.allclose(reference[positions == i], ranks[i])


def test_weighted_correlation_equals_scipy_on_the_repeated_sample():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 6, 50).astype(float)
    y = x + rng.normal(0, 2, 50)
    weights = rng.integers(0, 3, 50).astype(float)
    rx, ry = weighted_ranks(x, weights), weighted_ranks(y, weights)
    spearman = weighted_pearson(rx, ry, weights)
    counts = weights.astype(int)
    reference = stats.spearmanr(np.repeat(x, counts), np.repeat(y, counts))
    assert spearman == pytest.approx(reference.statistic, abs=1e-12)
    pearson = weighted_pearson(x, y, weights)
    reference = stats.pearsonr(np.repeat(x, counts), np.repeat(y, counts))
    assert pearson == pytest.approx(reference.statistic, abs=1e-12)
    assert np.isnan(weighted_pearson(np.ones(5), np.arange(5.0), np.ones(5)))


def test_weighted_estimates_equal_scipy_on_the_resample_they_stand_for():
    """One bootstrap replicate: with integer token weights, both correlations equal scipy's on
    the sample that repeats each token that often (ranks recomputed within the resample)."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 6, 60).astype(float)
    y = np.clip(np.rint(x / 2 + rng.normal(0, 1, 60)), 1, 6)
    weights = rng.integers(0, 4, 60)
    estimates = _estimates(x, {"executed": y}, weights.astype(float))
    sample_x, sample_y = np.repeat(x, weights), np.repeat(y, weights)
    assert estimates[0, 0] == pytest.approx(stats.spearmanr(sample_x, sample_y).statistic)
    assert estimates[0, 1] == pytest.approx(stats.pearsonr(sample_x, sample_y).statistic)


def test_bootstrap_weights_resample_whole_examples():
    example_index = np.array([0, 0, 0, 1, 2, 2])
    for weights in bootstrap_weights(example_index, 20, np.random.default_rng(0)):
        # Tokens of one example share a weight; weights per example sum to the number of examples.
        assert weights[0] == weights[1] == weights[2] and weights[4] == weights[5]
        assert weights[[0, 3, 4]].sum() == 3


def test_hierarchical_bootstrap_carries_the_seed_to_seed_spread():
    """Three seeds whose examples sit near 0, 1 and 2: resampling examples alone gives a narrow
    interval for the mean; resampling seeds, then examples, spans the seeds' spread."""
    rng = np.random.default_rng(0)
    per_seed = 200
    values = np.concatenate([s + rng.normal(0, 0.05, per_seed) for s in range(3)])
    example_index = np.arange(len(values))
    seeds = np.repeat([0, 1, 2], per_seed)

    def interval(example_seeds):
        weights = bootstrap_weights(example_index, 400, np.random.default_rng(1), example_seeds)
        means = [w @ values / w.sum() for w in weights]
        return np.quantile(means, [0.025, 0.975])

    narrow, wide = interval(None), interval(seeds)
    assert narrow[1] - narrow[0] < 0.2
    assert wide[0] < 0.5 and wide[1] > 1.5
    # Each resample keeps every drawn example's tokens together and the seeds' own examples.
    for weights in bootstrap_weights(np.array([0, 0, 1, 2]), 20, rng, np.array([7, 7, 9])):
        assert weights[0] == weights[1]
        assert weights[[0, 2]].sum() in (0, 2, 4) and weights[3] in (0, 1, 2)


def test_alignment_estimates_and_counts_match_scipy(eval_dirs):
    tokens = load_records(eval_dirs, "tokens", ["test", "extrap"])
    table = alignment_table(tokens, n_boot=200, ci=0.9, seed=3)
    answers = tokens[tokens["is_answer"]]
    for (router, split), group in answers.groupby(["router", "split"]):
        for feature in ("height", "graph_size"):
            for (pairing, depth), column in DEPTHS.items():
                rows = table[
                    (table["router"] == router)
                    & (table["split"] == split)
                    & (table["feature"] == feature)
                    & (table["pairing"] == pairing)
                    & (table["depth"] == depth)
                ].set_index("method")
                x, y = group[f"f_{feature}"].to_numpy(float), group[column].to_numpy(float)
                assert rows.loc["spearman", "n_tokens"] == len(group)
                assert (
                    rows.loc["spearman", "n_examples"]
                    == group[["seed", "example_id"]].drop_duplicates().shape[0]
                )
                assert rows.loc["spearman", "n_seeds"] == 2
                if router == "fixed" and depth == "executed":
                    # A constant depth has no correlation: empty estimate and interval.
                    assert rows[["estimate", "ci_low", "ci_high"]].isna().all().all()
                    continue
                spearman = stats.spearmanr(x, y).statistic
                pearson = stats.pearsonr(x, y).statistic
                assert rows.loc["spearman", "estimate"] == pytest.approx(spearman, abs=1e-9)
                assert rows.loc["pearson", "estimate"] == pytest.approx(pearson, abs=1e-9)
                for method in ("spearman", "pearson"):
                    low, high = rows.loc[method, ["ci_low", "ci_high"]]
                    assert low <= rows.loc[method, "estimate"] <= high
    early = table[(table["router"] == "early") & (table["feature"] == "height")]
    # The synthetic depth tracks height at t − 1; the depth at t is another token's.
    assert (early[early["pairing"] == "t-1"]["estimate"] > 0.5).all()
    assert (early[early["pairing"] == "t"]["estimate"].abs() < 0.5).all()


def clustered_tokens(n_examples: int = 50, seed: int = 0) -> pd.DataFrame:
    """Answer tokens whose feature and depth are nearly constant within an example and correlate
    only through per-example effects: tokens are far from independent, so an interval that
    resamples tokens is much narrower than one that resamples examples."""
    rng = np.random.default_rng(seed)
    rows = []
    for example in range(n_examples):
        effect = rng.normal()
        depth_effect = 0.5 * effect + np.sqrt(0.75) * rng.normal()
        for _ in range(int(rng.integers(8, 16))):
            depth = np.clip(np.rint(3.5 + depth_effect + 0.2 * rng.normal()), 1, 6)
            rows.append(
                {
                    "task": "brevo",
                    "router": "early",
                    "split": "test",
                    "seed": 0,
                    "example_id": f"e{example}",
                    "is_answer": True,
                    "executed_depth": int(depth),
                    "expected_depth": float(3.5 + depth_effect + 0.2 * rng.normal()),
                    "executed_depth_at_t": int(depth),
                    "expected_depth_at_t": float(3.5 + depth_effect + 0.2 * rng.normal()),
                    "f_height": float(np.rint(2.0 * effect + 0.3 * rng.normal())),
                }
            )
    return pd.DataFrame(rows)


STATISTICS = {"spearman": stats.spearmanr, "pearson": stats.pearsonr}


def resampled_statistics(tokens: pd.DataFrame, n_boot: int, seed: int, unit: str) -> dict:
    """(pairing, depth kind, method) → the statistic over a plain loop of resamples of whole
    ``unit``s: draw as many units as there are, with replacement, concatenate their tokens, call
    scipy."""
    rng = np.random.default_rng(seed)
    members = list(tokens.groupby(unit).indices.values())
    x = tokens["f_height"].to_numpy()
    values = {(*kind, method): [] for kind in DEPTHS for method in STATISTICS}
    for _ in range(n_boot):
        sample = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        for kind, column in DEPTHS.items():
            y = tokens[column].to_numpy()[sample]
            for method, statistic in STATISTICS.items():
                values[(*kind, method)].append(statistic(x[sample], y).statistic)
    return values


def test_bootstrap_interval_matches_a_resample_examples_loop():
    """At each level, the interval equals (within Monte Carlo error) the percentiles of a plain
    loop that resamples examples and calls scipy; resampling tokens as if they were independent
    gives a far narrower one, and a 50 % interval is not a 95 % one."""
    tokens = clustered_tokens()
    reference = resampled_statistics(tokens, 2000, seed=1, unit="example_id")
    tokenwise = resampled_statistics(
        tokens.assign(token_id=np.arange(len(tokens))), 300, seed=2, unit="token_id"
    )
    for ci in (0.5, 0.95):
        table = alignment_table(tokens, n_boot=2000, ci=ci, seed=0)
        table = table.set_index(["pairing", "depth", "method"])
        for key, values in reference.items():
            row = table.loc[key]
            assert row["ci_level"] == ci
            expected = np.quantile(values, [(1 - ci) / 2, (1 + ci) / 2])
            assert [row["ci_low"], row["ci_high"]] == pytest.approx(expected, abs=0.05), key
            narrow = np.quantile(tokenwise[key], [(1 - ci) / 2, (1 + ci) / 2])
            assert row["ci_high"] - row["ci_low"] > 2 * (narrow[1] - narrow[0]), key


def test_bootstrap_interval_widens_with_the_level():
    tokens = clustered_tokens()
    tables = {ci: alignment_table(tokens, n_boot=400, ci=ci, seed=0) for ci in (0.5, 0.8, 0.95)}
    widths = [(t["ci_high"] - t["ci_low"]).to_numpy() for t in tables.values()]
    assert (widths[0] < widths[1]).all() and (widths[1] < widths[2]).all()


def test_alignment_bootstrap_is_seeded_and_feature_independent(eval_dirs):
    tokens = load_records(eval_dirs[2:4], "tokens", ["test"])
    first = alignment_table(tokens, n_boot=50, seed=7)
    again = alignment_table(tokens, n_boot=50, seed=7)
    pd.testing.assert_frame_equal(first, again)
    only_height = alignment_table(tokens.drop(columns="f_graph_size"), n_boot=50, seed=7)
    pd.testing.assert_frame_equal(
        only_height.reset_index(drop=True),
        first[first["feature"] == "height"].reset_index(drop=True),
    )


def test_alignment_curves_are_means_per_feature_value(eval_dirs):
    tokens = load_records(eval_dirs, "tokens", ["test"])
    curves = alignment_curves(tokens, max_bins=12)
    answers = tokens[tokens["is_answer"]]
    sums = defaultdict(lambda: [0.0, 0])
    for row in answers.itertuples():
        key = (row.router, row.f_height)
        sums[key][0] += row.executed_depth
        sums[key][1] += 1
    height = curves[(curves["feature"] == "height") & (curves["depth"] == "executed")]
    assert len(height) == len(sums)
    for row in height.itertuples():
        total, count = sums[(row.router, row.feature_value)]
        assert row.n_tokens == count
        assert row.mean_depth == pytest.approx(total / count)
    binned = alignment_curves(tokens, max_bins=2)
    assert binned.groupby(["router", "feature", "depth"]).size().max() <= 2


def test_generalization_table_matches_a_plain_loop(eval_dirs):
    examples = load_records(eval_dirs, "examples")
    table = generalization_table(examples)
    groups = defaultdict(list)
    for row in examples.itertuples():
        groups[(row.task, row.router, row.seed, row.split, row.size)].append(row)
    assert len(table) == len(groups)
    for row in table.itertuples():
        members = groups[(row.task, row.router, row.seed, row.split, row.size)]
        assert row.n_examples == len(members)
        assert row.accuracy == pytest.approx(sum(m.correct for m in members) / len(members))
        assert row.tf_accuracy == pytest.approx(sum(m.tf_correct for m in members) / len(members))
        assert row.mean_depth == pytest.approx(np.mean([m.mean_depth for m in members]))


def test_generative_columns_against_direct_distributions():
    """LANO rows: length TV against the full exact distribution (support included), distinct
    share by set size, completion shares by plain means; greedy tasks get NaN."""
    grammar = {10: 0.5, 11: 0.3, 12: 0.2}  # the exact length distribution
    samples = [("a", 10, True), ("a", 10, True), ("b", 11, True), ("c", 13, True), ("d", 20, False)]
    rows = [
        {
            "task": "lano",
            "router": "early",
            "seed": 0,
            "split": "test",
            "size": 11,
            "example_id": f"e{i}",
            "correct": m in grammar and ended,
            "tf_correct": False,
            "mean_depth": 2.0,
            "mean_expected_depth": 2.0,
            "n_answer_tokens": 12,
            "generated": text,
            "ended": ended,
            "sample_length": m,
            "length_prob": grammar.get(m, 0.0) if ended else 0.0,
            "completion_quarter": i % 2 == 0,
            "completion_half": True,
            "mean_kl_bits": 0.1 * i,
            "token_best_match": 0.5,
        }
        for i, (text, m, ended) in enumerate(samples)
    ]
    rows.append(rows[0] | {"task": "brevo", "ended": np.nan, "generated": "x"})
    for name in ("sample_length", "length_prob", "completion_quarter", "completion_half"):
        rows[-1][name] = np.nan
    table = generalization_table(pd.DataFrame(rows)).set_index("task")
    lano = table.loc["lano"]
    sampled = Counter(m if ended else "no end" for _, m, ended in samples)
    support = set(grammar) | set(sampled)
    tv = 0.5 * sum(abs(sampled[m] / len(samples) - grammar.get(m, 0.0)) for m in support)
    assert lano["length_tv"] == pytest.approx(tv)
    assert lano["distinct_share"] == pytest.approx(4 / 5)
    assert lano["accuracy"] == pytest.approx(3 / 5)
    assert lano["completion_quarter"] == pytest.approx(3 / 5)
    assert lano["mean_kl_bits"] == pytest.approx(0.2)
    assert np.isnan(table.loc["brevo", "length_tv"]) and np.isnan(
        table.loc["brevo", "distinct_share"]
    )


def test_depth_hist_matches_counter(eval_dirs):
    tokens = load_records(eval_dirs, "tokens")
    table = depth_hist_table(tokens)
    counts = Counter(
        (r.router, r.split, r.executed_depth) for r in tokens.itertuples() if r.is_answer
    )
    assert len(table) == len(counts)
    for row in table.itertuples():
        assert row.n_tokens == counts[(row.router, row.split, row.depth)]
    sums = table.groupby(["task", "router", "split"])["fraction"].sum()
    assert np.allclose(sums, 1.0)
    assert set(table.loc[table["router"] == "fixed", "depth"]) == {6}


def run_module(module: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True
    )


def test_cli_writes_identical_tables_twice(eval_dirs, tmp_path):
    for attempt in ("a", "b"):
        out = tmp_path / attempt
        result = run_module(
            "anira.analysis.alignment",
            "--out",
            out / "alignment.csv",
            "--curves",
            out / "curves.csv",
            "--bootstrap",
            30,
            *eval_dirs,
        )
        assert result.returncode == 0, result.stderr
        for module, name in (("generalization", "gen.csv"), ("depth_hist", "hist.csv")):
            result = run_module(f"anira.analysis.{module}", "--out", out / name, *eval_dirs)
            assert result.returncode == 0, result.stderr
    for name in ("alignment.csv", "curves.csv", "gen.csv", "hist.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # Each table names the evaluations it was computed from by their manifests' digests.
    digests = {
        str(d): hashlib.sha256((d / "manifest.json").read_bytes()).hexdigest() for d in eval_dirs
    }
    for name in ("alignment", "curves", "gen", "hist"):
        inputs = json.loads((tmp_path / "a" / f"{name}.inputs.json").read_text())
        assert inputs == {"evaluations": digests}, name
    table = pd.read_csv(tmp_path / "a" / "alignment.csv")
    assert set(table["split"]) == {"test", "interp", "extrap"}


def test_truncated_record_is_a_one_line_error(eval_dirs, tmp_path):
    broken = tmp_path / "broken"
    tokens, examples = fake_records("brevo", "early", 0, n_per_size=2)
    write_eval_dir(broken, tokens, examples)
    path = broken / "test.examples.parquet"
    path.write_bytes(path.read_bytes()[:-20])
    result = run_module("anira.analysis.generalization", "--out", tmp_path / "g.csv", broken)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "checksum" in result.stderr
    assert not (tmp_path / "g.csv").exists()
    with pytest.raises(AniraInputError, match="lacks columns"):
        load_records([broken], "tokens", ["train"], columns=["task", "no_such_column"])
