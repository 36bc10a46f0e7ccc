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
- Routers are small strategy classes (``FixedRouter``, ``EarlyRouter``, ``OnlineRouter``, and the
  field's ``ActRouter`` and ``ExpertChoiceRouter``) with the same three hooks: ``start`` (depths
  known up front, if any), ``observe`` (after each iteration) and ``finish`` (the distribution q
  over depths); ``output`` (what the coda reads), ``penalty`` (the regulariser γ weighs) and
  ``head_params`` have defaults. Adding a router adds a class. The matched-compute control
  ``RandomRouter`` sets ``keyed``: its ``start`` also gets a per-token key hashed from the token's
  prefix (``prefix_keys``), from which it draws.
- ANIRA-O's q needs λ_1..λ_{D−1}; after a token halts at d its later λ's are the head on its frozen
  state, i.e. λ_d (what a masked dense unroll applying the head at every iteration reports). So q,
  E_q[d] and the KL come from the executed steps alone. ``halt_now`` defines the decision rules.
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
- Execution: ``dense`` is the slow reference (every token runs every iteration, halted tokens are
  put back with ``torch.where``); ``packed`` runs only the active token-steps
  (``anira.model.packed``); ``auto`` picks per iteration by the measured crossover in active
  fraction.
- Compiled execution (``ModelConfig.compile``): the core step's two attention-free halves
  (``CoreSteps``: input mix + q/k/v, and output projection + MLP), which the dense, unroll and
  packed steps share, run under ``torch.compile``; eager when compilation is unavailable or fails.
- bf16 autocast is safe: router logits, softmaxes, log-probabilities, q and the KL are float32.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

log = logging.getLogger(__name__)

PAD_ID = 0  # the vocabulary puts <pad> at id 0 (anira.dataset.Vocabulary)
ROUTERS = ("fixed", "early", "online", "act", "expert_choice", "random")
ONLINE_RULES = ("median", "mode")
EXECUTIONS = ("dense", "packed", "auto")
HALTED_VIEWS = ("frozen", "active_only", "recompute")
ESTIMATORS = ("unroll", "rescale_final", "expected")


@dataclass
class ModelConfig:
    vocab_size: int = 64  # set by the dataset's vocab.json
    max_seq_len: int = 256  # longest sequence of any split (extrapolation included); RoPE table
    d_model: int = 64  # ≈0.15M parameters at 64: learns BREVO N≤6 in CPU minutes (docs/study.md)
    n_heads: int = 4  # head dim 16 at d_model 64
    mlp_ratio: int = 4  # the usual 4x MLP
    max_depth: int = 6  # D: 14 for MANO, 6 elsewhere (the paper)
    # fixed | early (ANIRA-E) | online (ANIRA-O) | act | expert_choice | random (a control)
    router: str = "fixed"
    online_rule: str = "median"  # ANIRA-O inference: median (first d with CDF ≥ ½) | mode
    # Weight of the router's regulariser (KL(q || p_b); act: the ponder cost, τ; expert_choice: the
    # predictor's BCE), summed over a sequence's tokens, averaged over sequences.
    gamma: float = 0.01
    prior_base: float = 1.0  # b of p_b(d) ∝ b^-d: 1 is an entropy bonus, > 1 penalises depth
    gumbel_tau: float = 1.0  # ANIRA-E Gumbel-softmax temperature (training only)
    # Training: unroll (paper) | rescale_final (ours, packed-compatible) | expected (PonderNet's
    # expected loss over halting steps; online only). act ignores it: its mixture trains it.
    estimator: str = "unroll"
    act_epsilon: float = 0.01  # act: halt once Σ_r h_r ≥ 1 − ε (Graves 2016)
    capacity_ratio: float = 0.8  # expert_choice: share c_r = ratio^(r−1) of tokens runs iteration r
    execution: str = "auto"  # dense (reference) | packed (active tokens only) | auto (crossover)
    halted_view: str = "frozen"  # frozen (paper) | active_only (halted tokens vanish) | recompute
    router_hidden_ratio: int = 3  # heads LN→Linear(d,3d)→GELU→Linear: ≈8% of params (paper)
    rope_base: float = 10000.0  # RoPE frequency base
    packed_crossover: float | None = None  # auto: packed below this active fraction; None: measured
    compile: bool = False  # torch.compile the core steps; off: on a CPU it rarely repays (scales)
    # random router: P(d) for d = 1..D, the depth distribution every token draws from (a trained
    # adaptive model's executed-depth histogram, so compute matches: anira.train resolves it)
    depth_probs: tuple[float, ...] | None = None
    # random router: the salt of its inference draws, the run's seed, so each training seed is an
    # independent draw of the control (0 in checkpoints saved before the salt existed, as they ran)
    draw_salt: int = 0

    def __post_init__(self) -> None:
        assert self.router in ROUTERS, f"router must be one of {ROUTERS}, got {self.router!r}"
        assert self.online_rule in ONLINE_RULES, f"online_rule must be in {ONLINE_RULES}"
        assert self.execution in EXECUTIONS, f"execution must be one of {EXECUTIONS}"
        assert self.estimator in ESTIMATORS, f"estimator must be one of {ESTIMATORS}"
        assert self.halted_view in HALTED_VIEWS, f"halted_view must be one of {HALTED_VIEWS}"
        assert self.max_depth >= 1, f"max_depth must be at least 1, got {self.max_depth}"
        assert self.d_model % self.n_heads == 0, "d_model must be a multiple of n_heads"
        assert (self.d_model // self.n_heads) % 2 == 0, "RoPE needs an even head dimension"
        assert self.prior_base > 0, "prior_base must be positive"
        assert self.gumbel_tau > 0, "gumbel_tau must be positive"
        assert 0 < self.act_epsilon < 1, "act_epsilon must be in (0, 1)"
        assert 0 < self.capacity_ratio <= 1, "capacity_ratio must be in (0, 1]"
        assert self.estimator != "expected" or self.router == "online", (
            "the expected estimator (PonderNet's loss) needs the online router"
        )
        assert self.estimator == "unroll" or self.router != "expert_choice", (
            "expert_choice trains its scores through the unroll estimator"
        )
        if self.depth_probs is not None:
            probs = self.depth_probs
            assert self.router == "random", "depth_probs is the random router's"
            assert len(probs) == self.max_depth, f"depth_probs needs {self.max_depth} values"
            assert min(probs) >= 0 and abs(sum(probs) - 1) < 1e-6, "depth_probs must sum to 1"


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


# -----------------------------------------------------------------------------------------------
# Layers


def rope_tables(max_len: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()  # [max_len, head_dim/2]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (first half, second half) pairs of the head dim; x [..., H, hd], cos [..., hd/2]."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.unsqueeze(-2).to(x.dtype), sin.unsqueeze(-2).to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Block(nn.Module):
    """A pre-norm Transformer layer, split into the pieces packed execution needs:
    ``project`` (norm, q/k/v, RoPE), ``attend`` (scaled dot-product attention) and ``finish``
    (output projection, residual, MLP)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_heads, self.head_dim = cfg.n_heads, d // cfg.n_heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            nn.Linear(d, cfg.mlp_ratio * d, bias=False),
            nn.GELU(),
            nn.Linear(cfg.mlp_ratio * d, d, bias=False),
        )

    def project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x [..., d] → q, k, v [..., H, hd] with RoPE applied to q and k."""
        q, k, v = self.qkv(self.norm1(x)).unflatten(-1, (3, self.n_heads, self.head_dim)).unbind(-3)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    @staticmethod
    def attend(q, k, v, mask: torch.Tensor | None) -> torch.Tensor:
        """q [B, Tq, H, hd], k/v [B, Tk, H, hd], mask [B, 1, Tq, Tk] bool or None (= causal)."""
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        return y.transpose(1, 2)

    def finish(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x [..., d] the layer input, y [..., H, hd] its attention output → the layer output."""
        x = x + self.out(y.flatten(-2))
        return x + self.mlp(self.norm2(x))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        q, k, v = self.project(x, cos, sin)
        return self.finish(x, self.attend(q, k, v, None))

    def matmul_params(self) -> int:
        return (
            self.qkv.weight.numel()
            + self.out.weight.numel()
            + sum(m.weight.numel() for m in self.mlp if isinstance(m, nn.Linear))
        )


class CoreBlock(nn.Module):
    """The shared recurrent block: ``s_r = layer(adapter([s_{r-1}; e]))``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.adapter = nn.Linear(2 * cfg.d_model, cfg.d_model, bias=False)
        self.layer = Block(cfg)

    def inject(self, s: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.adapter(torch.cat((s, e.to(s.dtype)), dim=-1))

    def mix(self, s: torch.Tensor, e: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """The layer input x = adapter([s; e]) of rows s and its q, k, v: (x, q, k, v)."""
        x = self.inject(s, e)
        return (x, *self.layer.project(x, cos, sin))

    def forward(self, s, e, cos, sin) -> torch.Tensor:
        return self.layer(self.inject(s, e), cos, sin)

    def matmul_params(self) -> int:
        return self.adapter.weight.numel() + self.layer.matmul_params()


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


def matmul_weights(module: nn.Module) -> int:
    """The weights of a module's linear layers (2 FLOPs each per row)."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))


def decision_head(cfg: ModelConfig, n_out: int) -> nn.Sequential:
    hidden = cfg.router_hidden_ratio * cfg.d_model
    return nn.Sequential(
        nn.LayerNorm(cfg.d_model),
        nn.Linear(cfg.d_model, hidden),
        nn.GELU(),
        nn.Linear(hidden, n_out),
    )


# -----------------------------------------------------------------------------------------------
# Depth distributions (float32 throughout)


def wide(x: torch.Tensor) -> torch.Tensor:
    """x in float32, or float64 if it is (gradient checks by finite differences run in float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def log_prior(max_depth: int, base: float, device=None) -> torch.Tensor:
    """log p_b(d) for d = 1..D with p_b(d) ∝ b^-d. Example: D=2, b=2 → p = (2/3, 1/3)."""
    d = torch.arange(1, max_depth + 1, dtype=torch.float32, device=device)
    return torch.log_softmax(-d * math.log(base), dim=0)


def kl_to_prior(log_q: torch.Tensor, base: float) -> torch.Tensor:
    """KL(q || p_b) = Σ_d q(d) (log q(d) − log p_b(d)) over the last dimension (log_q float32)."""
    log_p = log_prior(log_q.shape[-1], base, log_q.device)
    q = log_q.exp()
    return (q * (log_q - log_p)).sum(-1)


def online_log_q(z: torch.Tensor) -> torch.Tensor:
    """Stick-breaking depth distribution from halting logits z [..., D-1] (λ_r = σ(z_r)).

    log q(d) = log λ_d + Σ_{j<d} log(1−λ_j) for d < D, and log q(D) = Σ_{j<D} log(1−λ_j).
    Example: λ = (0.5, 0.5), D = 3 → q = (0.5, 0.25, 0.25).
    """
    z = wide(z)
    log_stay = F.logsigmoid(-z).cumsum(-1)  # log S_r = Σ_{j≤r} log(1−λ_j)
    before = F.pad(log_stay, (1, 0))  # log S_{r-1}, with S_0 = 1
    return torch.cat((before[..., :-1] + F.logsigmoid(z), before[..., -1:]), dim=-1)


def halt_now(
    z_r: torch.Tensor,
    r: int,
    max_depth: int,
    log_stay: torch.Tensor,
    best: torch.Tensor,
    rule: str,
    u: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One online halting decision after iteration r < D, from λ_r = σ(z_r).

    ``log_stay`` = log S_{r-1} = Σ_{j<r} log(1−λ_j); ``best`` = max_{j<r} log q(j). Returns
    (halt, new log_stay, new best). Rules:
    - ``sample``/``median``: inverse CDF, halt at the first r with CDF(r) = 1 − S_r ≥ u (u ~ U(0,1)
      in training, u = ½ for the median). The CDF up to r needs only λ_1..λ_r, so this is exact.
    - ``mode``: halt at the first r that is the most likely depth of the q the token would report if
      it halted there (a halted token's later λ's are those of its frozen state, λ_r): q(r) beats
      every earlier q(j) (ties go to the smaller depth) and q(r) ≥ q(D) = S_{r-1}(1−λ_r)^{D−r}
      (the depths between r and D are then below q(r) too). Example, D = 4, λ = (0.3, 0.6, ·):
      r=1: q(1) = 0.3 < q(D) = 0.7³ = 0.343 → go on; r=2: q(2) = 0.7·0.6 = 0.42 > 0.3 and
      ≥ q(D) = 0.7·0.4² = 0.112 → halt at 2.
    """
    z_r = wide(z_r)
    log_lam, log_not = F.logsigmoid(z_r), F.logsigmoid(-z_r)
    log_q_r = log_stay + log_lam
    new_stay = log_stay + log_not
    if rule == "mode":
        halt = (log_q_r > best) & (log_q_r >= log_stay + (max_depth - r) * log_not)
    else:
        threshold = torch.full_like(z_r, 0.5) if u is None else u
        halt = -torch.expm1(new_stay) >= threshold
    return halt, new_stay, torch.maximum(best, log_q_r)


def online_depth(z: torch.Tensor, rule: str, u: torch.Tensor | None = None) -> torch.Tensor:
    """The depth the online rule picks for a full sequence of halting logits z [..., D-1] (the λ's
    after the halting iteration are replaced by the halting one, as for a frozen token)."""
    max_depth = z.shape[-1] + 1
    depth = torch.full(z.shape[:-1], max_depth, dtype=torch.long, device=z.device)
    log_stay = torch.zeros(z.shape[:-1], device=z.device)
    best = torch.full_like(log_stay, -math.inf)
    for r in range(1, max_depth):
        halt, log_stay, best = halt_now(z[..., r - 1], r, max_depth, log_stay, best, rule, u)
        depth = torch.where(halt & (depth == max_depth), r, depth)
    return depth


# -----------------------------------------------------------------------------------------------
# Routers: start (depths known up front) → observe (after each iteration) → finish (q, ST weight)


@dataclass
class RouterState:
    """What a router carries through the iterations of one forward pass (the fixed router's)."""

    depth: torch.Tensor  # [B, T] long; online: D until the token halts
    forced: bool  # depths given to ``forward``: the router computes q but decides nothing


@dataclass
class EarlyState(RouterState):
    log_q: torch.Tensor  # [B, T, D] float32, log softmax(head(e))
    soft: torch.Tensor  # [B, T, D] float32: the Gumbel-softmax sample (training) or q


@dataclass
class OnlineState(RouterState):
    valid: torch.Tensor  # [B, T] bool, non-pad tokens (pads halt after one iteration)
    u: torch.Tensor | None  # [B, T] U(0,1) thresholds of the training sample; None: inference
    log_stay: torch.Tensor  # [B, T] float32, log S_r of the λ's observed so far
    best: torch.Tensor  # [B, T] float32, max log q(j) over the depths j observed so far
    z: list[torch.Tensor] = field(default_factory=list)  # halting logits z_1, z_2, … [B, T]


class FixedRouter(nn.Module):
    """Every token runs all D iterations; no decision head."""

    estimated = False  # learns its depths through ``ModelConfig.estimator`` (unroll, rescale_final)
    keyed = False  # True: ``start`` takes ``keys``, the tokens' prefix keys (``prefix_keys``)

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def start(self, e, valid, depth, training) -> RouterState:
        if depth is not None:
            return RouterState(depth, True)
        return RouterState(torch.where(valid, self.cfg.max_depth, 1), False)

    def observe(self, state, s, r, executor) -> None:
        pass

    def finish(self, state) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(log q [B, T, D] float32 or None, probability of the executed depth for the ST)."""
        return None, None

    def keep(self, state, r: int) -> torch.Tensor | None:
        """The soft keep_r [B, T] of the ``unroll`` estimator (None: no decision to train)."""
        return None

    def head_calls(self, depth: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(depth)

    def head_params(self) -> int:
        """Matmul weights of one decision-head call at inference (the FLOP count's P_head)."""
        return matmul_weights(self)

    def output(self, state, s: torch.Tensor) -> torch.Tensor:
        """What the coda reads of each token: its final (frozen) state."""
        return s

    def penalty(self, state, log_q: torch.Tensor) -> torch.Tensor:
        """The regulariser per token [B, T] that ``gamma`` weighs: KL(q || p_b)."""
        return kl_to_prior(log_q, self.cfg.prior_base)


class EarlyRouter(FixedRouter):
    """ANIRA-E: q(d) = softmax(head(e))_d from the prelude output, decided once per token.
    Training: straight-through Gumbel-softmax sample d = argmax(log q + g); inference: the mode."""

    estimated = True

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.head = decision_head(cfg, cfg.max_depth)

    def start(self, e, valid, depth, training) -> EarlyState:
        log_q = torch.log_softmax(self.head(e).float(), dim=-1)
        forced = depth is not None
        if training:
            gumbel = -torch.log(-torch.log(torch.rand_like(log_q).clamp_min(1e-20)))
            soft = torch.softmax((log_q + gumbel) / self.cfg.gumbel_tau, dim=-1)
        else:
            soft = log_q.exp()
        if depth is None:
            depth = torch.where(valid, soft.argmax(-1) + 1, 1)
        return EarlyState(depth, forced, log_q=log_q, soft=soft)

    def finish(self, state: EarlyState):
        chosen = state.soft.gather(-1, (state.depth - 1).unsqueeze(-1)).squeeze(-1)
        return state.log_q, chosen

    def keep(self, state: EarlyState, r):
        """Σ_{d≥r} y_d: the sample's mass on depths that run iteration r."""
        return state.soft[..., r - 1 :].sum(-1)

    def head_calls(self, depth):
        return torch.ones_like(depth)


class OnlineRouter(FixedRouter):
    """ANIRA-O: after iteration r < D a head on the state gives λ_r = σ(z_r); q is the
    stick-breaking distribution of ``online_log_q``. Training samples d by inverse CDF (u ~ U(0,1),
    drawn up front); inference uses ``online_rule`` (``halt_now``). A halted token's later λ's are
    the head on its frozen state, i.e. λ_d repeated; they shape q's tail only."""

    estimated = True

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.head = decision_head(cfg, 1)

    def start(self, e, valid, depth, training) -> OnlineState:
        forced = depth is not None
        if depth is None:  # D until the token halts
            depth = torch.full(valid.shape, self.cfg.max_depth, dtype=torch.long, device=e.device)
        return OnlineState(
            depth,
            forced,
            valid=valid,
            u=torch.rand(valid.shape, device=e.device) if training else None,
            log_stay=torch.zeros(valid.shape, device=e.device),
            best=torch.full(valid.shape, -math.inf, device=e.device),
        )

    def observe(self, state: OnlineState, s, r, executor) -> None:
        active = state.depth >= r
        prev = (
            state.z[-1]
            if state.z
            else torch.zeros(s.shape[:-1], dtype=wide(s).dtype, device=s.device)
        )
        z_r = executor.map_active(lambda x: wide(self.head(x).squeeze(-1)), s, active, prev)
        state.z.append(z_r)
        if state.forced:
            return
        rule = "sample" if state.u is not None else self.cfg.online_rule
        halt, state.log_stay, state.best = halt_now(
            z_r, r, self.cfg.max_depth, state.log_stay, state.best, rule, state.u
        )
        halt = (halt | ~state.valid) & active  # pad positions stop after one iteration
        state.depth = torch.where(halt, r, state.depth)

    def finish(self, state: OnlineState):
        D = self.cfg.max_depth
        if D == 1:
            log_q = torch.zeros((*state.depth.shape, 1), device=state.depth.device)
        else:
            z = state.z + [state.z[-1]] * (D - 1 - len(state.z))  # skipped: every token halted
            log_q = online_log_q(torch.stack(z, dim=-1))
        chosen = log_q.gather(-1, (state.depth - 1).unsqueeze(-1)).squeeze(-1).exp()
        return log_q, chosen

    def keep(self, state: OnlineState, r):
        """The survival S_{r-1} = Π_{j<r}(1−λ_j) = P(d ≥ r) from the λ's observed so far."""
        observed = state.z[: r - 1]
        if not observed:
            return torch.ones(state.depth.shape, device=state.depth.device)
        return F.logsigmoid(-torch.stack(observed, -1)).sum(-1).exp()

    def head_calls(self, depth):
        return depth.clamp(max=self.cfg.max_depth - 1)


@dataclass
class ActState(RouterState):
    valid: torch.Tensor  # [B, T] bool, non-pad tokens (pads halt after one iteration)
    total: torch.Tensor  # [B, T] Σ_j h_j over the iterations the token ran (frozen once halted)
    mixture: torch.Tensor  # [B, T, d] Σ_j p_j s_j over the iterations observed so far
    p: list[torch.Tensor] = field(default_factory=list)  # halting weights p_1, p_2, … [B, T]
    z: list[torch.Tensor] = field(default_factory=list)  # halting logits z_1, z_2, … [B, T]


class ActRouter(OnlineRouter):
    """ACT (Graves 2016): after iteration r < D a head on the state gives the halting probability
    h_r = σ(z_r); a token halts at N, the first r with Σ_{j≤r} h_j ≥ 1 − ε (``act_epsilon``), or
    at D. Its halting weights are p_r = h_r for r < N and the remainder R = 1 − Σ_{j<N} h_j at N;
    the coda reads the mixture Σ_r p_r s_r (``output``) and the regulariser is the ponder cost
    ρ = N + R (``penalty``, weighed by ``gamma`` = τ). The same rule runs in training and at
    inference (deterministic), and training needs no estimator: the mixture weights and R carry
    the gradient, so it trains with the executed depths only (packed execution included).

    Frozen-state semantics, as every router: a halted token's *state* stays s_N for later
    iterations and other tokens' attention reads the keys/values of s_N; the mixture is only what
    the coda reads of it. Departure from Graves, whose RNN carries the mixture forward as the next
    time step's state: here the next "time steps" are later tokens' attention, and they read s_N,
    so that one frozen state per token serves the dense, packed and cached paths alike (the
    mixture is only known once the token halts; making it the frozen state would change the state
    other tokens read mid-computation). q(d) = p_d describes the depth (E_q[d], figures); it is
    detached, ACT's gradient goes through the mixture and R only."""

    estimated = False

    def start(self, e, valid, depth, training) -> ActState:
        forced = depth is not None
        if depth is None:  # D until the token halts
            depth = torch.full(valid.shape, self.cfg.max_depth, dtype=torch.long, device=e.device)
        total = wide(torch.zeros(valid.shape, dtype=e.dtype, device=e.device))
        return ActState(depth, forced, valid=valid, total=total, mixture=wide(torch.zeros_like(e)))

    def observe(self, state: ActState, s, r, executor) -> None:
        active = state.depth >= r
        prev = state.z[-1] if state.z else torch.zeros_like(state.total)
        z_r = executor.map_active(lambda x: wide(self.head(x).squeeze(-1)), s, active, prev)
        state.z.append(z_r)
        h = torch.sigmoid(z_r)
        if state.forced:
            halt = active & (state.depth == r)
        else:
            halt = active & ((state.total + h >= 1 - self.cfg.act_epsilon) | ~state.valid)
            state.depth = torch.where(halt, r, state.depth)
        p = torch.where(halt, 1 - state.total, torch.where(active, h, 0.0))
        state.p.append(p)
        state.mixture = state.mixture + p.unsqueeze(-1) * wide(s)
        state.total = torch.where(active, state.total + h, state.total)

    def weights(self, state: ActState) -> torch.Tensor:
        """p [B, T, D]: p_r up to each token's N (R at N), zero after it."""
        D = self.cfg.max_depth
        last = torch.where(state.depth == D, 1 - state.total, 0.0)  # R of tokens that reached D
        return torch.stack([*state.p, *[torch.zeros_like(last)] * (D - 1 - len(state.p)), last], -1)

    def output(self, state: ActState, s: torch.Tensor) -> torch.Tensor:
        """The mixture Σ_r p_r s_r (the tokens that reach D add R · s_D)."""
        last = self.weights(state)[..., -1:]
        return (state.mixture + last * wide(s)).to(s.dtype)

    def finish(self, state: ActState):
        return self.weights(state).detach().log(), None

    def penalty(self, state: ActState, log_q) -> torch.Tensor:
        """The ponder cost ρ = N + R (only R has a gradient)."""
        remainder = self.weights(state).gather(-1, (state.depth - 1).unsqueeze(-1)).squeeze(-1)
        return state.depth + remainder


@dataclass
class ExpertChoiceState(RouterState):
    valid: torch.Tensor  # [B, T] bool, non-pad tokens
    training: bool  # top-k of the router's scores decides; otherwise the causal predictor
    scores: list[torch.Tensor] = field(default_factory=list)  # router scores after r [B, T]
    z: list[torch.Tensor] = field(default_factory=list)  # predictor halting logits −a_r [B, T]
    bce: list[torch.Tensor] = field(default_factory=list)  # predictor BCE per iteration [B, T]


class ExpertChoiceRouter(OnlineRouter):
    """Expert-choice capacity routing (Mixture-of-Depths / Mixture-of-Recursions): every token
    runs iteration 1; after iteration r < D a head scores the tokens still iterating and, in each
    sequence, only the ⌊c_{r+1}·n + ½⌋ best-scored (n: its non-pad tokens) run iteration r + 1,
    with c_r = ``capacity_ratio``^(r−1). So the active token-steps Σ_r c_r·n are fixed before
    training (hierarchical, as MoR: iteration r + 1 chooses among those that ran r).

    Top-k over a sequence is not causal (a token's choice depends on later tokens' scores), so
    inference uses MoD's auxiliary predictor: a second head on the *detached* state gives a_r,
    trained by BCE to predict the top-k choice (``penalty``, weighed by ``gamma``), and at
    inference a token runs iteration r + 1 iff a_r > 0, which depends on its prefix only. The
    predictor's λ_r = σ(−a_r) are halting probabilities: q is their stick-breaking distribution
    (as ANIRA-O's, ``online_log_q``), E_q[d] its expected depth, and a halted token's later λ's
    repeat its last (``finish``); the executed depth is q's first r with λ_r > ½, not q's median.

    Training (``unroll`` estimator only): the score's gate keep_r = σ(score after r − 1) for
    r ≥ 2, straight-through (value 1[d ≥ r]). Departure from MoD/MoR, which multiply the block's
    output by the router weight in the forward pass too: here the forward values are those of
    inference, as for every router of this model, and the gate only carries the gradient
    ∂L/∂keep_r = <∂L/∂s_r, core(s_{r−1}) − s_{r−1}>. FLOPs count the predictor only
    (``head_params``): the scores are a training cost."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.predictor = decision_head(cfg, 1)

    def head_params(self) -> int:
        return matmul_weights(self.predictor)

    def start(self, e, valid, depth, training) -> ExpertChoiceState:
        forced = depth is not None
        if depth is None:  # D until the token is dropped
            depth = torch.full(valid.shape, self.cfg.max_depth, dtype=torch.long, device=e.device)
        return ExpertChoiceState(depth, forced, valid=valid, training=training)

    def observe(self, state: ExpertChoiceState, s, r, executor) -> None:
        active = state.depth >= r
        zeros = torch.zeros(active.shape, dtype=wide(s).dtype, device=s.device)
        prev = -state.z[-1] if state.z else zeros
        a_r = executor.map_active(
            lambda x: wide(self.predictor(x.detach()).squeeze(-1)), s, active, prev
        )
        state.z.append(-a_r)
        if not state.training:
            if not state.forced:  # pads stop after one iteration
                state.depth = torch.where(active & ((a_r <= 0) | ~state.valid), r, state.depth)
            return
        prev = state.scores[-1] if state.scores else zeros
        score = executor.map_active(lambda x: wide(self.head(x).squeeze(-1)), s, active, prev)
        state.scores.append(score)
        candidates = active & state.valid
        chosen = self.top_k(score, candidates, state.valid, r + 1)
        bce = F.binary_cross_entropy_with_logits(a_r, chosen.to(a_r.dtype), reduction="none")
        state.bce.append(torch.where(candidates, bce, 0.0))
        if not state.forced:
            state.depth = torch.where(active & ~chosen, r, state.depth)

    def top_k(self, score, candidates, valid, r: int) -> torch.Tensor:
        """The candidates [B, T] among their sequence's ⌊c_r·n + ½⌋ best scores (ties: the
        earlier position). Example: c_r = 0.5, n = 4, scores (3, 1, 2, 0) → positions 0 and 2."""
        k = torch.floor(self.cfg.capacity_ratio ** (r - 1) * valid.sum(-1) + 0.5)
        order = score.masked_fill(~candidates, -math.inf).argsort(
            dim=-1, descending=True, stable=True
        )
        positions = torch.arange(order.shape[-1], device=order.device).expand_as(order)
        rank = torch.empty_like(order).scatter_(-1, order, positions)
        return candidates & (rank < k.unsqueeze(-1))

    def keep(self, state: ExpertChoiceState, r):
        """σ(score after r − 1): the gate of iteration r (everyone runs iteration 1)."""
        if r == 1:
            return torch.ones(state.depth.shape, device=state.depth.device)
        return torch.sigmoid(state.scores[r - 2])

    def penalty(self, state: ExpertChoiceState, log_q) -> torch.Tensor:
        """The predictor's BCE against the top-k choice, summed over the token's iterations."""
        if not state.bce:
            return torch.zeros(state.depth.shape, device=state.depth.device)
        return torch.stack(state.bce, -1).sum(-1)


MASK32 = 0xFFFFFFFF


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (int64 tensors in [0, 2^32), no overflow): each output bit depends
    on every input bit, so consecutive keys give unrelated values."""
    for _ in range(2):
        x = (((x >> 16) ^ x) * 0x45D9F3B) & MASK32
    return (x >> 16) ^ x


def prefix_keys(tokens: torch.Tensor, positions: torch.Tensor, carry: torch.Tensor) -> torch.Tensor:
    """Per-token keys [B, T] hashed from each token's prefix: key_t = carry + Σ_{j≤t} h(x_j, j)
    mod 2^32 over the non-pad tokens x_j at positions ``positions`` [B, T]; ``carry`` [B] is the
    key of the position before the chunk (zeros for a whole sequence). A chunk continuing a
    sequence gets the keys of the whole sequence, so the full forward pass, packed execution and
    cached decoding draw the same depth for a token (``RandomRouter``)."""
    x = (tokens.long() * 0x9E3779B1 + positions.long() * 0x85EBCA6B) & MASK32
    terms = torch.where(tokens != PAD_ID, mix32(x), 0)
    return (carry.unsqueeze(-1) + terms.cumsum(-1)) & MASK32


class RandomRouter(FixedRouter):
    """The matched-compute control: every token's depth is an independent draw from
    ``depth_probs`` (by default a trained adaptive model's executed-depth histogram), whatever the
    token. A draw is u = hash(prefix key ⊕ salt) / 2^32 through the inverse CDF: at inference the
    salt is ``draw_salt`` (the run's seed), so a token's depth is a fixed pseudo-random function of
    its prefix and the seed — equal in every execution and in cached decoding, uncorrelated with
    any feature of the token, and independent across seeds (so the seed-to-seed spread of a
    control's findings includes its draws); in training a fresh salt per forward pass gives fresh
    draws at every step. No head, no q: the control has
    nothing to learn, and its expected depth is the distribution's mean."""

    keyed = True

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        assert cfg.depth_probs is not None, "the random router needs depth_probs"
        cdf = torch.tensor(cfg.depth_probs, dtype=torch.float64).cumsum(0)
        self.register_buffer("cdf", (cdf / cdf[-1]).float(), persistent=False)
        # hashed, so that seeds 0, 1, 2 differ in every bit, not only the lowest
        self.inference_salt = (
            int(mix32(torch.tensor(cfg.draw_salt, device="cpu"))) if cfg.draw_salt else 0
        )

    def start(self, e, valid, depth, training, keys=None) -> RouterState:
        if depth is not None:
            return RouterState(depth, True)
        salt = int(torch.randint(0, MASK32, ())) if training else self.inference_salt
        u = mix32(keys ^ salt).double() / 2.0**32
        drawn = torch.searchsorted(self.cdf.double(), u, right=True) + 1
        return RouterState(torch.where(valid, drawn.clamp(max=self.cfg.max_depth), 1), False)


ROUTER_CLASSES = {
    "fixed": FixedRouter,
    "early": EarlyRouter,
    "online": OnlineRouter,
    "act": ActRouter,
    "expert_choice": ExpertChoiceRouter,
    "random": RandomRouter,
}


# -----------------------------------------------------------------------------------------------
# The model


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

    def __init__(self, model: AniraModel, e, cos, sin, view: str) -> None:
        self.core, self.e, self.cos, self.sin = model.core, e, cos, sin
        self.steps = model.core_steps
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
        new = self.steps.finish(x, self.core.layer.attend(q, k, v, mask))
        return new.to(s.dtype), k, v

    def map_active(self, fn, s, active, prev):
        return torch.where(active, fn(s), prev)


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
        """dense, packed or auto (``anira.model.packed``); ``recompute`` and the ``unroll``
        estimator use the dense path."""
        if self.cfg.execution == "dense" or self.cfg.halted_view == "recompute" or self.unrolls():
            return DenseExecutor(self, e, cos, sin, self.cfg.halted_view)
        from anira.model.packed import PackedExecutor

        return PackedExecutor(self, e, cos, sin, self.cfg)

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
