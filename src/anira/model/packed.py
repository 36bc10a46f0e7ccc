"""Packed recurrent execution: run the core block on the active token-steps only.

At iteration r the tokens with depth ≥ r are *active*. Packed execution gathers them from the whole
batch (a flat index into the B·T tokens), runs the core's adapter, q/k/v projection and MLP on those
rows only, lets each active query attend over every earlier position of its own sequence, and
scatters the new states back. The dense reference (``DenseExecutor``) gives the same numbers.

What a halted token shows to attention (``ModelConfig.halted_view``):
- ``frozen`` (default, the paper's semantics): its keys/values are those of its frozen state. They
  are computed once, at the iteration right after it halts (its state s_d is new then), kept in a
  key/value cache of all B·T positions, and reused; so a token of depth d costs d full core steps
  plus one k/v projection, instead of D full steps.
- ``active_only``: halted tokens disappear from later iterations (their keys are masked; a query
  always sees itself). The dense path implements the same mask, so the two stay comparable.
- ``recompute``: keys/values recomputed from the frozen state at every iteration — the dense path
  (``AniraModel.executor`` selects it); same values as ``frozen``, dense cost.

Attention of a ragged set of active queries: the active queries of each sequence are packed left
into a [B, Q_max] slot tensor (Q_max = most active tokens in one sequence), with a mask that lets
slot (b, i) at position t see keys 0..t of sequence b. Cost is B·Q_max·T, against B·T·T dense.

``execution = auto`` runs each iteration densely when the active fraction exceeds
``MEASURED_CROSSOVER`` (or ``ModelConfig.packed_crossover``) and packed otherwise; a dense step also
refreshes the key/value cache, so the two can alternate from one iteration to the next.
"""

from __future__ import annotations

import torch

# Active fraction above which a dense core step beats a packed one. Measured, not guessed:
# ``python benchmarks/bench_packed.py --crossover`` on the 2-core CPU of this project, mini model
# (d_model 64, 4 heads), training batch 64 × 40 tokens, forward+backward of one core step; the
# measurement is stored in benchmarks/results/crossover.json.
MEASURED_CROSSOVER = 0.85


class PackedExecutor:
    """Executes the core iterations of one forward pass on the active tokens only."""

    def __init__(self, model, e: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cfg) -> None:
        self.core, self.cos, self.sin = model.core, cos, sin
        self.B, self.T = e.shape[:2]
        self.e_flat = e.flatten(0, 1)
        self.active_only = cfg.halted_view == "active_only"
        if cfg.execution == "packed":
            self.crossover = float("inf")
        else:
            crossover = cfg.packed_crossover
            self.crossover = MEASURED_CROSSOVER if crossover is None else crossover
        self.k: torch.Tensor | None = None  # [B·T, H, hd] keys of every position, current or frozen
        self.v: torch.Tensor | None = None
        self.positions = torch.arange(self.T, device=e.device)

    def step(self, s: torch.Tensor, depth: torch.Tensor, r: int) -> torch.Tensor:
        active = depth >= r
        if float(active.float().mean()) > self.crossover:
            return self.dense_step(s, active)
        return self.packed_step(s, depth, active, r)

    def dense_step(self, s: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        layer = self.core.layer
        x = self.core.inject(s, self.e_flat.view_as(s))
        q, k, v = layer.project(x, self.cos, self.sin)
        self.k, self.v = k.flatten(0, 1), v.flatten(0, 1)
        mask = self.mask(self.positions.expand(self.B, -1), active) if self.active_only else None
        new = layer.finish(x, layer.attend(q, k, v, mask))
        return torch.where(active.unsqueeze(-1), new.to(s.dtype), s)

    def packed_step(self, s, depth, active, r) -> torch.Tensor:
        B, T = self.B, self.T
        layer = self.core.layer
        s_flat = s.flatten(0, 1)
        # Tokens whose keys/values change: the active ones and (frozen view) those that just halted.
        needs_kv = active if self.active_only or self.k is None else depth >= r - 1
        idx_kv = needs_kv.flatten().nonzero().squeeze(1)
        pos_kv = idx_kv % T
        x = self.core.inject(s_flat[idx_kv], self.e_flat[idx_kv])
        q, k, v = layer.project(x, self.cos[pos_kv], self.sin[pos_kv])
        if self.k is None:
            self.k = k.new_zeros((B * T, *k.shape[1:]))
            self.v = v.new_zeros((B * T, *v.shape[1:]))
        self.k = self.k.to(k.dtype).index_copy(0, idx_kv, k)
        self.v = self.v.to(v.dtype).index_copy(0, idx_kv, v)

        # Active queries, packed left per sequence into [B, Q_max] slots.
        sel = active.flatten()[idx_kv]
        idx, q, x = idx_kv[sel], q[sel], x[sel]
        row, col = idx // T, idx % T
        counts = torch.bincount(row, minlength=B)
        rank = torch.arange(len(idx), device=idx.device) - (counts.cumsum(0) - counts)[row]
        q_max = int(counts.max())
        slots = q.new_zeros((B, q_max, *q.shape[1:])).index_put((row, rank), q)
        slot_pos = torch.zeros((B, q_max), dtype=torch.long, device=idx.device)
        slot_pos = slot_pos.index_put((row, rank), col)
        keys, values = self.k.view(B, T, *k.shape[1:]), self.v.view(B, T, *v.shape[1:])
        y = layer.attend(slots, keys, values, self.mask(slot_pos, active))[row, rank]
        new = layer.finish(x, y)
        return s_flat.index_copy(0, idx, new.to(s.dtype)).view_as(s)

    def mask(self, slot_pos: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """[B, 1, Q, T]: slot at position t sees keys 0..t (active_only: active keys and itself)."""
        visible = self.positions.view(1, 1, -1) <= slot_pos.unsqueeze(-1)
        if self.active_only:
            own = self.positions.view(1, 1, -1) == slot_pos.unsqueeze(-1)
            visible = visible & (active.unsqueeze(1) | own)
        return visible.unsqueeze(1)

    def map_active(self, fn, s: torch.Tensor, active: torch.Tensor, prev: torch.Tensor):
        """``torch.where(active, fn(s), prev)`` evaluating fn on the active rows only."""
        idx = active.flatten().nonzero().squeeze(1)
        values = fn(s.flatten(0, 1)[idx]).to(prev.dtype)
        return prev.flatten().index_copy(0, idx, values).view_as(prev)
