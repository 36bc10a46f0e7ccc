"""Matched-compute controls: the random router's depths follow the given histogram and no feature
(scipy, the alignment analysis), a control is trained from its matched model's val evaluation, and
the controls table's intervals and scorecard rows (anira.analysis.controls)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from scipy import stats

from anira.analysis import pareto
from anira.analysis.alignment import alignment_table
from anira.analysis.alignment import main as alignment_main
from anira.analysis.controls import (
    controls_table,
    main,
    paired_bootstrap,
    val_depth_histogram,
)
from anira.batches import PaddedSplit
from anira.compose import compose
from anira.dataset import load_split
from anira.evaluate import evaluate
from anira.generate import generate_dataset
from anira.inference import inference_rule, teacher_forced
from anira.io import AniraInputError, write_manifest
from anira.model import AniraModel, ModelConfig
from anira.spec import DatasetSpec, compose_run
from anira.train import train
from tests.factories import FROM_CSV, TINY_SCALE, tiny_task

PROBS = (0.05, 0.1, 0.15, 0.2, 0.2, 0.3)


def random_control(probs=PROBS, vocab: int = 30, seed: int = 0) -> AniraModel:
    cfg = ModelConfig(
        vocab_size=vocab, max_seq_len=128, d_model=32, n_heads=2, max_depth=len(probs),
        router="random", depth_probs=probs, execution="packed", draw_salt=seed,
    )  # fmt: skip
    torch.manual_seed(0)
    return AniraModel(cfg).eval()


@pytest.mark.parametrize("training", [False, True])
def test_random_depths_follow_the_given_histogram(training):
    model = random_control().train(training)
    tokens = torch.randint(1, 30, (64, 100), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    with torch.no_grad():
        depth = model(tokens).depth.flatten()
    observed = np.bincount(depth.numpy(), minlength=len(PROBS) + 1)[1:]
    expected = np.array(PROBS) * len(depth)
    assert stats.chisquare(observed, expected).pvalue > 0.001, observed
    # The same test rejects a histogram shifted by one depth (an off-by-one in the inverse CDF).
    shifted = np.roll(expected, 1)
    assert stats.chisquare(observed, shifted).pvalue < 1e-6


def test_random_depths_are_fresh_in_training_and_fixed_at_inference():
    model = random_control()
    tokens = torch.randint(1, 30, (8, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(tokens).depth, model(tokens).depth)
        model.train()
        assert not torch.equal(model(tokens).depth, model(tokens).depth)


def test_each_seed_is_an_independent_draw_at_inference():
    """The run's seed salts the inference draws: seeds agree on a token's depth no more often
    than two independent draws from the histogram do (Σ p²), one seed agrees with itself."""
    tokens = torch.randint(1, 30, (64, 100), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        depths = [random_control(seed=seed)(tokens).depth.flatten() for seed in (0, 1, 2, 1)]
    assert torch.equal(depths[1], depths[3])
    chance = sum(p * p for p in PROBS)
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        agree = (depths[a] == depths[b]).float().mean().item()
        assert abs(agree - chance) < 0.02, (a, b, agree, chance)
    assert (
        compose_run(
            "brevo", "random", "mini", 2, ("router.depth_probs=[0,0,1,0,0,0]",)
        ).model.draw_salt
        == 2
    )


@pytest.fixture(scope="module")
def brevo_records(tmp_path_factory):
    """Teacher-forced answer-token records (t − 1 pairing, features) of a random control on a
    generated BREVO test split of ≈ 700 examples."""
    cfg = compose(
        "generate",
        ["task=brevo", "task.scales.mini.n_train=16", "task.scales.mini.n_eval_per_size=240"]
        + ["seed=0", "out_dir=unused"],
    )
    directory = tmp_path_factory.mktemp("brevo_alignment")
    generate_dataset(DatasetSpec.resolve(cfg.task, "mini", 0), directory)
    frame = load_split(directory, "test")
    data = PaddedSplit.from_frame(frame)
    model = random_control(vocab=int(data.tokens.max()) + 1)
    tf = teacher_forced(model, data, 128, torch.device("cpu"))
    parts = []
    for row, record in enumerate(frame.itertuples(index=False)):
        n = len(record.tokens)
        part = {
            "task": "brevo",
            "router": "random",
            "split": "test",
            "seed": 0,
            "example_id": record.id,
            "is_answer": np.asarray(record.answer_mask, dtype=bool)[1:],
            "executed_depth": tf["depth"][row, 1:n],
            "expected_depth": tf["expected"][row, 1:n],
        }
        for name in (c for c in frame.columns if c.startswith("f_")):
            part[name] = np.asarray(getattr(record, name), dtype=float)[1:]
        parts.append(pd.DataFrame(part))
    return pd.concat(parts, ignore_index=True)


def test_random_control_aligns_with_no_feature(brevo_records):
    """Every feature's Spearman interval (Bonferroni over the features) contains 0; the same
    analysis finds a planted dependence of depth on a feature."""
    depths = {("t-1", "executed"): "executed_depth"}
    n_features = sum(c.startswith("f_") for c in brevo_records.columns)
    level = 1 - 0.05 / n_features
    table = alignment_table(brevo_records, n_boot=400, ci=level, depths=depths)
    spearman = table[(table["method"] == "spearman")].dropna(subset=["estimate"])
    assert len(spearman) == n_features and spearman["n_tokens"].min() > 1000
    assert (spearman["ci_low"] <= 0).all() and (spearman["ci_high"] >= 0).all(), spearman
    assert spearman["estimate"].abs().max() < 0.1

    # Planted: a token's depth grows with one feature (a control that looks at the token).
    feature = spearman.loc[spearman["n_tokens"].idxmax(), "feature"]
    values = brevo_records[f"f_{feature}"]
    drawn = brevo_records["executed_depth"]
    looking = brevo_records.assign(executed_depth=np.where(values > values.median(), 6, drawn))
    planted = alignment_table(looking, n_boot=400, ci=level, depths=depths)
    hit = planted[(planted["method"] == "spearman") & (planted["feature"] == feature)].iloc[0]
    assert hit["ci_low"] > 0


def val_records(directory, answer_depths, prompt_depths):
    """An evaluation directory with val token records: answer tokens at ``answer_depths``,
    prompt tokens at ``prompt_depths``."""
    depths = [*answer_depths, *prompt_depths]
    tokens = pd.DataFrame(
        {
            "is_answer": [True] * len(answer_depths) + [False] * len(prompt_depths),
            "executed_depth": np.array(depths, dtype=np.int16),
        }
    )
    tokens.to_parquet(directory / "val.tokens.parquet", index=False)
    write_manifest(directory, ["val.tokens.parquet"])
    return directory


def test_val_histogram_counts_answer_tokens_only(tmp_path):
    val_records(tmp_path, [1, 1, 2, 6], [3, 3, 3])
    assert val_depth_histogram(tmp_path, 6) == [0.5, 0.25, 0.0, 0.0, 0.0, 0.25]
    with pytest.raises(AniraInputError, match="outside 1..4"):
        val_depth_histogram(tmp_path, 4)


def test_a_random_router_needs_a_distribution_or_a_model_to_match():
    with pytest.raises(AniraInputError, match="depth_probs or router.match"):
        compose_run("brevo", "random", "mini", 0, ("router.match=null",))
    with pytest.raises(AniraInputError, match="list of 6 probabilities"):
        compose_run("brevo", "random", "mini", 0, ("router.depth_probs=[0.5,0.5]",))
    with pytest.raises(AniraInputError, match="sum to 1"):
        compose_run("brevo", "random", "mini", 0, ("router.depth_probs=[0.5,0.5,0.5,0,0,0]",))
    spec = compose_run("brevo", "random", "mini", 0, ("router.depth_probs=[0,0,1,0,0,0]",))
    assert spec.model.depth_probs == (0, 0, 1, 0, 0, 0) and spec.match == "early"
    assert inference_rule(spec.model) == "random"


def test_controls_are_trained_from_the_matched_models_val_depths(tiny_dataset, tmp_path):
    data = tiny_dataset["brevo"]
    base = [*tiny_task("brevo"), *TINY_SCALE, f"data_dir={data}"]
    train(compose("train", [*base, "router=early", f"out_dir={tmp_path / 'early'}"]))
    evaluate(
        compose(
            "evaluate",
            [f"checkpoint={tmp_path / 'early'}", f"data_dir={data}", f"out_dir={tmp_path / 'ev'}"]
            + ["splits=[val,test]", "max_train_examples=0"],
        )
    )
    tokens = pd.read_parquet(tmp_path / "ev" / "val.tokens.parquet")
    depths = tokens.loc[tokens["is_answer"], "executed_depth"]
    want = depths.value_counts(normalize=True).reindex(range(1, 7), fill_value=0.0)
    with pytest.raises(AniraInputError, match="give match_records"):
        train(compose("train", [*base, "router=random", f"out_dir={tmp_path / 'x'}"]))
    for router in ("random", "fixed_mean"):
        out = tmp_path / router
        overrides = [f"router={router}", f"out_dir={out}", f"match_records={tmp_path / 'ev'}"]
        train(compose("train", [*base, *overrides]))
        saved = OmegaConf.load(out / "config.yaml").router
        if router == "random":
            assert saved.depth_probs == pytest.approx(want.tolist())
        else:
            assert saved.depth == round(float(depths.mean()))
        assert "match_records" not in OmegaConf.load(out / "config.yaml")

    # Evaluated like every router, then read by pareto (marked as controls) and controls.csv.
    models = []
    for router in ("early", "random", "fixed_mean"):
        ckpt, out = tmp_path / router, tmp_path / f"eval_{router}"
        if router != "early":
            overrides = [f"checkpoint={ckpt}", f"data_dir={data}", f"out_dir={out}"]
            evaluate(compose("evaluate", [*overrides, "splits=[test]"]))
        models.append((ckpt, out if router != "early" else tmp_path / "ev"))
    args = ["--splits", "test", "--max-examples", "8"]
    pareto.main(["--out", str(tmp_path / "pareto.csv"), *args, *model_args(models, data)])
    table = pd.read_csv(tmp_path / "pareto.csv").set_index("router")
    assert table["control"].to_dict() == {"early": False, "random": True, "fixed_mean": True}
    assert (
        table.loc["random", "matches"] == "early"
        and table.loc["random", "inference_rule"] == "random"
    )
    alignment = ["--out", str(tmp_path / "alignment.csv"), "--curves", str(tmp_path / "c.csv")]
    alignment += ["--splits", "test", "--bootstrap", "20"]
    alignment_main([*alignment, *(str(e) for _, e in models)])
    controls_args = ["--out", str(tmp_path / "controls.csv"), "--bootstrap", "50"]
    controls_args += ["--splits", "test"]
    controls_args += ["--alignment", str(tmp_path / "alignment.csv")]
    main([*controls_args, *model_args(models)])
    controls = pd.read_csv(tmp_path / "controls.csv").set_index("control")
    assert sorted(controls.index) == ["fixed_mean", "random"]
    assert set(controls["control_kind"]) == {"random", "fixed"}
    test = pd.read_parquet(tmp_path / "eval_random" / "test.examples.parquet")
    assert controls.loc["random", "accuracy_control"] == pytest.approx(
        test["correct"].mean(), **FROM_CSV
    )
    assert controls.loc["random", "compute_control"] == pytest.approx(
        test["mean_depth"].mean(), **FROM_CSV
    )


def model_args(models, data=None) -> list[str]:
    """``--model CKPT [DATA] EVAL`` for each (checkpoint, evaluation)."""
    args = []
    for ckpt, out in models:
        args += ["--model", str(ckpt), *([str(data)] if data else []), str(out)]
    return args


def examples_frame(correct: dict[tuple[str, int], np.ndarray], depth: dict[str, float]):
    rows = []
    for (router, seed), values in correct.items():
        rows += [
            {
                "task": "lano",
                "router": router,
                "seed": seed,
                "split": "test",
                "example_id": i,
                "correct": bool(v),
                "mean_depth": depth[router],
            }
            for i, v in enumerate(values)
        ]
    return pd.DataFrame(rows)


MODELS = pd.DataFrame(
    [
        {"task": "lano", "router": "early", "kind": "early", "match": None, "max_depth": 6},
        {"task": "lano", "router": "random", "kind": "random", "match": "early", "max_depth": 6},
    ]
)


def test_one_seed_interval_is_the_paired_example_bootstrap():
    rng = np.random.default_rng(0)
    a, c = rng.random(400) < 0.7, rng.random(400) < 0.6
    frame = examples_frame({("early", 0): a, ("random", 0): c}, {"early": 3.0, "random": 3.1})
    columns = ["task", "router", "split", "feature", "pairing", "depth", "method", "estimate"]
    table = controls_table(frame, MODELS, pd.DataFrame(columns=columns), n_boot=4000)
    got = table.iloc[0]
    assert got["difference"] == pytest.approx(a.mean() - c.mean())
    reference = stats.bootstrap(
        (a.astype(float), c.astype(float)),
        lambda x, y: np.mean(x - y),
        paired=True,
        method="percentile",
        n_resamples=4000,
        random_state=1,
    ).confidence_interval
    assert got["ci_low"] == pytest.approx(reference.low, abs=0.01)
    assert got["ci_high"] == pytest.approx(reference.high, abs=0.01)
    assert (got["compute_adaptive"], got["compute_control"]) == pytest.approx((3.0, 3.1))
    assert got["n_seeds"] == 1


def test_seed_to_seed_variation_widens_the_interval():
    """Two seeds whose differences disagree (+0.2 and −0.2): the hierarchical interval spans
    both, an examples-only interval of the pooled examples would be about ±0.05."""
    rng = np.random.default_rng(1)
    diffs = [
        rng.choice([0.0, 1.0], 300, p=[0.8, 0.2]),
        -rng.choice([0.0, 1.0], 300, p=[0.8, 0.2]),
    ]
    low, high = paired_bootstrap(diffs, 4000, 0.95, np.random.default_rng(2))
    assert low < -0.15 and high > 0.15
    pooled = paired_bootstrap([np.concatenate(diffs)], 4000, 0.95, np.random.default_rng(2))
    assert pooled[1] - pooled[0] < 0.15


def test_cli_rejects_a_missing_alignment_table(tmp_path):
    with pytest.raises(AniraInputError, match="cannot read table"):
        main(
            ["--out", str(tmp_path / "c.csv"), "--alignment", str(tmp_path / "none.csv")]
            + ["--model", str(tmp_path), str(tmp_path)]
        )
    assert not (tmp_path / "c.csv").exists()
