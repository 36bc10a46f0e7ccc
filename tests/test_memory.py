"""The memory plan (anira.memory) against measured CPU peaks, the micro-batch it picks, and
gradient accumulation in training: micro-batches give the whole batch's gradient."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from anira.io import AniraInputError
from anira.memory import (
    GB,
    activation_bytes,
    fit_evaluation,
    fit_training,
    measured_peak,
    saved_bytes,
    training_plan,
)
from anira.model import AniraModel, ModelConfig
from anira.train import Run, train_step

SMALL = ModelConfig(vocab_size=30, max_seq_len=512, d_model=64, n_heads=4)
# Shapes unlike the probe's (one sequence of 8–24 tokens): longer, batched, other routers/depths.
SHAPES = [
    (dataclasses.replace(SMALL, router="early"), 4, 256),
    (dataclasses.replace(SMALL, router="online", vocab_size=70), 2, 300),
    (dataclasses.replace(SMALL, router="fixed", max_depth=14), 8, 64),
]
TOLERANCE = 0.10  # the plan may exceed the measured peak by this fraction, never fall below it


@pytest.mark.parametrize(("mcfg", "batch", "length"), SHAPES)
def test_plan_bounds_the_measured_cpu_peak_within_tolerance(mcfg, batch, length):
    """The probe's extrapolation equals the saved tensors measured at the real shape, and the
    whole plan is within TOLERANCE above the profiler's peak of a full training step."""
    assert activation_bytes(mcfg, batch, length) == pytest.approx(
        saved_bytes(mcfg, batch, length), rel=0.002
    )
    planned = training_plan(mcfg, batch, batch, length, cuda=False).total
    measured = measured_peak(mcfg, batch, length)
    assert measured <= planned <= (1 + TOLERANCE) * measured, (planned, measured)


def test_planning_leaves_the_callers_random_stream_as_it_was():
    """Training plans its memory after seeding: a plan, computed or cached, draws nothing from
    the caller's stream, so a run's draws do not depend on what ran before it in the process."""
    mcfg = dataclasses.replace(SMALL, router="online", d_model=48)  # a key no other test caches
    for _ in range(2):  # computed, then cached
        torch.manual_seed(123)
        expected = torch.rand(4)
        torch.manual_seed(123)
        fit_training(mcfg, 8, 40, 80, "t")
        measured_peak(mcfg, 1, 16)
        assert torch.equal(torch.rand(4), expected)


def test_fit_training_picks_the_fewest_micro_batches_that_fit():
    mcfg = dataclasses.replace(SMALL, router="early")
    whole = training_plan(mcfg, 64, 64, 200, cuda=True)
    assert fit_training(mcfg, 64, 200, whole.total / GB, "t").micro_batch == 64
    half = training_plan(mcfg, 32, 64, 200, cuda=True).total
    plan = fit_training(mcfg, 64, 200, (half + 1) / GB, "t")
    assert (plan.micro_batch, plan.accumulation_steps) == (32, 2)
    assert plan.total <= half + 1
    # Just below a micro-batch of 22 (ceil(64/3)): four micro-batches of 16.
    third = training_plan(mcfg, 22, 64, 200, cuda=True).total
    assert fit_training(mcfg, 64, 200, (third - 1) / GB, "t").micro_batch == 16


def test_a_job_that_cannot_fit_one_sequence_is_one_line_naming_task_need_and_limit():
    with pytest.raises(AniraInputError) as err:
        fit_training(SMALL, 16, 4000, 0.01, "task clrs_floyd_warshall router early")
    message = str(err.value)
    assert "\n" not in message
    assert "task clrs_floyd_warshall" in message and "gpu_mem_gb=0.01" in message
    assert "4000 tokens" in message and " GB at micro-batch 1" in message
    with pytest.raises(AniraInputError, match="evaluation needs"):
        fit_evaluation(SMALL, 8, 4000, 0.01, "task t")


def test_evaluation_batch_is_halved_until_it_fits():
    full = fit_evaluation(SMALL, 64, 400, 100.0, "t")
    assert full.batch == 64
    quarter = fit_evaluation(SMALL, 64, 400, full.total / 3.5 / GB, "t")
    assert quarter.batch == 16 and quarter.total <= full.total / 3.5


def run_of(model: AniraModel) -> Run:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return Run(model, optimizer, scheduler, torch.device("cpu"), {}, "")


def gradients(router: str, splits: list[int]) -> tuple[dict, dict]:
    """The gradients and meter of one train_step on a fixed batch cut into ``splits`` rows each
    (each micro-batch trimmed to its longest sequence), from the same initial weights."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=20, max_seq_len=40, d_model=32, n_heads=2, router=router)
    model = AniraModel(dataclasses.replace(cfg, gamma=0.5, max_depth=3))
    lengths = [40, 12, 25, 33, 8, 19, 40, 27]
    tokens = torch.zeros((8, 40), dtype=torch.long)
    answers = torch.zeros_like(tokens, dtype=torch.bool)
    generator = torch.Generator().manual_seed(1)
    for row, length in enumerate(lengths):
        tokens[row, :length] = torch.randint(1, 20, (length,), generator=generator)
        answers[row, length // 2 : length] = True
    batches, start = [], 0
    for size in splits:
        rows = slice(start, start + size)
        width = max(lengths[rows])
        batches.append((tokens[rows, :width], answers[rows, :width]))
        start += size
    run = run_of(model)
    train_step(run, batches, grad_clip=1e9)
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return grads, run.meter.sums


@pytest.mark.parametrize("router", ["fixed", "early", "online"])
def test_accumulated_micro_batches_give_the_whole_batch_gradient(router, monkeypatch):
    """Same gradient, loss and counts from 1, 2+6 and 3+3+2 micro-batches. The routers' random
    draws (Gumbel noise, online thresholds) are made constant so both runs see the same sample;
    γ = 0.5 makes the KL's normalisation visible in the gradient."""
    if router != "fixed":
        monkeypatch.setattr(torch, "rand_like", lambda x: torch.full_like(x, 0.3))
        monkeypatch.setattr(torch, "rand", lambda *shape, device=None: torch.full(shape[0], 0.3))
    whole, whole_meter = gradients(router, [8])
    for splits in ([2, 6], [3, 3, 2]):
        parts, meter = gradients(router, splits)
        assert whole.keys() == parts.keys()
        for name, grad in whole.items():
            torch.testing.assert_close(parts[name], grad, rtol=1e-4, atol=1e-6, msg=name)
        for key in ("loss", "ce", "kl", "correct", "answers", "tokens", "steps"):
            assert meter[key] == pytest.approx(whole_meter[key], rel=1e-5), key
