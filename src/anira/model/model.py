"""The ANIRA recurrent Transformer: prelude, one shared core block applied up to D times, coda.

Notable features:
- Layout: token embedding → prelude (1 pre-norm layer) → recurrent core (one shared-weight pre-norm
  block, applied up to ``max_depth`` = D times) → coda (1 pre-norm layer) → final norm → LM head.
- Positions: rotary embeddings (RoPE) in every attention layer; no learned position table, so
  sequences longer than those trained on (the extrapolation sizes) need no new parameters.
- Input re-injection (Huginn style): each core iteration reads ``adapter([s; e])``, the
  concatenation of the current state ``s`` and the prelude output ``e`` projected back to
  ``d_model``. The state starts at ``s_0 = e``.
- Per-token depth d ∈ {1..D}. Iteration r updates only tokens with d ≥ r; a token past its depth
  keeps its state frozen, and its keys/values — computed from the frozen state — stay visible to the
  tokens still iterating. So at iteration r a query reads past token j's state after
  ``min(r - 1, d_j)`` iterations (the *input* of iteration r; docs/study.md's "state at iteration
  min(r, d_j)" counted from the iteration that produced it). ``halted_view`` changes what halted
  tokens show (see ``ModelConfig``).
- Routers (``anira.model.routers``) are small strategy classes with the same hooks: ``start``
  (depths known up front, if any), ``observe`` (after each iteration) and ``finish`` (the
  distribution q over depths). q, E_q[d] and the KL come from the executed steps alone.
- Pad positions (id 0, at the right end) execute one iteration (they never influence a real
  token) and are left out of the loss and the FLOP count. ``forward(tokens, depth=…)`` forces the
  executed depths (tests, benchmarks); q and the KL are still the router's.
- Training estimators (``ModelConfig.estimator``), both straight-through (hard forward, soft
  backward); neither changes a forward value:
  - ``unroll`` (the paper's, default): a static dense unroll to D. Every iteration is computed for
    every token and iteration r's update is gated,
    ``s_r = s_{r-1} + keep_r · (core(s_{r-1}) − s_{r-1})``, with keep_r = 1[d ≥ r] in the forward
    pass (a halted token's state, keys and values stay frozen) and a soft keep_r in the backward
    pass: ANIRA-E Σ_{d≥r} y_d of the Gumbel-softmax sample y, ANIRA-O the survival
    S_{r-1} = Π_{j<r}(1−λ_j). So ∂L/∂keep_r = <∂L/∂s_r, core(s_{r-1}) − s_{r-1}>: the router
    learns whether running iteration r (one more depth) lowers the loss. Costs D full core steps.
  - ``rescale_final`` (ours, not the paper's): the final state is multiplied by
    ``w = 1 + p − p.detach()`` (p: the router's probability of the depth it executed). The router
    then only learns whether *scaling the final state* lowers the loss (∂L/∂p = <∂L/∂s, s>), not
    whether another depth would; kept because it is the only estimator that trains with packed
    execution (halted tokens are never computed).
  - ``expected`` (PonderNet's loss, online router only): every token runs all D iterations, the
    readout after each iteration gives ``depth_logits`` and the CE of token t is
    Σ_d q_t(d) · CE_t(after d iterations); no estimator is needed (the loss is smooth in q).
  ACT needs none (its halting mixture carries the gradient); expert choice uses ``unroll``.
  Inference, evaluation and the fixed router always run the executed depths only (dense, packed or
  auto), with the same values as the unroll's forward pass.
- Execution (``anira.model.execution``): ``dense`` is the slow reference (every token runs every
  iteration, halted tokens are put back with ``torch.where``); ``packed`` runs only the active
  token-steps; ``auto`` picks per iteration by the measured crossover in active fraction. Dense,
  packed and cached decoding (``anira.model.decode``) call the same core step (``CoreSteps``),
  which ``ModelConfig.compile`` runs under ``torch.compile``.
- bf16 autocast is safe: router logits, softmaxes, log-probabilities, q and the KL are float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from anira.model.config import PAD_ID, ModelConfig
from anira.model.execution import CoreSteps, DenseExecutor, PackedExecutor
from anira.model.layers import Block, CoreBlock, rope_tables
from anira.model.routers import ROUTER_CLASSES, prefix_keys, wide


@dataclass
class ModelOutput:
    logits: torch.Tensor  # [B, T, V]
    depth: torch.Tensor  # [B, T] long, executed depth in 1..D (pad positions: 1)
    expected_depth: torch.Tensor  # [B, T] float32, E_q[d] (D for the fixed router)
    q: torch.Tensor | None  # [B, T, D] float32 depth distribution; None for the fixed router
    kl: torch.Tensor  # [B, T] float32 the router's regulariser (``penalty``); fixed: zeros
    valid: torch.Tensor  # [B, T] bool, non-pad tokens
    states: list[torch.Tensor] | None = None  # s_0..s_D when forward(return_states=True)
    depth_logits: torch.Tensor | None = None  # [D, B, T, V] logits after each r (``expected``)


class AniraModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.prelude = Block(cfg)
        self.core = CoreBlock(cfg)
        self.coda = Block(cfg)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.router = ROUTER_CLASSES[cfg.router](cfg)
        self.core_steps = CoreSteps(self.core, cfg.compile)
        cos, sin = rope_tables(cfg.max_seq_len, cfg.d_model // cfg.n_heads, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def unrolls(self) -> bool:
        """Whether this forward pass trains a router through the ``unroll`` estimator."""
        return self.training and self.cfg.estimator == "unroll" and self.router.estimated

    def executor(self, e, cos, sin):
        """dense, packed or auto (``anira.model.execution``); ``recompute`` and the ``unroll``
        estimator use the dense path."""
        if self.cfg.execution == "dense" or self.cfg.halted_view == "recompute" or self.unrolls():
            return DenseExecutor(self.core_steps, e, cos, sin, self.cfg.halted_view)
        return PackedExecutor(self.core_steps, e, cos, sin, self.cfg)

    def forward(
        self, tokens: torch.Tensor, depth: torch.Tensor | None = None, return_states: bool = False
    ) -> ModelOutput:
        B, T = tokens.shape
        D = self.cfg.max_depth
        assert tokens.dtype == torch.long, f"tokens must be int64, got {tokens.dtype}"
        limit = self.cfg.max_seq_len
        assert limit >= T, f"sequence length {T} > max_seq_len {limit}"
        if depth is not None:
            assert depth.shape == tokens.shape, f"depth {tuple(depth.shape)} != tokens {(B, T)}"
            assert int(depth.min()) >= 1 and int(depth.max()) <= D, f"depth must be in 1..{D}"
            depth = depth.to(device=tokens.device, dtype=torch.long)
        valid = tokens != PAD_ID
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        expects = self.training and self.cfg.estimator == "expected"
        if expects and depth is None:  # PonderNet: every token runs every iteration
            depth = torch.full_like(tokens, D)

        e = self.prelude(self.embed(tokens), cos, sin)
        keyed = {}
        if self.router.keyed:
            positions = torch.arange(T, device=tokens.device).expand(B, T)
            keyed["keys"] = prefix_keys(tokens, positions, tokens.new_zeros(B))
        state = self.router.start(e, valid, depth, self.training, **keyed)
        executor = self.executor(e, cos, sin)
        unroll = self.unrolls()
        s, states = e, [e]
        for r in range(1, D + 1):
            if not unroll and not bool((state.depth >= r).any()):
                states += [s] * (D + 1 - r)
                break
            if unroll:  # every iteration, even past every token's depth: keep_r's gradient
                s = executor.unroll_step(s, state.depth, r, self.router.keep(state, r))
            else:
                s = executor.step(s, state.depth, r)
            states.append(s)
            if r < D:
                self.router.observe(state, s, r, executor)
        log_q, chosen = self.router.finish(state)

        final = self.router.output(state, s)
        if chosen is not None and self.training and self.cfg.estimator == "rescale_final":
            final = final * (1.0 + chosen - chosen.detach()).unsqueeze(-1)
        depth_logits = None
        if expects:  # the readout after every iteration r = 1..D, one coda pass each
            depth_logits = self.readout(torch.stack(states[1:]).flatten(0, 1), cos, sin)
            depth_logits = depth_logits.unflatten(0, (D, B))
            logits = depth_logits[-1]
        else:
            logits = self.readout(final, cos, sin)
        if log_q is None:
            q, kl = None, torch.zeros((B, T), device=tokens.device)
            expected = torch.full((B, T), float(D), device=tokens.device)
        else:
            q = log_q.exp()
            kl = self.router.penalty(state, log_q)
            expected = (q * torch.arange(1, D + 1, device=q.device, dtype=q.dtype)).sum(-1)
        return ModelOutput(
            logits=logits,
            depth=state.depth,
            expected_depth=expected,
            q=q,
            kl=kl,
            valid=valid,
            states=states if return_states else None,
            depth_logits=depth_logits,
        )

    def readout(self, s: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, V] of states s [B, T, d]: coda, final norm, LM head."""
        return self.lm_head(self.norm(self.coda(s, cos, sin)))

    def loss(
        self,
        out: ModelOutput,
        tokens: torch.Tensor,
        answer_mask: torch.Tensor,
        totals: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """CE of the logits at t against token t+1 where answer_mask[t+1], averaged over answer
        tokens, plus gamma · KL(q || p_b) (the router's ``penalty``) summed over the non-pad tokens
        of each sequence and averaged over sequences (the paper's reduction: γ weighs a whole
        sequence's KL). With ``depth_logits`` (the ``expected`` estimator) the CE of a token is
        PonderNet's expectation over halting steps, Σ_d q_t(d) · CE_t(after d iterations).

        ``totals`` = (answer tokens, sequences) of the whole batch when ``tokens`` is one
        micro-batch of it (gradient accumulation): the sums are divided by the batch's counts, so
        the micro-batches' losses (and gradients) add up to the batch's."""
        assert answer_mask.shape == tokens.shape, "answer_mask must be aligned with tokens"
        targets = answer_mask[:, 1:].bool()
        gold = tokens[:, 1:][targets]
        mean = totals is None  # else a micro-batch's sums, divided by the batch's counts below
        if out.depth_logits is None:
            logits = wide(out.logits[:, :-1][targets])
            reduction = "mean" if mean else "sum"
            ce = (
                F.cross_entropy(logits, gold, reduction=reduction)
                if logits.numel()
                else logits.sum()
            )
        else:
            logits = wide(out.depth_logits[:, :, :-1][:, targets])  # [D, N, V]
            each = -logits.log_softmax(-1).gather(-1, gold.expand(len(logits), -1).unsqueeze(-1))
            weighted = out.q[:, :-1][targets].T * each.squeeze(-1)  # [D, N]
            per_token = weighted.sum(0)
            ce = (
                (per_token.mean() if mean else per_token.sum())
                if weighted.numel()
                else weighted.sum()
            )
        kl = out.kl.masked_fill(~out.valid, 0.0).sum(-1)
        if totals is None:
            kl = kl.mean()
        else:
            answers, sequences = totals
            ce, kl = ce / max(answers, 1), kl.sum() / sequences
        loss = ce + self.cfg.gamma * kl
        parts = {"loss": loss.detach().item(), "ce": ce.detach().item(), "kl": kl.detach().item()}
        return loss, parts

    def num_params(self, decision_heads_only: bool = False) -> int:
        module = self.router if decision_heads_only else self
        return sum(p.numel() for p in module.parameters())

    def flops(self, out: ModelOutput) -> dict[str, float]:
        """Forward compute of the non-pad tokens of ``out``.

        - ``token_steps`` = Σ_t d_t, the executed active token-steps of the core (docs/study.md);
        - ``head_calls``: decision-head evaluations (ANIRA-E: 1 per token; ANIRA-O: min(d_t, D−1));
        - FLOPs, counting a multiply-add as 2 and a query at position t attending to t+1 keys:
          per layer and token  2·P_layer + 4·d·(t+1)  (P_layer: matmul weights of the layer),
          ``core_flops``  = Σ_t d_t · (2·P_core + 4·d·(t+1)),
          ``other_flops`` = Σ_t [2·(2·P_layer + 4·d·(t+1)) + 2·d·V]  (prelude, coda, LM head),
          ``head_flops``  = head_calls · 2·P_head,  ``flops`` = the sum of the three.
        Example: D = 6, every token at depth 3 → token_steps = 3 · n_tokens, half of fixed-6.
        """
        d, V = self.cfg.d_model, self.cfg.vocab_size
        valid = out.valid
        pos = torch.arange(valid.shape[1], device=valid.device).expand_as(valid)[valid].double()
        depth = out.depth[valid].double()
        attn = 4.0 * d * (pos + 1)
        head_calls = self.router.head_calls(out.depth)[valid].double().sum()
        head_p = self.router.head_params()
        core = (depth * (2.0 * self.core.matmul_params() + attn)).sum()
        other = (2.0 * (2.0 * self.prelude.matmul_params() + attn) + 2.0 * d * V).sum()
        heads = head_calls * 2.0 * head_p
        return {
            "token_steps": float(depth.sum()),
            "head_calls": float(head_calls),
            "core_flops": float(core),
            "other_flops": float(other),
            "head_flops": float(heads),
            "flops": float(core + other + heads),
        }
