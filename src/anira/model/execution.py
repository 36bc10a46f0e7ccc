"""Execution of the recurrent core: one core step, run densely, packed, or against a decoding cache.

The core step (``CoreSteps``) is the core block's two halves around attention: ``mix`` (adapter,
norm, q/k/v, RoPE) and ``finish`` (output projection, residual, MLP). Every way of running the
iterations calls it, so ``ModelConfig.compile`` reaches them all; they differ only in which rows
they gather and what those rows attend to:
- ``DenseExecutor``, the slow reference: every iteration runs every token and puts the halted ones
  back with ``torch.where`` (the ``unroll`` estimator's steps too).
- ``PackedExecutor``: the active token-steps only (below).
- cached decoding (``anira.model.decode.IncrementalDecoder``): the new tokens of each example,
  against a key/value cache of the earlier positions.

Packed execution. At iteration r the tokens with depth ≥ r are *active*. Packed execution gathers
them from the whole batch (a flat index into the B·T tokens), runs the core's adapter, q/k/v
projection and MLP on those rows only, lets each active query attend over every earlier position of
its own sequence, and scatters the new states back. The dense reference gives the same numbers.

What a halted token shows to attention (``ModelConfig.halted_view``):
- ``frozen`` (default, the paper's semantics): its keys/values are those of its frozen state. They
  are computed once, at the iteration right after it halts (its state s_d is new then), kept in a
  key/value cache of all B·T positions, and reused; so a token of depth d costs d full core steps
  plus one k/v projection, instead of D full steps.
- ``active_only``: halted tokens disappear from later iterations (their keys are masked; a query
  always sees itself). The dense path and decoding build the same mask (``visible_keys``).
- ``recompute``: keys/values recomputed from the frozen state at every iteration — the dense path
  (``AniraModel.executor`` selects it); same values as ``frozen``, dense cost.

Attention of a ragged set of active queries: the active queries of each sequence are packed left
into a [R, Q_max] slot tensor (R = sequences with an active token, Q_max = most active tokens in
one sequence), with a mask that lets slot (b, i) at position t see keys 0..t of sequence b. Cost
is R·Q_max·T, against B·T·T/2 for causal attention in the dense layout (which skips the keys after
each query, a mask cannot). So when the slots hold more than ``SLOT_ATTENTION_LIMIT`` of the B·T
positions, the active queries attend in the dense layout instead (the others' outputs unused).

``execution = auto`` runs each iteration densely when the active fraction exceeds the crossover
measured for the step's work B·T·d_model² on the device type it runs on (``measured_crossover``;
``ModelConfig.packed_crossover`` overrides it; a device type never measured runs densely) and
packed otherwise; a dense step also refreshes the key/value cache, so the two can alternate from
one iteration to the next.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import torch

from anira.io import REPO_ROOT, AniraInputError
from anira.model.config import ModelConfig
from anira.model.layers import CoreBlock

log = logging.getLogger(__name__)

CORE_HALVES = {
    "mix": lambda core, s, e, cos, sin: core.mix(s, e, cos, sin),
    "finish": lambda core, x, y: core.layer.finish(x, y),
}


class CoreSteps:
    """The core step's halves around attention, ``mix`` (adapter, norm, q/k/v, RoPE) and
    ``finish`` (output projection, residual, MLP), eager or under ``torch.compile`` (inductor,
    dynamic shapes: batch, length and packed row counts vary from step to step). Attention stays
    outside: dense, packed and decoding attend differently, and SDPA is one fused kernel already.

    Compilation happens at the first call; if ``torch.compile`` is missing or fails (no C++
    compiler, an unsupported Python, an op inductor cannot lower), one log line says so and every
    later call runs eager. A failure while compiling a backward graph (at the first
    ``backward()``) is not caught: it happens outside these calls."""

    def __init__(self, core: CoreBlock, compile: bool) -> None:
        self.core = core
        self.compiled: dict | None = None
        if compile:
            try:
                self.compiled = {
                    name: torch.compile(fn, dynamic=True) for name, fn in CORE_HALVES.items()
                }
            except Exception as err:  # torch.compile itself refuses (e.g. unsupported Python)
                self.fall_back(err)

    def fall_back(self, err: Exception) -> None:
        log.warning("torch.compile unavailable, running eager: %s", " ".join(str(err).split()))
        self.compiled = None

    def call(self, name: str, *args):
        if self.compiled is not None:
            try:
                return self.compiled[name](self.core, *args)
            except Exception as err:  # compilation runs (and fails) at the first call
                self.fall_back(err)
        return CORE_HALVES[name](self.core, *args)

    def mix(self, s, e, cos, sin):
        """(x, q, k, v) of ``CoreBlock.mix``."""
        return self.call("mix", s, e, cos, sin)

    def finish(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The layer output from its input x [..., d] and attention output y [..., H, hd]."""
        return self.call("finish", x, y)


def visible_keys(query_pos: torch.Tensor, n_keys: int, active: torch.Tensor | None):
    """The attention mask [R, 1, Q, n_keys] of queries at positions query_pos [R, Q] over the keys
    at positions 0..n_keys-1 of their sequence: causal, and for the ``active_only`` view (``active``
    [R, n_keys], the keys still iterating) the halted keys vanish; a query always sees itself.
    Example: query_pos = [[2]], active = [[1, 0, 0, 1]] → [[[[1, 0, 1, 0]]]]."""
    positions = torch.arange(n_keys, device=query_pos.device)
    visible = positions <= query_pos.unsqueeze(-1)
    if active is not None:
        visible = visible & (active.unsqueeze(1) | (positions == query_pos.unsqueeze(-1)))
    return visible.unsqueeze(1)


class DenseExecutor:
    """Reference execution: every iteration runs the core block on every token and puts the halted
    ones back with ``torch.where`` (their keys/values are recomputed from the frozen state each
    time). Slow on purpose: it is the definition the packed path is tested against."""

    def __init__(self, steps: CoreSteps, e, cos, sin, view: str) -> None:
        self.steps, self.e, self.cos, self.sin = steps, e, cos, sin
        self.layer = steps.core.layer
        self.active_only = view == "active_only"

    def step(self, s: torch.Tensor, depth: torch.Tensor, r: int) -> torch.Tensor:
        active = depth >= r
        return torch.where(active.unsqueeze(-1), self.candidate(s, active)[0], s)

    def unroll_step(self, s, depth, r, keep: torch.Tensor) -> torch.Tensor:
        """The ``unroll`` estimator's step: ``step``'s value (keep_r hard), with the gradient of
        ``s + keep_r · (core(s) − s)`` for the soft keep_r [B, T]."""
        active = depth >= r
        new = self.candidate(s, active)[0]
        hard = torch.where(active.unsqueeze(-1), new, s)
        return hard + (keep - keep.detach()).unsqueeze(-1).to(s.dtype) * (new - s)

    def candidate(self, s: torch.Tensor, active: torch.Tensor):
        """core(s) for every token (``active`` only shapes the ``active_only`` mask), and the
        keys/values [B, T, H, hd] of s that it attended to."""
        x, q, k, v = self.steps.mix(s, self.e, self.cos, self.sin)
        mask = None
        if self.active_only:
            B, T = active.shape
            mask = visible_keys(torch.arange(T, device=s.device).expand(B, T), T, active)
        new = self.steps.finish(x, self.layer.attend(q, k, v, mask))
        return new.to(s.dtype), k, v

    def map_active(self, fn, s, active, prev):
        return torch.where(active, fn(s), prev)


# Active fraction above which a dense core step beats a packed one, with and without autograd,
# keyed by the step's work W = B·T·d_model² (tokens times width squared): the packed step pays a
# fixed cost per iteration (gathers, scatters, small kernels) against matmul work ∝ W, so small
# batches of a narrow model never gain (0.0: dense always wins). Measured, not guessed:
# ``python benchmarks/bench_packed.py`` (section "crossover": iteration 3 of the core, sequences of
# 40 tokens, mini model d_model 64 at batches 1/4/16/64 and paper model d_model 576 at 1/16) times
# it on the CPU and stores the table as ``crossover_table`` in ``CROSSOVER_FILE`` (with the machine
# it ran on), which ``auto`` reads. A device type with no measurement runs ``auto`` densely: the
# CPU's crossovers say nothing about a GPU's kernels.
CROSSOVER_FILE = REPO_ROOT / "benchmarks" / "results" / "packed.json"
MEASURED_DEVICE = "cpu"
PASSES = ("forward", "forward_backward")


@functools.cache
def measured_crossovers(path: Path = CROSSOVER_FILE) -> dict[str, dict[int, float]]:
    """The stored ``crossover_table``, per pass (``PASSES``) work W → crossover, read once."""
    hint = "python benchmarks/bench_packed.py measures it; ModelConfig.packed_crossover avoids it"
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        cause = getattr(err, "strerror", None) or err  # an OSError's message repeats the path
        raise AniraInputError(
            f"cannot read the measured dense/packed crossover {path}: {cause}; {hint}"
        ) from err
    try:
        table = stored["crossover_table"]
        out = {p: {int(w): float(f) for w, f in table[p].items()} for p in PASSES}
    except (TypeError, KeyError, AttributeError, ValueError):
        out = {}
    fractions = [f for per_work in out.values() for f in per_work.values()]
    if not out or not all(out.values()) or any(not 0 <= f <= 1 for f in fractions):
        raise AniraInputError(
            f"{path} lacks a crossover_table of active fractions in [0, 1] for each of {PASSES}; "
            + hint
        )
    return out


def crossover_at(table: dict[int, float], work: int) -> float:
    """The entry of the largest measured W not above ``work`` (below every W: the smallest's)."""
    sizes = sorted(table)
    return table[max((n for n in sizes if n <= work), default=sizes[0])]


def measured_crossover(work: int, backward: bool, device: str) -> float:
    """The crossover measured on ``device`` (a device type) for a core step of work
    B·T·d_model²; 0.0 (always dense) on a device type never measured. Example: mini model on the
    CPU, batch 64 × 40 tokens with autograd → W = 2560·64² = 10,485,760 → that entry."""
    if device != MEASURED_DEVICE:
        return 0.0
    return crossover_at(measured_crossovers()["forward_backward" if backward else "forward"], work)


# Largest share R·Q_max / (B·T) of the positions the query slots may take before attention runs in
# the dense causal layout instead: past ½ the slots cost more attention than causal dense does, and
# on the CPU's SDPA kernels the masked slot attention is also slower per score. Measured:
# benchmarks/bench_train.py, section "efficiency" (benchmarks/results/train.json).
SLOT_ATTENTION_LIMIT = 0.5


def pack_left(q: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor, counts: torch.Tensor):
    """The queries q [N, H, hd] of sequences ``rows`` [N] (sorted; ``counts`` [B] queries per
    sequence) at ``positions`` [N], packed left per sequence into slots [R, Q_max, H, hd], R = the
    sequences with a query. Returns the slots, their positions [R, Q_max], the mask [B] of the R
    sequences, and each query's slot (row [N], rank [N]). Example: rows (0, 0, 2), positions
    (1, 4, 3) → R = 2 slot rows, positions ((1, 4), (3, 0)), the query of sequence 2 at (1, 0)."""
    present = counts > 0
    rank = torch.arange(len(rows), device=rows.device) - (counts.cumsum(0) - counts)[rows]
    slot_row = present.cumsum(0)[rows] - 1
    shape = (int(present.sum()), int(counts.max()))
    slots = q.new_zeros((*shape, *q.shape[1:])).index_put((slot_row, rank), q)
    slot_pos = torch.zeros(shape, dtype=torch.long, device=rows.device)
    return slots, slot_pos.index_put((slot_row, rank), positions), present, slot_row, rank


class PackedExecutor(DenseExecutor):
    """Executes the core iterations of one forward pass on the active tokens only (or densely,
    ``DenseExecutor.candidate``, when the active fraction is above the crossover)."""

    def __init__(self, steps: CoreSteps, e, cos, sin, cfg: ModelConfig) -> None:
        super().__init__(steps, e, cos, sin, cfg.halted_view)
        self.B, self.T = e.shape[:2]
        self.e_flat = e.flatten(0, 1)
        if cfg.execution == "packed":
            self.crossover = float("inf")
        elif cfg.packed_crossover is not None:
            self.crossover = cfg.packed_crossover
        else:
            work = self.B * self.T * e.shape[-1] ** 2
            self.crossover = measured_crossover(work, torch.is_grad_enabled(), e.device.type)
        self.k: torch.Tensor | None = None  # [B·T, H, hd] keys of every position, current or frozen
        self.v: torch.Tensor | None = None
        self.slot_limit = SLOT_ATTENTION_LIMIT

    def step(self, s: torch.Tensor, depth: torch.Tensor, r: int) -> torch.Tensor:
        active = depth >= r
        if float(active.float().mean()) <= self.crossover:
            return self.packed_step(s, depth, active, r)
        new, k, v = self.candidate(s, active)
        self.k, self.v = k.flatten(0, 1), v.flatten(0, 1)  # a packed step after it reuses them
        return torch.where(active.unsqueeze(-1), new, s)

    def packed_step(self, s, depth, active, r) -> torch.Tensor:
        B, T = self.B, self.T
        s_flat = s.flatten(0, 1)
        # Tokens whose keys/values change: the active ones and (frozen view) those that just halted.
        needs_kv = active if self.active_only or self.k is None else depth >= r - 1
        idx_kv = needs_kv.flatten().nonzero().squeeze(1)
        pos_kv = idx_kv % T
        x, q, k, v = self.steps.mix(
            s_flat[idx_kv], self.e_flat[idx_kv], self.cos[pos_kv], self.sin[pos_kv]
        )
        if self.k is None:
            self.k = k.new_zeros((B * T, *k.shape[1:]))
            self.v = v.new_zeros((B * T, *v.shape[1:]))
        self.k = self.k.to(k.dtype).index_copy(0, idx_kv, k)
        self.v = self.v.to(v.dtype).index_copy(0, idx_kv, v)

        sel = active.flatten()[idx_kv].nonzero().squeeze(1)
        idx, x = idx_kv[sel], x[sel]
        new = self.steps.finish(x, self.attend_active(q[sel], idx, active))
        return s_flat.index_copy(0, idx, new.to(s.dtype)).view_as(s)

    def attend_active(self, q: torch.Tensor, idx: torch.Tensor, active: torch.Tensor):
        """Attention outputs [N, H, hd] of the active queries q [N, H, hd] at flat positions idx
        (sorted) over the key/value cache: in [R, Q_max] slots, or in the dense layout when the
        slots would hold more than ``slot_limit`` of the B·T positions."""
        B, T = self.B, self.T
        layer, view = self.layer, active if self.active_only else None
        keys, values = self.k.view(B, T, *q.shape[1:]), self.v.view(B, T, *q.shape[1:])
        row, col = idx // T, idx % T
        counts = torch.bincount(row, minlength=B)
        n_rows = int((counts > 0).sum())
        if n_rows * int(counts.max()) > self.slot_limit * B * T:
            queries = q.new_zeros((B * T, *q.shape[1:])).index_copy(0, idx, q)
            query_pos = torch.arange(T, device=idx.device).expand(B, T)
            mask = None if view is None else visible_keys(query_pos, T, view)
            return layer.attend(queries.view_as(keys), keys, values, mask).flatten(0, 1)[idx]
        slots, slot_pos, present, row, rank = pack_left(q, row, col, counts)
        if n_rows < B:
            keys, values = keys[present], values[present]
            view = None if view is None else view[present]
        return layer.attend(slots, keys, values, visible_keys(slot_pos, T, view))[row, rank]

    def map_active(self, fn, s: torch.Tensor, active: torch.Tensor, prev: torch.Tensor):
        """``torch.where(active, fn(s), prev)`` evaluating fn on the active rows only."""
        idx = active.flatten().nonzero().squeeze(1)
        values = fn(s.flatten(0, 1)[idx]).to(prev.dtype)
        return prev.flatten().index_copy(0, idx, values).view_as(prev)
