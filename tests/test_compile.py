"""Compiled execution (``model.compile``) equals eager execution, and falls back to eager.

The compiled test pays inductor's compilation (tens of seconds on a 2-core CPU, ≈4 graphs), so it
uses one tiny model and one batch shape per path; the fallback tests fake the failures."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from anira.model import AniraModel, ModelConfig
from anira.model.decode import generate
from anira.model.execution import CORE_HALVES
from tests.factories import forward_backward, ragged_batch

TOL = 1e-5  # float32 rounding: inductor fuses and reorders the same operations


def twins(**kw) -> tuple[AniraModel, AniraModel]:
    """The same weights, eager and compiled; an online router with spread halting decisions."""
    cfg = ModelConfig(
        vocab_size=19, max_seq_len=40, d_model=16, n_heads=2, max_depth=4, router="online", **kw
    )
    torch.manual_seed(0)
    eager = AniraModel(cfg)
    torch.nn.init.normal_(eager.router.head[-1].weight, std=0.3)
    torch.nn.init.constant_(eager.router.head[-1].bias, -1.0)
    compiled = AniraModel(dataclasses.replace(cfg, compile=True))
    compiled.load_state_dict(eager.state_dict())
    return eager, compiled


@pytest.mark.slow
@pytest.mark.parametrize(
    ("estimator", "execution"), [("unroll", "dense"), ("rescale_final", "packed")]
)
def test_compiled_training_step_equals_eager(estimator, execution):
    """The dense unroll (estimator unroll) and the packed iteration (rescale_final, packed):
    logits, depths, loss and every gradient within float tolerance of eager, on two batch widths
    (dynamic shapes: the second width must not change the result either)."""
    eager, compiled = twins(estimator=estimator, execution=execution)
    assert compiled.core_steps.compiled is not None, "torch.compile should be available here"
    for lengths in ((23, 7, 16, 1), (11, 9, 3)):
        tokens, answer = ragged_batch(1, lengths)
        a, loss_a, grads_a = forward_backward(eager, tokens, answer, None, train=True)
        b, loss_b, grads_b = forward_backward(compiled, tokens, answer, None, train=True)
        assert torch.equal(a.depth, b.depth)
        assert a.depth[tokens != 0].unique().numel() >= 2, "the batch should be ragged"
        logits = (a.logits - b.logits).abs().max().item()
        grad = max((grads_a[n] - grads_b[n]).abs().max().item() for n in grads_a)
        print(f"compiled vs eager {estimator}/{execution} {lengths}: logits {logits} grad {grad}")
        assert logits < TOL and grad < TOL and abs(loss_a.item() - loss_b.item()) < TOL
    assert compiled.core_steps.compiled is not None, "compilation must not have fallen back"


def test_unavailable_compiler_falls_back_to_eager_with_one_log_line(monkeypatch, caplog):
    def refuse(fn, **kw):
        raise RuntimeError("torch.compile is not supported\non this Python")

    monkeypatch.setattr(torch, "compile", refuse)
    eager, compiled = twins()
    tokens, answer = ragged_batch()
    with caplog.at_level(logging.WARNING):
        a, _, _ = forward_backward(eager, tokens, answer, None, train=True)
        b, _, _ = forward_backward(compiled, tokens, answer, None, train=True)
    assert compiled.core_steps.compiled is None
    assert torch.equal(a.logits, b.logits)
    lines = [r.getMessage() for r in caplog.records if "torch.compile" in r.getMessage()]
    assert lines == [
        "torch.compile unavailable, running eager: torch.compile is not supported on this Python"
    ]


def test_compilation_failing_at_the_first_call_falls_back_to_eager(monkeypatch, caplog):
    calls = []

    def fails_when_called(fn, **kw):
        def compiled(*args):
            calls.append(fn)
            raise RuntimeError("BackendCompilerFailed: no C++ compiler")

        return compiled

    monkeypatch.setattr(torch, "compile", fails_when_called)
    eager, compiled = twins(execution="packed", estimator="rescale_final")
    tokens, answer = ragged_batch()
    with caplog.at_level(logging.WARNING):
        a, loss_a, grads_a = forward_backward(eager, tokens, answer, None, train=True)
        b, loss_b, grads_b = forward_backward(compiled, tokens, answer, None, train=True)
    assert len(calls) == 1, "after the failure no compiled function is called again"
    assert torch.equal(a.logits, b.logits) and torch.equal(loss_a, loss_b)
    assert all(torch.equal(grads_a[n], grads_b[n]) for n in grads_a)
    messages = [r.getMessage() for r in caplog.records if "torch.compile" in r.getMessage()]
    assert len(messages) == 1 and "no C++ compiler" in messages[0]


def test_cached_decoding_runs_the_compiled_core_step(monkeypatch):
    """Decoding's core iterations call the same (compiled) core step as the forward pass."""
    calls = []

    def recording(fn, **kw):
        def compiled(*args):
            calls.append(fn)
            return fn(*args)

        return compiled

    monkeypatch.setattr(torch, "compile", recording)
    eager, compiled = twins()
    buffer = torch.zeros((3, 30), dtype=torch.long)
    buffer[:, :6] = torch.randint(3, 19, (3, 6), generator=torch.Generator().manual_seed(0))
    cur, stop = torch.tensor([6, 2, 4]), torch.tensor([20, 30, 12])
    a = generate(eager.eval(), buffer, cur, stop, 2)
    b = generate(compiled.eval(), buffer, cur, stop, 2)
    assert set(calls) == set(CORE_HALVES.values()), "both halves of every step, compiled"
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
