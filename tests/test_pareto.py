"""Accuracy–compute frontier against plain recomputations (scipy's Wilson interval, hand-made
interpolation) and the model's own FLOP accounting on a forward pass."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from anira.analysis import pareto
from anira.analysis.pareto import compute_per_token, frontier, pareto_rows
from anira.compose import compose
from anira.dataset import load_split
from anira.evaluate import evaluate
from anira.figures import fig_pareto
from anira.figures.style import apply_style
from anira.model import AniraModel, ModelConfig
from anira.train import train
from tests.factories import TINY_SCALE, tiny_task


def test_frontier_interpolates_between_fixed_depth_models():
    table = pd.DataFrame(
        {
            "task": "brevo",
            "split": "test",
            "router": ["fixed1", "fixed2", "fixed4", "early", "online"],
            "token_steps": [1.0, 2.0, 4.0, 3.0, 5.0],
            "accuracy": [0.3, 0.5, 0.6, 0.7, 0.9],
            "fixed_depth": [True, True, True, False, False],
        }
    )
    out = frontier(table).set_index("router")
    assert out.loc["early", "frontier_accuracy"] == pytest.approx(0.55)
    assert out.loc["early", "above_frontier"] == pytest.approx(0.15)
    assert np.isnan(out.loc["online", "frontier_accuracy"])  # beyond the frontier's range
    assert out.loc[["fixed1", "fixed2", "fixed4"], "above_frontier"].isna().all()


def test_rows_pool_seeds_with_wilson_intervals_and_detect_fixed_depth():
    rng = np.random.default_rng(0)
    examples = []
    # A collapsed early router (one depth for every token) is still adaptive, not a frontier point.
    for router, depths in (("fixed", [6]), ("early", [2, 3, 5]), ("collapsed", [3])):
        for seed in (0, 1):
            correct = rng.random(40) < 0.6
            examples.append(
                pd.DataFrame(
                    {
                        "task": "brevo",
                        "router": router,
                        "inference_rule": "fixed" if router == "fixed" else "mode",
                        "split": "test",
                        "seed": seed,
                        "example_id": [f"e{i}" for i in range(40)],
                        "correct": correct,
                        "mean_depth": rng.choice(depths, 40).astype(float),
                    }
                )
            )
    examples = pd.concat(examples)
    rows = pareto_rows(examples).set_index("router")
    for router in ("fixed", "early"):
        mine = examples[examples["router"] == router]
        k, n = int(mine["correct"].sum()), len(mine)
        reference = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert rows.loc[router, "accuracy"] == pytest.approx(k / n)
        assert rows.loc[router, "ci_low"] == pytest.approx(reference.low)
        assert rows.loc[router, "ci_high"] == pytest.approx(reference.high)
        assert rows.loc[router, "token_steps"] == pytest.approx(mine["mean_depth"].mean())
        assert rows.loc[router, "n_seeds"] == 2 and rows.loc[router, "n_examples"] == 80
    assert (
        rows.loc["fixed", "fixed_depth"]
        and not rows.loc[["early", "collapsed"], "fixed_depth"].any()
    )
    none_correct = pareto_rows(examples.assign(correct=False))
    assert (none_correct["ci_low"] == 0).all() and (none_correct["ci_high"] > 0).all()


@pytest.mark.parametrize("router", ["fixed", "early", "online"])
def test_compute_per_token_is_the_models_accounting_over_every_token(router, tiny_dataset):
    frame = load_split(tiny_dataset["brevo"], "test").head(10)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=64, d_model=32, n_heads=2, max_depth=4, router=router)
    model = AniraModel(cfg).eval()
    per_token = compute_per_token(model, frame, batch_size=3)
    n_tokens = sum(len(t) for t in frame["tokens"])
    with torch.no_grad():  # one example at a time: no padding, so every token counts
        totals = [model.flops(model(torch.tensor([list(t)]))) for t in frame["tokens"]]
    for key in ("head_calls", "core_flops", "head_flops", "flops"):
        expected = sum(total[key] for total in totals) / n_tokens
        assert per_token[f"{key}_per_token"] == pytest.approx(expected, rel=1e-9)
    heads = {"fixed": 0.0, "early": 1.0}
    if router in heads:
        assert per_token["head_calls_per_token"] == heads[router]


def test_both_online_rules_are_points_of_the_frontier(tiny_dataset, tmp_path):
    """An online model evaluated with its trained median and with mode: two rows of the table,
    each with the accuracy of its own records and the FLOPs of its own rule, both read against
    the fixed-depth frontier; the figure draws them as two labelled points."""
    data = tiny_dataset["brevo"]
    splits = ["test", "extrap"]
    models = []
    for router, rule in (("fixed1", None), ("fixed", None), ("online", None), ("online", "mode")):
        ckpt = tmp_path / "ckpt" / router
        if not ckpt.exists():
            train_overrides = [*tiny_task("brevo"), *TINY_SCALE, f"router={router}", "seed=0"]
            train(compose("train", [*train_overrides, f"data_dir={data}", f"out_dir={ckpt}"]))
        out = tmp_path / "eval" / f"{router}-{rule}"
        overrides = [f"checkpoint={ckpt}", f"data_dir={data}", f"out_dir={out}"]
        overrides += [f"splits=[{','.join(splits)}]", "max_train_examples=0"]
        if rule is not None:
            overrides.append(f"inference_rule={rule}")
        evaluate(compose("evaluate", overrides))
        models.append((ckpt, out))
    table_path = tmp_path / "pareto.csv"
    args = ["--out", str(table_path), "--splits", *splits, "--max-examples", "8"]
    for ckpt, out in models:
        args += ["--model", str(ckpt), str(data), str(out)]
    pareto.main(args)
    table = pd.read_csv(table_path)
    online = table[table["router"] == "online"].set_index(["inference_rule", "split"])
    assert sorted(online.index.get_level_values(0).unique()) == ["median", "mode"]
    for (rule, split), row in online.iterrows():
        records = pd.read_parquet(
            models[2 if rule == "median" else 3][1] / f"{split}.examples.parquet"
        )
        assert row["accuracy"] == pytest.approx(records["correct"].mean())
        assert row["token_steps"] == pytest.approx(records["mean_depth"].mean())
        assert not row["fixed_depth"]
    # The FLOPs follow each rule: mode and median run different depths on the same examples.
    assert not np.allclose(
        online.xs("mode")["core_flops_per_token"], online.xs("median")["core_flops_per_token"]
    )
    fixed = table[table["fixed_depth"]]
    assert set(fixed["router"]) == {"fixed1", "fixed"}
    apply_style()
    fig = fig_pareto.draw(table)
    labels = fig.axes[-1].get_legend().get_texts()
    assert {"online (median)", "online (mode)"} <= {text.get_text() for text in labels}
