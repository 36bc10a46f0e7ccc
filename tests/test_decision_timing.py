"""Decision timing (Table 2) against independent references: statsmodels fits of every subset of
groups, Shapley values by brute force over all orders, and planted dependences."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from anira.analysis.decision_timing import (
    FEATURES,
    GROUPS,
    decision_timing_table,
    gold_order_population,
    group_r2,
    shapley_parts,
    weighted_cov,
)
from anira.analysis.records import SPLITS
from anira.io import write_manifest
from tests.factories import synthetic_tokens


def test_shapley_parts_equal_the_average_over_all_orders_and_sum_to_r2():
    frame = synthetic_tokens(lambda f: f["f_graph_size"] + 0.5 * f["f_frontier"] + f["f_height"])
    data = frame[["executed_depth", *FEATURES]].to_numpy(dtype=float)
    members = {g: [1 + FEATURES.index(f"f_{n}") for n in names] for g, names in GROUPS.items()}
    r2_of = group_r2(weighted_cov(data, np.ones(len(data))), members)
    # Every subset's R² is the R² of an independent statsmodels OLS fit on those columns.
    for subset, r2 in r2_of.items():
        columns = [i - 1 for g in subset for i in members[g]]
        if columns:
            fit = sm.OLS(data[:, 0], sm.add_constant(data[:, 1:][:, columns])).fit()
            assert r2 == pytest.approx(fit.rsquared, abs=1e-9)
    parts = shapley_parts(r2_of, list(members))
    brute = dict.fromkeys(members, 0.0)
    orders = list(itertools.permutations(members))
    for order in orders:
        added = frozenset()
        for g in order:
            brute[g] += (r2_of[added | {g}] - r2_of[added]) / len(orders)
            added = added | {g}
    assert parts == pytest.approx(brute, abs=1e-12)
    assert sum(parts.values()) == pytest.approx(r2_of[frozenset(members)], abs=1e-12)


@pytest.mark.parametrize(
    "driver, group",
    [("f_frontier", "execution"), ("f_graph_size", "size"), ("f_in_degree", "structure")],
)
def test_a_planted_dependence_is_recovered(driver, group):
    frame = synthetic_tokens(lambda f: 2.0 * f[driver])
    table = decision_timing_table({"generated": frame}, frame, n_boot=100)
    table = table[(table["depth"] == "executed") & (table["grouping"] == "paper")]
    lmg = table[table["kind"] == "lmg"].set_index("term")
    assert lmg.loc[group, "share"] > 0.9
    assert lmg["estimate"].sum() == pytest.approx(table[table["kind"] == "r2"]["estimate"].item())
    assert lmg.loc[group, "share_ci_low"] > 0.8
    coef = table[table["kind"] == "coefficient"].set_index("term")
    name = driver.removeprefix("f_")
    assert coef.loc[name, "ci_low"] > 0.5
    unrelated = coef.drop(index=[name, "is_hub"])
    assert ((unrelated["ci_low"] < 0.05) & (unrelated["ci_high"] > -0.05)).mean() >= 0.75


def test_size_alone_r2_and_the_moved_grouping():
    frame = synthetic_tokens(lambda f: f["f_graph_size"] + 2.0 * f["f_height"])
    table = decision_timing_table({"generated": frame}, frame, n_boot=50)
    table = table[table["depth"] == "executed"]
    # R² of size alone: the plain statsmodels fit of depth on graph size, in both groupings.
    alone = sm.OLS(frame["executed_depth"], sm.add_constant(frame["f_graph_size"])).fit()
    r2_size = table[table["kind"] == "r2_size"]
    assert set(r2_size["grouping"]) == {"paper", "moved"}
    assert r2_size["estimate"].to_numpy() == pytest.approx(alone.rsquared, abs=1e-9)
    assert (r2_size["ci_low"] < alone.rsquared).all()
    assert (r2_size["ci_high"] > alone.rsquared).all()
    # height is structure in the paper grouping and execution state in the moved one.
    lmg = table[table["kind"] == "lmg"].set_index(["grouping", "term"])["share"]
    assert lmg[("paper", "structure")] > 0.6 and lmg[("moved", "execution")] > 0.6
    assert lmg[("paper", "execution")] < 0.1 and lmg[("moved", "structure")] < 0.1


def test_constant_depth_reports_only_population_sizes():
    frame = synthetic_tokens(lambda f: 0.0 * f["f_frontier"] + 6.0, router="fixed", noise=0.0)
    table = decision_timing_table({"generated": frame}, frame, n_boot=10)
    assert len(table) == 2  # one row per depth kind
    row = table[table["depth"] == "executed"]
    assert len(row) == 1 and row["kind"].item() == "r2" and np.isnan(row["estimate"].item())
    assert row["n_tokens"].item() == len(frame) and row["n_examples"].item() == 120


def test_gold_population_keeps_examples_whose_answer_equals_gold():
    tokens = pd.DataFrame(
        {
            "task": "brevo",
            "router": "early",
            "split": "test",
            "seed": 0,
            "example_id": ["a", "a", "a", "b", "b", "b"],
            "position": [0, 1, 2, 0, 1, 2],
            "token": ["<ans>", "n1", "n2", "<ans>", "n3", "n4"],
            "is_answer": [False, True, True, False, True, True],
        }
    )
    examples = pd.DataFrame(
        {
            "task": "brevo",
            "router": "early",
            "split": "test",
            "seed": 0,
            "example_id": ["a", "b"],
            "generated": ["n1 n2", "n4 n3"],
        }
    )
    # another task of the same study reuses the example ids, with other answers
    other = {
        "task": "mano",
        "token": ["<ans>", "5", "<eos>"] * 2,
        "is_answer": [False, True, True] * 2,
    }
    tokens = pd.concat([tokens, tokens.assign(**other)], ignore_index=True)
    examples = pd.concat([examples, examples.assign(task="mano", generated=["5 <eos>", "6"])])
    kept = gold_order_population(tokens, examples)
    assert kept["task"].tolist() == ["brevo", "brevo", "mano", "mano"]
    assert kept["example_id"].tolist() == ["a", "a", "a", "a"]
    assert kept["token"].tolist() == ["n1", "n2", "5", "<eos>"]


def test_cli_reads_evaluation_records(tmp_path):
    tokens = synthetic_tokens(lambda f: f["f_dfs_depth"])
    tokens["position"] = tokens.groupby("example_id").cumcount()
    tokens["token"] = "n" + tokens["position"].astype(str)
    tokens["is_answer"] = True
    answers = tokens.groupby("example_id")["token"].agg(" ".join)
    examples = pd.DataFrame({"example_id": answers.index, "generated": answers.to_numpy()})
    examples[["task", "router", "seed", "split"]] = ["brevo", "early", 0, "test"]
    names = []
    for split in SPLITS:
        for kind, frame in (("tokens", tokens), ("examples", examples), ("generated", tokens)):
            name = f"{split}.{kind}.parquet"
            frame[frame["split"] == split].reset_index(drop=True).to_parquet(tmp_path / name)
            names.append(name)
    write_manifest(tmp_path, names)
    out = tmp_path / "table.csv"
    args = [sys.executable, "-m", "anira.analysis.decision_timing", "--out", str(out)]
    subprocess.run([*args, str(tmp_path), "--bootstrap", "20", "--splits", "test"], check=True)
    table = pd.read_csv(out)
    assert set(table["order"]) == {"generated", "gold"}
    assert set(table["depth"]) == {"executed", "expected"}
    paper = table[table["grouping"] == "paper"]
    share = paper[(paper["kind"] == "lmg") & (paper["term"] == "execution")]["share"]
    assert (share > 0.9).all()
