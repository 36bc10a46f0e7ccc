"""Routers: who runs how many core iterations, and the depth distribution q they report.

- Routers are small strategy classes (``FixedRouter``, ``EarlyRouter``, ``OnlineRouter``, and the
  field's ``ActRouter`` and ``ExpertChoiceRouter``) with the same three hooks: ``start`` (depths
  known up front, if any), ``observe`` (after each iteration) and ``finish`` (the distribution q
  over depths); ``output`` (what the coda reads), ``penalty`` (the regulariser γ weighs) and
  ``head_params`` have defaults. Adding a router adds a class (and its ``ROUTERS`` name). The
  matched-compute control ``RandomRouter`` sets ``keyed``: its ``start`` also gets a per-token key
  hashed from the token's prefix (``prefix_keys``), from which it draws.
- ``observe`` gets the executor that runs the iterations (``anira.model.execution``) and evaluates
  its heads through ``executor.map_active``, on the tokens still iterating only.
- ANIRA-O's q needs λ_1..λ_{D−1}; after a token halts at d its later λ's are the head on its frozen
  state, i.e. λ_d (what a masked dense unroll applying the head at every iteration reports). So q,
  E_q[d] and the KL come from the executed steps alone. ``halt_now`` defines the decision rules.
- Router logits, softmaxes, log-probabilities, q and the KL are float32 (``wide``), so bf16
  autocast is safe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from anira.io import AniraInputError
from anira.model.config import PAD_ID, ModelConfig


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
        if cfg.depth_probs is None:
            raise AniraInputError("the random router needs depth_probs")
        cdf = torch.tensor(cfg.depth_probs, dtype=torch.float64).cumsum(0)
        self.register_buffer("cdf", (cdf / cdf[-1]).float(), persistent=False)
        # hashed, so that seeds 0, 1, 2 differ in every bit, not only the lowest (mix32(0) = 0:
        # checkpoints saved before the salt existed draw as they did)
        self.inference_salt = int(mix32(torch.tensor(cfg.draw_salt, device="cpu")))

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
