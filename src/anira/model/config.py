"""The model's settings (``ModelConfig``) and the choices they allow; no torch needed."""

from __future__ import annotations

from dataclasses import dataclass

from anira.io import AniraInputError

PAD_ID = 0  # the vocabulary puts <pad> at id 0 (anira.dataset.Vocabulary)
ROUTERS = ("fixed", "early", "online", "act", "expert_choice", "random")
ONLINE_RULES = ("median", "mode")
EXECUTIONS = ("dense", "packed", "auto")
HALTED_VIEWS = ("frozen", "active_only", "recompute")
ESTIMATORS = ("unroll", "rescale_final", "expected")


def require(ok: bool, message: str) -> None:
    if not ok:
        raise AniraInputError(message)


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
        """Every setting checked, in order; the first bad one raises ``AniraInputError``."""
        require(self.router in ROUTERS, f"router must be one of {ROUTERS}, got {self.router!r}")
        require(self.online_rule in ONLINE_RULES, f"online_rule must be in {ONLINE_RULES}")
        require(self.execution in EXECUTIONS, f"execution must be one of {EXECUTIONS}")
        require(self.estimator in ESTIMATORS, f"estimator must be one of {ESTIMATORS}")
        require(self.halted_view in HALTED_VIEWS, f"halted_view must be one of {HALTED_VIEWS}")
        require(self.max_depth >= 1, f"max_depth must be at least 1, got {self.max_depth}")
        require(self.d_model % self.n_heads == 0, "d_model must be a multiple of n_heads")
        require((self.d_model // self.n_heads) % 2 == 0, "RoPE needs an even head dimension")
        require(self.prior_base > 0, "prior_base must be positive")
        require(self.gumbel_tau > 0, "gumbel_tau must be positive")
        require(0 < self.act_epsilon < 1, "act_epsilon must be in (0, 1)")
        require(0 < self.capacity_ratio <= 1, "capacity_ratio must be in (0, 1]")
        require(
            self.estimator != "expected" or self.router == "online",
            "the expected estimator (PonderNet's loss) needs the online router",
        )
        require(
            self.estimator == "unroll" or self.router != "expert_choice",
            "expert_choice trains its scores through the unroll estimator",
        )
        if self.depth_probs is not None:
            probs = self.depth_probs
            require(self.router == "random", "depth_probs is the random router's")
            require(len(probs) == self.max_depth, f"depth_probs needs {self.max_depth} values")
            require(min(probs) >= 0 and abs(sum(probs) - 1) < 1e-6, "depth_probs must sum to 1")
