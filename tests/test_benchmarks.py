"""The router sweep harness end to end on a tiny dataset (the numbers it reports are measured in
benchmarks/results/; here only that it runs the real apps and reports consistent rows)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from anira.memory import training_plan
from anira.model import ModelConfig
from tests.factories import ROOT, TINY_SCALE


def test_router_sweep_reports_every_rule_and_a_consistent_histogram(tiny_dataset, tmp_path):
    out = tmp_path / "sweep.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks/sweep_router.py"),
        "--routers=online",
        "--settings=0.01:1,0.01:2",
        "--jobs=2",
        f"--data-dir={tiny_dataset['brevo']}",
        f"--keep={tmp_path / 'keep'}",
        f"--out={out}",
        *TINY_SCALE,
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "[2/2] online" in result.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [(r["prior_base"], r["inference_rule"]) for r in rows] == [
        (1.0, "median"),
        (1.0, "mode"),
        (2.0, "median"),
        (2.0, "mode"),
    ]
    for row in rows:
        histogram = row["depth_histogram"]
        assert sum(histogram.values()) == pytest.approx(1.0, abs=1e-3)
        assert row["modal_share"] == pytest.approx(max(histogram.values()), abs=1e-4)
        assert set(map(int, histogram)) <= set(range(1, 7))
        assert all(0.0 <= row[f"accuracy_{s}"] <= 1.0 for s in ("val", "test", "interp", "extrap"))
        name = f"online_g0.01_b{row['prior_base']:g}_seed0_eval_{row['inference_rule']}"
        got, want = row["strongest_alignment"], strongest_by_scipy(tmp_path / "keep" / name)
        assert [a["feature"] for a in got] == [w["feature"] for w in want]
        assert [a["spearman"] for a in got] == pytest.approx(
            [w["spearman"] for w in want], abs=2e-3
        )
        assert all(a["ci"][0] <= a["ci"][1] for a in got)
    best = max(rows, key=lambda r: (r["accuracy_val"], -r["prior_base"]))
    chosen = json.loads(out.read_text())["chosen_on_val"]
    assert (chosen["prior_base"], chosen["accuracy_val"]) == (
        best["prior_base"],
        best["accuracy_val"],
    )
    # The kept runs give the same rows again (an interrupted sweep is summarised from them).
    again = json.loads(json.dumps(load_sweep().rows_from_keep(tmp_path / "keep", "brevo")))
    drop = ("train_seconds", "train_duration")
    assert [{k: v for k, v in r.items() if k not in drop} for r in again] == [
        {k: v for k, v in r.items() if k not in drop} for r in rows
    ]
    assert all(r["train_duration"] for r in again)


def strongest_by_scipy(eval_dir: Path) -> list[dict]:
    """The three features of largest |Spearman| with expected depth, by scipy."""
    tokens = pd.read_parquet(eval_dir / "test.tokens.parquet")
    answers = tokens[tokens["is_answer"]]
    found = []
    for feature in [c for c in answers if c.startswith("f_")]:
        part = answers[answers[feature].notna()]
        if part["expected_depth"].nunique() > 1 and part[feature].nunique() > 1:
            rho = spearmanr(part["expected_depth"], part[feature]).statistic
            found.append((feature.removeprefix("f_"), round(float(rho), 3)))
    found.sort(key=lambda pair: -abs(pair[1]))
    assert found, "the tiny online model must give some defined correlation"
    return [{"feature": name, "spearman": rho} for name, rho in found[:3]]


def load_benchmark(name: str):
    """A script of benchmarks/ as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_sweep():
    return load_benchmark("sweep_router")


def test_a_learning_rate_check_of_fixed_depth_alone_completes(tiny_dataset, tmp_path):
    """Two seeds of fixed D and no adaptive router (the learning-rate check in docs/study.md):
    the compute-aware choice has nothing to choose among, so it is skipped, not a crash."""
    out = tmp_path / "lr.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks/sweep_router.py"),
        "--routers=fixed",
        "--fixed-seeds=0,1",
        "--jobs=2",
        f"--data-dir={tiny_dataset['brevo']}",
        f"--out={out}",
        *TINY_SCALE,
        "scale.train.lr=0.001",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    written = json.loads(out.read_text())
    assert [(r["router"], r["seed"]) for r in written["rows"]] == [("fixed", 0), ("fixed", 1)]
    assert written["chosen_compute_aware"] is None
    assert written["overrides"][-1] == "scale.train.lr=0.001"


def test_router_sweep_settings_are_gamma_base_pairs():
    sweep = load_sweep()
    assert sweep.settings("0.001:2,0.01:1.2") == [(0.001, 2.0), (0.01, 1.2)]
    with pytest.raises(Exception, match="γ:b pairs"):
        sweep.settings("0.001,2")


def test_router_sweep_trains_fixed_depth_routers_once():
    """γ and b shape only an adaptive router's q: a fixed-depth run per pair would be a copy."""
    pairs = [(0.001, 1.0), (0.01, 2.0)]
    routers = ["fixed", "fixed2", "early", "online"]
    grid = load_sweep().sweep_grid("brevo", routers, pairs, [0, 1], [])
    assert grid == [
        ("fixed", 0.0, 1.0, 0),
        ("fixed", 0.0, 1.0, 1),
        ("fixed2", 0.0, 1.0, 0),
        ("fixed2", 0.0, 1.0, 1),
        *[("early", gamma, base, 0) for gamma, base in pairs],
        *[("online", gamma, base, 0) for gamma, base in pairs],
    ]


def sweep_row(router, gamma, base, val, test, **extra) -> dict:
    """A row of the sweep's table, as the selection rules read it."""
    return dict(
        router=router,
        gamma=gamma,
        prior_base=base,
        inference_rule="default",
        accuracy_val=val,
        accuracy_test=test,
        **extra,
    )


def test_router_sweep_chooses_on_val_among_early_runs():
    sweep = load_sweep()
    row = sweep_row
    rows = [
        row("early", 0.1, 1.0, 0.50, 0.90),  # best on test: must not be chosen
        row("early", 0.01, 2.0, 0.70, 0.60),
        row("early", 0.001, 2.0, 0.70, 0.55),  # tie on val: the smaller γ
        row("online", 0.01, 1.0, 0.95, 0.95),  # online is not searched when early was swept
    ]
    assert sweep.choose(rows)["gamma"] == 0.001
    assert sweep.choose(rows[3:])["router"] == "online"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_gpu_check_refuses_without_cuda_in_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu.json"
    command = [sys.executable, str(ROOT / "benchmarks/gpu_check.py"), f"--out={out}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stdout.strip().splitlines() == [
        "error: benchmarks/gpu_check.py needs a CUDA device; none is available"
    ]
    assert not out.exists()


def test_gpu_check_compares_the_plan_with_the_measured_peak():
    """The plan must bound the peak, by at most the tolerance: a plan below the peak, or far
    above it, is flagged."""
    gpu_check = load_benchmark("gpu_check")
    mcfg = ModelConfig(vocab_size=30, d_model=32, n_heads=2)
    plan = training_plan(mcfg, 4, 4, 64, cuda=True)
    fits = gpu_check.compare(plan, plan.total // 2 + 1, tolerance=1.0)
    assert fits["plan_bounds_peak"] and fits["within_tolerance"]
    assert fits["plan_over_measured"] == pytest.approx(2.0, rel=1e-6)
    below = gpu_check.compare(plan, plan.total + 1, tolerance=1.0)
    assert not below["plan_bounds_peak"] and not below["within_tolerance"]
    far = gpu_check.compare(plan, plan.total // 3, tolerance=1.0)
    assert far["plan_bounds_peak"] and not far["within_tolerance"]


def test_compute_aware_rule_takes_the_least_depth_within_the_seed_noise_of_fixed_d():
    sweep = load_sweep()

    def row(router, gamma, base, val, depth):
        return sweep_row(
            router, gamma, base, val, val, mean_executed_depth_val=depth, modal_share_val=0.5
        )

    fixed = [row("fixed", 0.0, 1.0, 0.90, 6.0), row("fixed", 0.0, 1.0, 0.86, 6.0)]
    # noise: 2 · sd(0.90, 0.86) = 0.0566; threshold 0.88 − 0.0566 = 0.8234
    rows = fixed + [
        row("early", 0.001, 1.0, 0.89, 5.9),
        row("early", 0.001, 1.1, 0.83, 3.1),  # admissible, least depth: chosen
        row("early", 0.001, 1.2, 0.82, 2.0),  # below the threshold
        row("online", 0.001, 1.2, 0.90, 1.5),  # online rows are not searched beside early ones
    ]
    result = sweep.choose_compute_aware(rows, 6)
    assert result["noise"] == pytest.approx(2 * 0.04 / 2**0.5)
    assert (result["chosen"]["prior_base"], result["admissible"]) == (1.1, 2)
    assert result["step"] == "within_noise"
    assert sweep.choose(rows)["prior_base"] == 1.0  # the paper's rule: best val accuracy
    # None within the noise: the best val accuracy among the settings at ≤ 0.8 · D (4.8) ...
    below = [
        row("early", 0.001, b, val, depth)
        for b, val, depth in [(1, 0.6, 5.9), (1.05, 0.5, 4.0), (1.2, 0.4, 1.2)]
    ]
    fallback = sweep.choose_compute_aware(fixed + below, 6)
    assert (fallback["step"], fallback["chosen"]["prior_base"]) == ("allocating", 1.05)
    # ... and the paper's rule when none allocates either.
    last = sweep.choose_compute_aware(fixed + below[:1], 6)
    assert (last["step"], last["chosen"]["prior_base"]) == ("best_accuracy", 1)
    with pytest.raises(ValueError, match="2 seeds"):
        sweep.choose_compute_aware(rows[1:], 6)
