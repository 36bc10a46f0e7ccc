"""Packed execution equals the dense reference: outputs, depths, loss and gradients.

Every comparison prints its max absolute difference (``pytest -s`` shows them)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from anira.io import AniraInputError
from anira.model import execution as execution_module
from anira.model.execution import (
    MEASURED_DEVICE,
    PASSES,
    measured_crossover,
    measured_crossovers,
    visible_keys,
)
from tests.factories import forward_backward, max_diffs, pair, ragged_batch

TOL = 2e-5


@pytest.mark.parametrize("router", ["early", "online", "act", "expert_choice"])
@pytest.mark.parametrize("train", [True, False])
def test_packed_equals_dense_for_random_depths(router, train):
    dense, packed = pair(router)
    tokens, answer = ragged_batch()
    depth = torch.randint(1, 6, tokens.shape, generator=torch.Generator().manual_seed(2))
    diffs = max_diffs(dense, packed, tokens, answer, depth, train)
    assert max(diffs.values()) < TOL, diffs


@pytest.mark.parametrize("router", ["early", "online", "act", "expert_choice", "random"])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("seed", [1, 2])
def test_packed_equals_dense_with_router_decisions(router, train, seed):
    dense, packed = pair(router, online_rule="mode" if seed == 2 else "median")
    tokens, answer = ragged_batch(seed, lengths=(30, 12, 30, 5, 21, 2))
    diffs = max_diffs(dense, packed, tokens, answer, None, train)
    assert max(diffs.values()) < TOL, diffs
    dense.train(train)
    torch.manual_seed(7)
    depths = dense(tokens).depth[tokens != 0]
    assert depths.unique().numel() >= 3, "the test should exercise ragged active sets"


def test_single_row_and_single_token_batches():
    dense, packed = pair("online")
    for lengths in ((1,), (9,), (1, 1, 1)):
        tokens, answer = ragged_batch(3, lengths)
        diffs = max_diffs(dense, packed, tokens, answer)
        assert max(diffs.values()) < TOL, diffs


def test_all_tokens_at_max_depth_reproduce_the_fixed_model():
    fixed_dense, _ = pair("fixed")
    _, early_packed = pair("early", gamma=0.0)
    early_packed.load_state_dict(fixed_dense.state_dict(), strict=False)
    tokens, answer = ragged_batch()
    full = torch.full_like(tokens, 5)
    a, loss_a, _ = forward_backward(fixed_dense, tokens, answer, None, train=False)
    b, loss_b, _ = forward_backward(early_packed, tokens, answer, full, train=False)
    diff = (a.logits - b.logits)[tokens != 0].abs().max().item()
    print(f"max diff fixed dense vs early packed at depth D: {diff}")
    assert diff < TOL and abs(loss_a.item() - loss_b.item()) < TOL


def test_active_only_view_packed_equals_dense_and_differs_from_frozen():
    dense, packed = pair("early", halted_view="active_only")
    tokens, answer = ragged_batch()
    depth = torch.randint(1, 6, tokens.shape, generator=torch.Generator().manual_seed(4))
    diffs = max_diffs(dense, packed, tokens, answer, depth)
    assert max(diffs.values()) < TOL, diffs
    frozen, _ = pair("early")
    frozen.eval(), dense.eval()
    with torch.no_grad():
        a, b = frozen(tokens, depth=depth), dense(tokens, depth=depth)
    assert not torch.allclose(a.logits, b.logits, atol=1e-4)


@pytest.mark.parametrize("view", ["frozen", "active_only"])
@pytest.mark.parametrize("limit", [0.0, math.inf])
def test_slot_and_dense_layout_attention_both_equal_dense(monkeypatch, view, limit):
    """Active queries attend in the dense layout (limit 0) or in slots (limit ∞) alike."""
    monkeypatch.setattr(execution_module, "SLOT_ATTENTION_LIMIT", limit)
    dense, packed = pair("online", halted_view=view)
    tokens, answer = ragged_batch(5, lengths=(30, 12, 30, 5, 21, 2))
    depth = torch.randint(1, 6, tokens.shape, generator=torch.Generator().manual_seed(6))
    diffs = max_diffs(dense, packed, tokens, answer, depth)
    assert max(diffs.values()) < TOL, diffs


def test_visible_keys_matches_brute_force():
    """The one mask of the halted-token views (dense, packed and decoding all use it), against
    its definition written as loops: key j visible to a query at t iff j ≤ t and (no view, or j
    is active, or j = t)."""
    g = torch.Generator().manual_seed(3)
    query_pos = torch.randint(0, 9, (3, 5), generator=g)
    active = torch.rand((3, 9), generator=g) < 0.5
    for view in (None, active):
        got = visible_keys(query_pos, 9, view)
        assert got.shape == (3, 1, 5, 9)
        for b, i, j in torch.cartesian_prod(*map(torch.arange, (3, 5, 9))).tolist():
            t = int(query_pos[b, i])
            expected = j <= t and (view is None or bool(active[b, j]) or j == t)
            assert bool(got[b, 0, i, j]) == expected, (b, i, j)


def test_recompute_view_is_the_dense_path():
    dense, recompute = pair("online", halted_view="recompute")
    tokens, answer = ragged_batch()
    a, _, _ = forward_backward(dense, tokens, answer, None, True)
    b, _, _ = forward_backward(recompute, tokens, answer, None, True)
    assert torch.equal(a.logits, b.logits)


@pytest.mark.parametrize("crossover", [0.0, 0.5, 1.0, None])
def test_auto_mixes_dense_and_packed_steps_without_changing_results(crossover):
    dense, auto = pair("early", execution="auto", packed_crossover=crossover)
    tokens, answer = ragged_batch()
    depth = torch.randint(1, 6, tokens.shape, generator=torch.Generator().manual_seed(5))
    diffs = max_diffs(dense, auto, tokens, answer, depth)
    assert max(diffs.values()) < TOL, diffs


def test_measured_crossover_table_and_lookup():
    measured = measured_crossovers()  # benchmarks/results/packed.json
    assert MEASURED_DEVICE == "cpu"
    assert set(measured) == set(PASSES) == {"forward", "forward_backward"}
    for backward, table in ((False, measured["forward"]), (True, measured["forward_backward"])):
        assert all(0.0 <= f <= 1.0 for f in table.values())
        sizes = sorted(table)
        assert measured_crossover(sizes[-1] * 10, backward, "cpu") == table[sizes[-1]]
        assert measured_crossover(1, backward, "cpu") == table[sizes[0]]
        for low, high in zip(sizes, sizes[1:], strict=False):
            assert measured_crossover(high - 1, backward, "cpu") == table[low]
            assert measured_crossover(high, backward, "cpu") == table[high]
        # Measured on the CPU only: on a GPU, auto runs the dense reference.
        assert measured_crossover(sizes[-1], backward, "cuda") == 0.0


@pytest.mark.parametrize(
    "stored",
    [
        None,  # no file
        "{not json",
        {"rows": []},
        {"crossover_table": {"forward": {"163840": 0.5}}},
        {"crossover_table": {"forward": {"163840": 0.5}, "forward_backward": {}}},
        {"crossover_table": {"forward": {"163840": 0.5}, "forward_backward": {"x": 0.5}}},
        {"crossover_table": {"forward": {"163840": 0.5}, "forward_backward": {"163840": 1.5}}},
    ],
)
def test_a_missing_or_incomplete_crossover_file_is_an_input_error(tmp_path, stored):
    path = tmp_path / "packed.json"
    if stored is not None:
        path.write_text(stored if isinstance(stored, str) else json.dumps(stored))
    with pytest.raises(AniraInputError, match="crossover.*bench_packed.py"):
        measured_crossovers(path)
