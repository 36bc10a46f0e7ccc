"""Probes: planted features in synthetic states, scores against scikit-learn's metrics, and the
command line on a tiny trained model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, r2_score

from anira.analysis import probes
from anira.analysis.probes import (
    control_labels,
    control_predictions,
    out_of_fold,
    probes_table,
    weighted_scores,
)
from anira.compose import compose
from anira.train import train
from tests.factories import TINY_SCALE, planted_states, probe_parts, tiny_task


def test_planted_linear_feature_is_recovered_and_a_shuffled_one_is_not():
    states, feature, groups = planted_states()
    ones = np.ones((1, len(feature)))
    r2 = weighted_scores(feature, out_of_fold(states, feature, groups, 5), ones, False)[0]
    assert r2[2] > 0.95 and r2[0] < 0.05 and r2[0] < r2[1] < r2[2]
    shuffled = np.random.default_rng(1).permutation(feature)
    r2 = weighted_scores(shuffled, out_of_fold(states, shuffled, groups, 5), ones, False)[0]
    assert np.all(np.abs(r2) < 0.1)
    hub = (feature >= 3).astype(float)  # a 0/1 feature goes to the logistic probe
    accuracy = weighted_scores(hub, out_of_fold(states, hub, groups, 5), ones, True)[0]
    assert accuracy[2] > 0.95 and accuracy[0] < 0.65


def test_weighted_scores_match_sklearn_with_sample_weights():
    rng = np.random.default_rng(2)
    y = rng.normal(size=50)
    pred = y + rng.normal(size=(3, 50))
    weights = rng.integers(0, 4, (4, 50)).astype(float)
    ours = weighted_scores(y, pred, weights, False)
    for i in range(4):
        for k in range(3):
            assert ours[i, k] == pytest.approx(r2_score(y, pred[k], sample_weight=weights[i]))
    labels = (y > 0).astype(float)
    guesses = (pred > 0).astype(float)
    ours = weighted_scores(labels, guesses, weights, True)
    expected = accuracy_score(labels, guesses[1], sample_weight=weights[2])
    assert ours[2, 1] == pytest.approx(expected)


def test_control_labels_are_one_random_label_per_type():
    labels = np.arange(60, dtype=float) % 7
    types = np.array([f"n{i % 12}" for i in range(60)])
    control = control_labels(labels, types, [3, 1])
    for token in set(types):  # one label per type, a value the feature takes
        assert len(set(control[types == token])) == 1 and control[types == token][0] in labels
    assert len(set(control)) > 1  # types get different labels
    # Fixed across examples: a type keeps its label wherever it occurs, in any order of tokens.
    order = np.random.default_rng(0).permutation(len(labels))
    assert np.array_equal(control_labels(labels[order], types[order], [3, 1]), control[order])
    # Unrelated to the real labels within a type (a within-type shuffle would keep them).
    assert not all(sorted(control[types == t]) == sorted(labels[types == t]) for t in set(types))
    # Labels drawn with the feature's frequencies: a feature that is 0 on 95 % of the tokens.
    rare = (np.arange(2000) % 20 == 0).astype(float)
    many_types = np.array([f"t{i}" for i in range(2000)])
    assert control_labels(rare, many_types, [0]).mean() == pytest.approx(0.05, abs=0.02)


def test_control_of_one_label_is_predicted_by_that_label():
    states, _, groups = planted_states()
    pred = control_predictions(states, np.ones(states.shape[0]), groups, 5)
    assert pred.shape == (states.shape[1], states.shape[0]) and (pred == 1.0).all()


def test_table_pools_seeds_and_reports_selectivity_and_own_halt():
    feature = planted_states()[1]
    table = probes_table(probe_parts("early", "height", feature), n_boot=50, ci=0.95, seed=0)
    feature_rows = table[table["labels"] == "feature"].set_index("readout")
    assert table["n_seeds"].eq(2).all() and table["n_examples"].eq(160).all()
    final = feature_rows[feature_rows["iteration"] == 2]
    assert final["score"].item() > 0.95 and final["selectivity"].item() > 0.9
    assert final["ci_low"].item() < final["score"].item() < final["ci_high"].item()
    # Own halting iteration 1 or 2: between the two iterations' scores.
    own = feature_rows.loc["own_halt", "score"]
    assert (
        feature_rows[feature_rows["iteration"] == 1]["score"].item() < own < final["score"].item()
    )


@pytest.fixture(scope="module")
def tiny_model(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt_probe")
    overrides = [*tiny_task("brevo"), *TINY_SCALE, "router=online"]
    paths = [f"data_dir={tiny_dataset['brevo']}", f"out_dir={out}"]
    train(compose("train", [*overrides, *paths]))
    return out


def test_cli_probes_every_iteration_of_a_trained_model(tiny_model, tiny_dataset, tmp_path):
    out = tmp_path / "probes.csv"
    args = ["--out", str(out), "--model", str(tiny_model), str(tiny_dataset["brevo"])]
    probes.main([*args, "--bootstrap", "20", "--folds", "3", "--max-examples", "16"])
    table = pd.read_csv(out)
    depth = 6
    iterations = table[table["readout"] == "iteration"]["iteration"]
    assert sorted(iterations.unique()) == list(range(depth + 1))
    assert {"height", "dfs_depth", "frontier"} <= set(table["feature"])
    assert set(table["router"]) == {"online"} and set(table["inference_rule"]) == {"median"}
    assert (table["readout"] == "own_halt").any()
    assert table["n_examples"].max() <= 16
