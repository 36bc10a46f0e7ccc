"""Training: exact resume, outputs and manifest, bad inputs rejected before any work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from anira.io import AniraInputError, verify_manifest
from anira.spec import RunSpec
from anira.train import Curriculum, Status, batch_indices, dynamics_steps, lr_factor, train
from tests.factories import TINY_SCALE, train_cfg


def test_batches_cover_each_epoch_once_and_are_reproducible():
    steps_per_epoch = 100 // 16
    epoch = np.concatenate([batch_indices(s, 100, 16, seed=1) for s in range(steps_per_epoch)])
    assert len(set(epoch.tolist())) == len(epoch) == steps_per_epoch * 16
    assert np.array_equal(batch_indices(7, 100, 16, 1), batch_indices(7, 100, 16, 1))
    assert not np.array_equal(batch_indices(7, 100, 16, 1), batch_indices(7, 100, 16, 2))


def test_curriculum_admits_sizes_in_order_then_samples_epochs():
    sizes = np.repeat([1, 2, 4], 40)  # 120 examples; stages over the first 60 of 100 steps
    curriculum = Curriculum(sizes, fraction=0.6, total_steps=100)
    largest = [sizes[curriculum.batch(step, 16, seed=0)].max() for step in range(100)]
    assert largest[:30] == [1] * 30  # stage 1: size 1 only
    assert set(largest[30:60]) == {2}  # stage 2: sizes ≤ 2 (a batch of 16 meets a 2)
    assert set(largest[60:]) == {4}
    for step in (0, 45, 60, 99):
        batch = curriculum.batch(step, 16, seed=0)
        assert len(set(batch.tolist())) == 16
        assert np.array_equal(batch, curriculum.batch(step, 16, seed=0))
    assert np.array_equal(curriculum.batch(70, 16, 0), batch_indices(70, 120, 16, 0))
    off = Curriculum(sizes, fraction=0.0, total_steps=100)
    assert np.array_equal(off.batch(3, 16, 0), batch_indices(3, 120, 16, 0))
    with pytest.raises(AniraInputError, match="curriculum"):
        Curriculum(sizes, fraction=1.0, total_steps=100)


def test_task_adjusts_the_training_budget_of_its_scale(tiny_dataset, tmp_path):
    adjust = ["+task.scales.mini.training={steps_factor: 2.5, lr: 0.5}"]
    settings = RunSpec.from_config(train_cfg(tiny_dataset["brevo"], tmp_path, extra=adjust)).train
    assert (settings.steps, settings.lr, settings.batch_size) == (30, 0.5, 16)  # 12 × 2.5
    assert RunSpec.from_config(train_cfg(tiny_dataset["brevo"], tmp_path)).train.steps == 12
    own = train_cfg(tiny_dataset["brevo"], tmp_path, own_steps_factor=True)
    assert RunSpec.from_config(own).train.steps == 36  # BREVO's mini factor 3 × 12
    bad = ["+task.scales.mini.training={steps_factor: 0}"]
    with pytest.raises(AniraInputError, match="steps_factor"):
        RunSpec.from_config(train_cfg(tiny_dataset["brevo"], tmp_path, extra=bad))


def test_lr_schedule_warms_up_then_decays_to_floor():
    factors = [lr_factor(s, warmup=10, total=110, min_ratio=0.1) for s in range(111)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert factors[-1] == pytest.approx(0.1)


@pytest.mark.parametrize(
    "router", ["fixed", "fixed1", "early", "online", "act", "expert_choice", "pondernet"]
)
def test_training_writes_checkpoint_metrics_and_manifest(tiny_dataset, tmp_path, router):
    out = tmp_path / router
    train(train_cfg(tiny_dataset["brevo"], out, router))
    verify_manifest(out, ["model.pt", "metrics.jsonl", "config.yaml"])
    assert not (out / "last.pt").exists()
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["step"] == 12 and state["config"]["router"]["name"] == router
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3  # logged every 4 of 12 steps
    # fixed1 is a fixed-depth baseline: the fixed router at D' = 1 instead of the task's D;
    # pondernet is the online router trained by PonderNet's expected loss
    task_depth = state["config"]["task"]["scales"]["mini"]["max_depth"]
    model = state["model_config"]
    kind = {"fixed1": "fixed", "pondernet": "online"}.get(router, router)
    assert model["router"] == kind and task_depth > 1
    assert model["estimator"] == ("expected" if router == "pondernet" else "unroll")
    assert model["max_depth"] == (1 if router == "fixed1" else task_depth)


@pytest.mark.parametrize("curriculum", [0.0, 0.5])
def test_interrupted_run_resumes_to_identical_weights(tiny_dataset, tmp_path, curriculum):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    extra = [f"++task.scales.mini.curriculum={curriculum}"]
    train(train_cfg(tiny_dataset["brevo"], straight, "online", extra))
    stop = train(
        train_cfg(tiny_dataset["brevo"], resumed, "online", [*extra, "stop_after_steps=5"])
    )
    assert stop is Status.STOPPED and (resumed / "last.pt").is_file()
    assert not (resumed / "model.pt").exists()
    train(train_cfg(tiny_dataset["brevo"], resumed, "online", extra))
    a = torch.load(straight / "model.pt", weights_only=True)
    b = torch.load(resumed / "model.pt", weights_only=True)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    # Every logged row, not just the last: the window the run stopped in (steps 5-8) needs the
    # metric sums saved at step 5, the history needs the rows logged before the stop.
    timing = ("tokens_per_s",)
    rows_a = [{k: v for k, v in row.items() if k not in timing} for row in a["metrics"]]
    rows_b = [{k: v for k, v in row.items() if k not in timing} for row in b["metrics"]]
    assert [row["step"] for row in rows_a] == [4, 8, 12]
    assert rows_b == rows_a
    assert (straight / "metrics.jsonl").read_text().count("\n") == 3
    logged = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in row.items() if k not in timing} for row in logged] == rows_a


def test_dynamics_steps_are_log_spaced_from_warmup_to_the_last_step():
    steps = dynamics_steps(800, 50, 8)
    assert steps == [50, 74, 110, 164, 244, 362, 538, 800]
    # Log-spaced: equal ratios of consecutive steps, 16^(1/7) each (up to rounding).
    ratios = np.diff(np.log(steps))
    np.testing.assert_allclose(ratios, np.log(16) / 7, atol=0.02)
    assert dynamics_steps(250_000, 2000, 8)[0] == 2000 and dynamics_steps(250_000, 2000, 8)[-1]
    assert dynamics_steps(12, 0, 3) == [1, 3, 12]  # no warmup: from step 1
    assert dynamics_steps(6, 50, 4) == [6]  # warmup past the end: the last step only
    assert dynamics_steps(800, 50, 0) == []


# BREVO sets its own count (and a steps factor) at mini: a task's adjustment wins over the
# scale's. Warmup 2 of 12 steps: steps 2, 4, 7, 12.
DYNAMICS = [
    "task.scales.mini.training.dynamics_checkpoints=4",
    "task.scales.mini.training.steps_factor=1",
]


def test_dynamics_weights_are_those_of_the_run_at_each_step(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    train(train_cfg(tiny_dataset["brevo"], out, "early", DYNAMICS))
    kept = [f"dynamics/step{step:07d}.pt" for step in (2, 4, 7, 12)]
    verify_manifest(out, ["model.pt", "metrics.jsonl", "config.yaml", *kept])
    assert sorted(p.name for p in (out / "dynamics").iterdir()) == [Path(k).name for k in kept]
    final = torch.load(out / "model.pt", weights_only=True)
    for name in kept:
        state = torch.load(out / name, weights_only=True)
        assert state["config"] == final["config"] and "optimizer" not in state
        step = state["step"]
        # The same run stopped at that step holds the same weights in its last.pt.
        stopped = tmp_path / f"stopped{step}"
        train(
            train_cfg(
                tiny_dataset["brevo"], stopped, "early", [*DYNAMICS, f"stop_after_steps={step}"]
            )
        )
        reference = torch.load(
            stopped / ("model.pt" if step == 12 else "last.pt"), weights_only=True
        )
        assert reference["step"] == step
        for key, tensor in reference["model"].items():
            assert torch.equal(tensor, state["model"][key]), (step, key)


def test_resume_keeps_the_dynamics_weights_and_a_fresh_start_drops_stale_ones(
    tiny_dataset, tmp_path
):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(train_cfg(tiny_dataset["brevo"], straight, "online", DYNAMICS))
    train(train_cfg(tiny_dataset["brevo"], resumed, "online", [*DYNAMICS, "stop_after_steps=5"]))
    assert sorted(p.name for p in (resumed / "dynamics").iterdir()) == [
        "step0000002.pt",
        "step0000004.pt",
    ]
    train(train_cfg(tiny_dataset["brevo"], resumed, "online", DYNAMICS))
    for path in sorted((straight / "dynamics").iterdir()):
        assert (resumed / "dynamics" / path.name).read_bytes() == path.read_bytes(), path.name
    assert (resumed / "manifest.json").read_bytes() == (straight / "manifest.json").read_bytes()
    # force=true retrains from step 0 without dynamics weights: none of the old ones stay.
    no_dynamics = ["task.scales.mini.training.dynamics_checkpoints=0", "force=true"]
    train(train_cfg(tiny_dataset["brevo"], resumed, "online", no_dynamics))
    assert not (resumed / "dynamics").exists()
    verify_manifest(resumed)


def test_resume_from_another_configuration_is_refused(tiny_dataset, tmp_path):
    assert train(train_cfg(tiny_dataset["brevo"], tmp_path, "early", ["stop_after_steps=4"])) is (
        Status.STOPPED
    )
    with pytest.raises(AniraInputError, match="another configuration"):
        train(train_cfg(tiny_dataset["brevo"], tmp_path, "online"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["router=nope"], "unknown router 'nope'"),
        (["task.scales.mini.max_depth=0"], "task.scales.mini.max_depth must be a positive integer"),
        (["data_dir=does/not/exist"], "not found"),
        (["task=mano"], "holds task"),
        (["router=fixed", "router.depth=99"], "router.depth must be at most"),
        (["router=early", "++router.depth=2"], "router.depth needs a fixed router"),
        (["router=early", "router.estimator=nope"], "router.estimator must be one of"),
        (["router=early", "router.kind=nope"], "router.kind must be one of"),
        (["router=expert_choice", "router.capacity_ratio=0"], "router.capacity_ratio must be"),
        (["router=act", "router.act_epsilon=1"], "act_epsilon must be in (0, 1)"),
        (["router=early", "router.estimator=expected"], "needs the online router"),
    ],
)
def test_bad_input_is_one_line_error_and_writes_nothing(tiny_dataset, tmp_path, args, message):
    out = tmp_path / "ckpt"
    base = [*TINY_SCALE, "task=brevo", f"data_dir={tiny_dataset['brevo']}", f"out_dir={out}"]
    result = subprocess.run(
        [sys.executable, "-m", "anira.train", *base, *args], capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not out.exists()
