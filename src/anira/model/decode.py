"""Incremental greedy decoding with a per-iteration key/value cache, and its reference.

The definition (``generate_reference``): re-run the whole prefix through ``AniraModel.forward`` for
every generated token. The model is causal and each token's depth depends only on its prefix, so
that is exactly the paper's incremental semantics — and it costs O(T² · D) per generated token.

The fast path (``generate``, ``IncrementalDecoder``) keeps what the prefix already computed:
- a prelude cache and a coda cache (keys/values of every past position), and a core cache with one
  entry per iteration r = 1..D: the keys/values a query at iteration r reads for each past token,
  i.e. those of its state after ``min(r - 1, d_j)`` iterations. A token that halts at d writes the
  keys/values of its frozen state into every later iteration's entry once, when it halts (the
  iteration after its last); so a new token costs its own d core steps plus one key/value
  projection, each attending to the cache — no past token is recomputed.
- Batches of different prompt lengths use per-example positions, not left padding: the cache has
  one row per example and one column per absolute position, example b writes its next token at its
  own position ``cur[b]`` and its queries see columns ``0..cur[b]`` (a mask), so RoPE positions are
  those of the reference. The prompts are prefilled as one right-padded chunk; the pad columns of
  the shorter prompts are overwritten by the tokens generated there before any query sees them.
- Finished examples leave the batch (their cache rows are dropped), and at each core iteration
  only the tokens still iterating run attention and the MLP (the packed idea, for one token per
  row), so compute follows the live examples and their executed depths. Those rows run the model's
  own core step (``CoreSteps``, ``anira.model.execution``), so ``ModelConfig.compile`` applies.
- Routers are the model's own (``start`` / ``observe``), so every router and online rule decides
  exactly as in the full forward, and the coda reads the router's ``output`` (ACT: its halting
  mixture). ``halted_view``: ``frozen`` and ``recompute`` read the frozen state (the same
  values); ``active_only`` masks past tokens that halted before iteration r.
- The straight-through weight of ``forward`` is 1 in value and is not applied here (inference).

Memory: the core cache holds D + 2 layers of keys and values, 2·(D+2)·B·W·d_model numbers for B
examples of width W (float32 on CPU, bf16 under CUDA autocast).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from anira.model.config import PAD_ID
from anira.model.execution import PackedExecutor, pack_left, visible_keys
from anira.model.model import AniraModel
from anira.model.routers import prefix_keys


class IncrementalDecoder:
    """Runs chunks of new tokens through the model against a key/value cache of ``rows`` examples
    and ``width`` positions. ``forward(tokens, start)`` returns the logits and executed depths of
    the chunk; ``keep(rows)`` drops the examples that finished."""

    def __init__(self, model: AniraModel, rows: int, width: int) -> None:
        cfg = model.cfg
        assert width <= cfg.max_seq_len, f"width {width} > max_seq_len {cfg.max_seq_len}"
        self.model, self.rows, self.width = model, rows, width
        self.active_only = cfg.halted_view == "active_only"
        self.prelude_kv: list[torch.Tensor] = []  # k, v [B, W, H, hd]
        self.core_kv: list[torch.Tensor] = []  # k, v [D, B, W, H, hd]: entry r-1 for iteration r
        self.coda_kv: list[torch.Tensor] = []
        device = model.rope_cos.device
        self.depth = torch.ones((rows, width), dtype=torch.long, device=device)
        # A keyed router's prefix key of every cached position (``prefix_keys``): a chunk
        # continues from the key before its first position, so re-fed columns are overwritten.
        self.keys = torch.zeros((rows, width), dtype=torch.long, device=device)

    # Rows the online router's head runs on: only the tokens still iterating.
    map_active = PackedExecutor.map_active

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only these cache rows (in this order): finished examples stop costing compute."""
        self.prelude_kv = [t[rows] for t in self.prelude_kv]
        self.coda_kv = [t[rows] for t in self.coda_kv]
        self.core_kv = [t[:, rows] for t in self.core_kv]
        self.depth = self.depth[rows]
        self.keys = self.keys[rows]
        self.rows = len(rows)

    def _allocate(self, cache: list[torch.Tensor], like: torch.Tensor, lead: tuple[int, ...]):
        if not cache:
            shape = (*lead, self.rows, self.width, *like.shape[-2:])
            cache += [like.new_zeros(shape), like.new_zeros(shape)]

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, start: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """tokens [n, Tc] of the n cached examples at positions start[b] .. start[b] + Tc - 1 →
        (logits [n, Tc, V], executed depth [n, Tc])."""
        model, D = self.model, self.model.cfg.max_depth
        n, chunk = tokens.shape
        assert n == self.rows, f"{n} rows of tokens for a cache of {self.rows}"
        pos = start.view(-1, 1) + torch.arange(chunk, device=tokens.device)  # [n, Tc]
        span = int(pos.max()) + 1
        assert span <= self.width, f"position {span - 1} beyond the cache width {self.width}"
        cos, sin = model.rope_cos[pos], model.rope_sin[pos]
        rows = torch.arange(n, device=tokens.device).view(-1, 1).expand(n, chunk)
        causal = visible_keys(pos, span, None)  # [n, 1, Tc, span]

        e = self.layer(model.prelude, self.prelude_kv, model.embed(tokens), cos, sin, causal, pos)
        keyed = {}
        if model.router.keyed:
            before = self.keys[rows[:, 0], (start - 1).clamp(min=0)]
            carry = torch.where(start > 0, before, 0)
            keyed["keys"] = prefix_keys(tokens, pos, carry)
            self.keys[rows, pos] = keyed["keys"]
        state = model.router.start(e, tokens != PAD_ID, None, False, **keyed)
        s = e
        for r in range(1, D + 1):
            s, ran = self.core_step(s, e, state.depth, r, rows, pos, cos, sin, span)
            if not ran:  # every chunk token halted before r - 1: its frozen entries are written
                break
            if r < D and bool((state.depth >= r).any()):
                model.router.observe(state, s, r, self)
        s = model.router.output(state, s)  # what the coda reads (ACT: the halting mixture)
        y = self.layer(model.coda, self.coda_kv, s, cos, sin, causal, pos)
        return model.lm_head(model.norm(y)), state.depth

    def layer(self, block, cache, x, cos, sin, mask, pos) -> torch.Tensor:
        """A prelude or coda layer over the chunk, writing its keys/values into ``cache``."""
        q, k, v = block.project(x, cos, sin)
        self._allocate(cache, k, ())
        rows = torch.arange(len(x), device=x.device).view(-1, 1)
        cache[0][rows, pos], cache[1][rows, pos] = k, v
        span = mask.shape[-1]
        return block.finish(x, block.attend(q, cache[0][:, :span], cache[1][:, :span], mask))

    def core_step(self, s, e, depth, r, rows, pos, cos, sin, span) -> tuple[torch.Tensor, bool]:
        """Iteration r of the chunk tokens. The tokens still iterating (d ≥ r) and those that just
        halted (d = r - 1) write their keys/values into the entries of iterations r..D (a later
        iteration of a token still iterating overwrites its own); the former attend and update."""
        steps = self.model.core_steps
        tokens_per_row = depth.shape[1]
        needs_kv = (depth >= r - 1).flatten()
        idx = needs_kv.nonzero().squeeze(1)
        if len(idx) == 0:
            return s, False
        flat_rows, flat_pos = rows.flatten()[idx], pos.flatten()[idx]
        s_flat = s.flatten(0, 1)
        x, q, k, v = steps.mix(
            s_flat[idx], e.flatten(0, 1)[idx], cos.flatten(0, 1)[idx], sin.flatten(0, 1)[idx]
        )
        self._allocate(self.core_kv, k, (self.model.cfg.max_depth,))
        keys, values = self.core_kv
        keys[r - 1 :, flat_rows, flat_pos] = k
        values[r - 1 :, flat_rows, flat_pos] = v
        if self.active_only:
            self.depth[rows, pos] = depth

        active = depth.flatten()[idx] >= r
        sel = active.nonzero().squeeze(1)
        if len(sel) == 0:
            return s, True
        idx, q, x = idx[sel], q[sel], x[sel]
        q_rows, q_pos = flat_rows[sel], flat_pos[sel]
        if tokens_per_row == 1:  # decoding: one query per example, no packing needed
            present, slot_row = q_rows, torch.arange(len(idx), device=idx.device)
            rank = torch.zeros_like(slot_row)
            slots, slot_pos = q.unsqueeze(1), q_pos.unsqueeze(1)
        else:  # a prefill chunk: active queries packed left per example, [R, Q_max] slots
            counts = torch.bincount(q_rows, minlength=self.rows)
            slots, slot_pos, present, slot_row, rank = pack_left(q, q_rows, q_pos, counts)
            present = present.nonzero().squeeze(1)
        if len(present) == self.rows:
            keys, values = keys[r - 1, :, :span], values[r - 1, :, :span]
        else:
            keys, values = keys[r - 1, present, :span], values[r - 1, present, :span]
        iterating = self.depth[present, :span] >= r if self.active_only else None
        mask = visible_keys(slot_pos, span, iterating)
        y = steps.core.layer.attend(slots, keys, values, mask)[slot_row, rank]
        new = steps.finish(x, y)
        return s_flat.index_copy(0, idx, new.to(s.dtype)).view_as(s), True


@torch.no_grad()
def generate(
    model: AniraModel,
    buffer: torch.Tensor,
    cur: torch.Tensor,
    stop: torch.Tensor,
    eos_id: int,
    choose: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoding with the cache; the same contract and results as ``generate_reference``."""
    n, width = buffer.shape
    buffer, cur = buffer.clone(), cur.clone()
    depth = torch.zeros_like(buffer)
    decoder = IncrementalDecoder(model, n, width)
    span = int(cur.max())
    logits, depth[:, :span] = decoder.forward(buffer[:, :span], torch.zeros_like(cur))
    live = torch.arange(n, device=buffer.device)
    last = logits[live, cur - 1]  # the logits that pick each live example's next token
    going, nxt, pos = cur < stop, None, None
    while True:
        keep = going.nonzero().squeeze(1)
        if len(keep) < len(live):
            live, last = live[keep], last[keep]
            nxt, pos = (None, None) if nxt is None else (nxt[keep], pos[keep])
            decoder.keep(keep)
        if len(live) == 0:
            return buffer, cur, processed_only(depth, cur)
        if nxt is not None:
            logits, step_depth = decoder.forward(nxt.view(-1, 1), pos)
            depth[live, pos], last = step_depth[:, 0], logits[:, 0]
        nxt, pos = (greedy if choose is None else choose)(last), cur[live]
        buffer[live, pos] = nxt
        cur[live] = pos + 1
        going = (nxt != eos_id) & (pos + 1 < stop[live])


@torch.no_grad()
def generate_reference(
    model: AniraModel,
    buffer: torch.Tensor,
    cur: torch.Tensor,
    stop: torch.Tensor,
    eos_id: int,
    choose: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoding by re-running the prefix for every token (the definition; slow on purpose).
    ``choose`` maps the next-token logits [n, V] to token ids (default: greedy argmax; a sampler
    for tasks judged on samples).

    ``buffer`` [n, W]: example b's prompt in ``buffer[b, :cur[b]]`` (pad after it); generation
    appends tokens until ``<eos>`` or position ``stop[b]`` (exclusive; ≤ W). Returns the filled
    buffer, the final lengths and the executed depth of every position the model processed
    (``depth[b, t]`` emitted token t + 1; zero where nothing was processed)."""
    buffer, cur = buffer.clone(), cur.clone()
    rows = torch.arange(len(buffer), device=buffer.device)
    done = cur >= stop
    while not bool(done.all()):
        span = int(cur[~done].max())
        logits = model(buffer[:, :span]).logits
        nxt = (greedy if choose is None else choose)(logits[rows, (cur - 1).clamp(max=span - 1)])
        active = ~done
        buffer[rows[active], cur[active]] = nxt[active]
        cur = torch.where(active, cur + 1, cur)
        done = done | (active & (nxt == eos_id)) | (cur >= stop)
    processed = int((cur - 1).max())
    depth = torch.zeros_like(buffer)
    if processed > 0:
        depth[:, :processed] = model(buffer[:, :processed]).depth
    return buffer, cur, processed_only(depth, cur)


def greedy(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(-1)


def processed_only(depth: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
    """Zero the depths of positions at or after cur - 1 (never processed for that example)."""
    positions = torch.arange(depth.shape[1], device=depth.device)
    return torch.where(positions < (cur - 1).unsqueeze(1), depth, 0)
