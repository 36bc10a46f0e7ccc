"""Training estimators: the paper's dense ``unroll`` with straight-through keep_r, against
finite differences of an independently written soft unroll, and ``rescale_final``."""

from __future__ import annotations

import pytest
import torch

from anira.model import AniraModel, ModelConfig

V, T, D = 11, 6, 3


def tiny(router: str, estimator: str = "unroll", **kw) -> AniraModel:
    torch.manual_seed(0)
    cfg = dict(vocab_size=V, max_seq_len=16, d_model=16, n_heads=2, max_depth=D, router=router)
    return AniraModel(ModelConfig(**(cfg | {"estimator": estimator, "gamma": 0.0} | kw)))


def tokens(b: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, V, (b, T), generator=torch.Generator().manual_seed(seed))


def router_gradient(model: AniraModel, x: torch.Tensor, seed: int = 5) -> torch.Tensor:
    model.zero_grad()
    torch.manual_seed(seed)
    out = model(x)
    loss, _ = model.loss(out, x, torch.ones_like(x, dtype=torch.bool))
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.router.parameters()])


def make_core_identity(model: AniraModel) -> None:
    """core(s) = s: every depth gives the same output, so no depth is better than another."""
    model.core.forward = lambda s, e, cos, sin: s
    model.core.inject = lambda s, e: s
    model.core.layer.finish = lambda x, y: x


@pytest.mark.parametrize("router", ["early", "online"])
def test_identity_core_gives_zero_router_gradient_only_under_unroll(router):
    x = tokens()
    unroll = tiny(router, "unroll").train()
    make_core_identity(unroll)
    assert torch.count_nonzero(router_gradient(unroll, x)) == 0
    rescale = tiny(router, "rescale_final").train()
    make_core_identity(rescale)
    assert router_gradient(rescale, x).abs().max() > 1e-4


# The field's routers train without a straight-through unroll of their own depth (act: the
# halting mixture; online + expected: PonderNet's expected loss) or through it (expert_choice):
# with an identity core every depth gives the same output, so the CE gives their heads nothing.
FIELD = [("act", "unroll"), ("expert_choice", "unroll"), ("online", "expected")]


@pytest.mark.parametrize(("router", "estimator"), FIELD)
def test_identity_core_gives_the_field_routers_zero_gradient(router, estimator):
    x = tokens()
    plain = tiny(router, estimator).double().train()
    assert router_gradient(plain, x).abs().max() > 1e-5  # a real core: the router learns
    identity = tiny(router, estimator).double().train()
    make_core_identity(identity)
    assert router_gradient(identity, x).abs().max() < 1e-12  # float64 rounding at most


def router_head_loss(model: AniraModel, x: torch.Tensor, names: list[str]):
    """The training loss as a function of the router parameters ``names`` (float64), for
    ``torch.autograd.gradcheck`` by finite differences."""
    fixed = dict(model.named_parameters())

    def loss(*values: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(5)
        params = fixed | dict(zip(names, values, strict=True))
        out = torch.func.functional_call(model, params, (x,))
        return model.loss(out, x, torch.ones_like(x, dtype=torch.bool))[0]

    return loss, [fixed[n].detach().clone().requires_grad_() for n in names]


@pytest.mark.parametrize(
    ("router", "estimator", "head"),
    [
        ("act", "unroll", "head"),
        ("online", "expected", "head"),
        ("expert_choice", "unroll", "predictor"),
    ],
)
def test_router_gradients_equal_finite_differences(router, estimator, head):
    """ACT (mixture and ponder cost), PonderNet's expected loss and the expert-choice predictor's
    BCE are differentiable in their heads' last layer: float64 central differences agree."""
    model = tiny(router, estimator, gamma=0.1).double().train()
    torch.nn.init.normal_(getattr(model.router, head)[-1].weight, std=0.3)
    x = tokens()
    names = [f"router.{head}.3.weight", f"router.{head}.3.bias"]
    loss, inputs = router_head_loss(model, x, names)
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-7, rtol=1e-4)


def test_expert_choice_score_gradient_equals_finite_differences_of_the_soft_unroll():
    """expert_choice's scores train through the unroll: the model's gradient is that of the soft
    unroll s_r = s_{r−1} + keep_r · (core(s_{r−1}) − s_{r−1}) with keep_r = 1[d ≥ r] + σ(score_θ
    after r − 1) − c_r (c_r: the gate's value at the model's θ, so the value is the executed
    one; a halted token's score is that of its last iteration), a smooth function of the score
    head's last layer θ, checked by float64 central differences."""
    model = tiny("expert_choice", capacity_ratio=0.6).double().train()
    torch.nn.init.normal_(model.router.head[-1].weight, std=0.3)
    x = tokens()
    router_gradient(model, x)
    layer = model.router.head[-1]
    got = torch.cat([layer.weight.grad.flatten(), layer.bias.grad])

    with torch.no_grad():
        out = model(x, return_states=True)
        hard = torch.stack([(out.depth >= r).double() for r in range(1, D + 1)], -1)
        base = [torch.sigmoid(model.router.head(s).squeeze(-1)) for s in out.states[1:D]]
        theta = torch.cat([layer.weight.flatten(), layer.bias])
    n = x.shape[1]
    cos, sin = model.rope_cos[:n], model.rope_sin[:n]

    def surrogate(flat: torch.Tensor) -> float:
        layer.weight.copy_(flat[:-1].view_as(layer.weight))
        layer.bias.copy_(flat[-1:])
        e = model.prelude(model.embed(x), cos, sin)
        s, score = e, None
        for r in range(D):
            keep = hard[..., r]
            if r > 0:  # a halted token's gates keep the score of its last iteration
                new = model.router.head(s).squeeze(-1)
                score = new if score is None else torch.where(hard[..., r - 1] > 0, new, score)
                keep = keep + torch.sigmoid(score) - base[r - 1]
            s = s + keep.unsqueeze(-1) * (model.core(s, e, cos, sin) - s)
        logits = model.lm_head(model.norm(model.coda(s, cos, sin)))
        return float(
            torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten())
        )

    eps = 1e-6
    with torch.no_grad():
        units = torch.eye(len(theta), dtype=theta.dtype)
        fd = torch.tensor(
            [(surrogate(theta + eps * u) - surrogate(theta - eps * u)) / (2 * eps) for u in units],
            dtype=theta.dtype,
        )
    assert fd.abs().max() > 1e-5
    torch.testing.assert_close(got, fd, rtol=1e-4, atol=1e-9)


def test_expected_loss_is_the_halting_weighted_cross_entropy():
    """PonderNet's loss, written out: Σ_t Σ_d q_t(d) CE_t(readout of s_d) / n_answers + γ·KL,
    where s_d are the states after d iterations of every token (the fixed-D unroll)."""
    model = tiny("online", "expected", gamma=0.2).train()
    torch.nn.init.normal_(model.router.head[-1].weight, std=0.5)  # q differs between tokens
    x = tokens(3)
    torch.manual_seed(0)
    out = model(x, return_states=True)
    loss, _ = model.loss(out, x, torch.ones_like(x, dtype=torch.bool))
    cos, sin = model.rope_cos[:T], model.rope_sin[:T]
    with torch.no_grad():
        fixed = model.eval()(x, depth=torch.full_like(x, D), return_states=True)
        terms = []
        for d in range(1, D + 1):
            logits = model.lm_head(model.norm(model.coda(fixed.states[d], cos, sin)))
            ce = torch.nn.functional.cross_entropy(
                logits[:, :-1].flatten(0, 1), x[:, 1:].flatten(), reduction="none"
            )
            terms.append(out.q[:, :-1, d - 1].flatten() * ce)
    expected = torch.stack(terms).sum(0).mean() + 0.2 * out.kl.sum(-1).mean()
    assert (out.depth == D).all()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def soft_unroll_loss(model: AniraModel, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Reference: the dense unroll with a *real-valued* keep [B, T, D], written from the model's
    pieces (s_r = s_{r-1} + keep_r · (core(s_{r-1}) − s_{r-1})), loss as AniraModel.loss (γ=0)."""
    n = x.shape[1]
    cos, sin = model.rope_cos[:n], model.rope_sin[:n]
    e = model.prelude(model.embed(x), cos, sin)
    s = e
    for r in range(D):
        s = s + keep[..., r : r + 1] * (model.core(s, e, cos, sin) - s)
    logits = model.lm_head(model.norm(model.coda(s, cos, sin)))
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten())


def test_unroll_router_gradient_equals_finite_difference_sum_over_depths():
    """ANIRA-E: ∂L/∂θ = Σ_d (∂L/∂y_d at the hard sample) · ∂soft_d/∂θ, with ∂L/∂y_d from the
    reference soft unroll at keep_r = Σ_{d≥r} y_d (float64), checked by central differences."""
    model = tiny("early").double().train()
    x = tokens()
    got = router_gradient(model, x)

    torch.manual_seed(5)  # the same Gumbel noise as the model's forward pass
    n = x.shape[1]
    e = model.prelude(model.embed(x), model.rope_cos[:n], model.rope_sin[:n])
    state = model.router.start(e, x != 0, None, True)
    soft = state.soft  # [B, T, D], differentiable in the router's parameters
    hard = torch.nn.functional.one_hot(state.depth - 1, D).double()

    def loss_at(y: torch.Tensor) -> torch.Tensor:
        return soft_unroll_loss(model, x, y.flip(-1).cumsum(-1).flip(-1))  # keep_r = Σ_{d≥r} y_d

    y = hard.clone().requires_grad_()
    (dl_dy,) = torch.autograd.grad(loss_at(y), y)
    eps = 1e-6  # central differences confirm the reference's ∂L/∂y_d on a few coordinates
    for flat in torch.randperm(hard.numel(), generator=torch.Generator().manual_seed(0))[:4]:
        bump = torch.zeros_like(hard).flatten().index_fill(0, flat, eps).view_as(hard)
        with torch.no_grad():
            fd = (loss_at(hard + bump) - loss_at(hard - bump)) / (2 * eps)
        assert float(fd) == pytest.approx(float(dl_dy.flatten()[flat]), rel=1e-5, abs=1e-10)
    model.zero_grad()
    (soft * dl_dy).sum().backward()
    expected = torch.cat([p.grad.flatten() for p in model.router.parameters()])
    assert expected.abs().max() > 1e-6
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("router", ["early", "online"])
@pytest.mark.parametrize("execution", ["dense", "packed", "auto"])
def test_unroll_forward_values_equal_executed_depths(router, execution):
    """The unroll's hard forward pass equals executing only the sampled depths (same noise)."""
    model = tiny(router, "unroll", execution=execution).train()
    x = tokens(3)
    torch.manual_seed(9)
    unrolled = model(x)
    with torch.no_grad():
        executed = model.eval()(x, depth=unrolled.depth)
    torch.testing.assert_close(unrolled.logits, executed.logits, rtol=1e-5, atol=1e-6)
    model.cfg.execution = "dense"  # the reference path: bit for bit
    with torch.no_grad():
        dense = model(x, depth=unrolled.depth)
    assert torch.equal(unrolled.logits.detach(), dense.logits)


# A planted task that needs exactly k iterations: the core is a counter that adds one unit per
# iteration until it reaches the token's k, and the frozen readout predicts the answer only once
# the counter has reached k. EASY needs 1 iteration, HARD needs 3; only the router learns.
EASY, HARD, ANSWER = 1, 2, 3
NEEDED = {EASY: 1, HARD: 3}
PLANTED_D, PLANTED_DIM = 4, 16


def planted_counter_model(router: str, **kw) -> AniraModel:
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=8,
        max_seq_len=16,
        d_model=PLANTED_DIM,
        n_heads=2,
        max_depth=PLANTED_D,
        router=router,
        gamma=0.05,  # act: τ of the ponder cost
        prior_base=2.0,  # depth costs: EASY should settle at 1, HARD at 3
        **kw,
    )
    model = AniraModel(cfg)
    basis = torch.eye(PLANTED_DIM)
    counter, needed = basis[0], basis[1]
    table = torch.zeros(cfg.vocab_size, PLANTED_DIM)
    for token, k in NEEDED.items():
        table[token] = k * needed + 2.0 * basis[1 + token]  # k, and a direction of its own
    table[ANSWER] = basis[5]
    model.embed.weight.data.copy_(table)
    model.prelude.forward = lambda x, cos, sin: x
    model.core.inject = lambda s, e: s
    model.core.layer.finish = lambda x, y: (
        x + counter * ((x @ counter) < (x @ needed) - 0.5).unsqueeze(-1).to(x.dtype)
    )
    model.coda.forward = lambda x, cos, sin: x
    model.norm.forward = lambda x: x

    def readout(h: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*h.shape[:-1], cfg.vocab_size)
        logits[..., ANSWER] = 6.0 * (h @ counter - h @ needed + 0.5)  # > 0 iff counter reached k
        return logits

    model.lm_head.forward = readout
    return model


def planted_batch(n: int, seed: int, n_hard: int | None = None) -> tuple[torch.Tensor, ...]:
    """Sequences ``x ANSWER x ANSWER …`` with x ∈ {EASY, HARD}; the loss is on the ANSWERs.
    ``n_hard``: exactly that many HARD x's per sequence (else each x is drawn uniformly)."""
    g = torch.Generator().manual_seed(seed)
    if n_hard is None:
        x = torch.randint(EASY, HARD + 1, (n, 4), generator=g)
    else:
        order = torch.rand((n, 4), generator=g).argsort(-1)
        x = torch.where(order < n_hard, HARD, EASY)
    tokens = torch.stack([x, torch.full_like(x, ANSWER)], -1).flatten(1)
    answer = torch.zeros_like(tokens, dtype=torch.bool)
    answer[:, 1::2] = True
    return tokens, answer


# expert_choice's capacity is fixed: with ratio ½ the 8 tokens of a sequence give 4 slots at
# iteration 2 and 2 at iteration 3, so the sequences carry exactly 2 HARD x's (which must win
# both top-k's); its q is the causal predictor's, its depth at inference the predictor's.
PLANTED_ROUTERS = [
    ("early", {}, None),
    ("online", {}, None),
    ("online", {"estimator": "expected"}, None),  # PonderNet's expected loss
    ("act", {}, None),
    ("expert_choice", {"capacity_ratio": 0.5}, 2),
]


@pytest.mark.parametrize(("router", "kw", "n_hard"), PLANTED_ROUTERS)
def test_routers_learn_the_iterations_a_planted_task_needs(router, kw, n_hard):
    model = planted_counter_model(router, **kw).train()
    optimizer = torch.optim.Adam(model.router.parameters(), lr=0.01)
    for step in range(150):
        x, answer = planted_batch(32, seed=step, n_hard=n_hard)
        loss, _ = model.loss(model(x), x, answer)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    x, _ = planted_batch(256, seed=10_000, n_hard=n_hard)
    model.eval()
    with torch.no_grad():
        out = model(x)
        depth_one = model(x, depth=torch.ones_like(x))
    solved = out.logits[:, 0::2].argmax(-1) == ANSWER
    inputs, q = x[:, 0::2], out.q[:, 0::2]
    hard, easy = q[inputs == HARD], q[inputs == EASY]
    assert float(hard[:, NEEDED[HARD] - 1 :].sum(-1).mean()) > 0.9  # mass on depth ≥ k
    depths = torch.arange(1, PLANTED_D + 1, dtype=q.dtype)
    assert float((hard * depths).sum(-1).mean() - (easy * depths).sum(-1).mean()) > 1.0
    assert bool(solved.all())
    # a depth-1 model fails every HARD token and solves every EASY one
    solved_at_one = depth_one.logits[:, 0::2].argmax(-1) == ANSWER
    assert not bool(solved_at_one[inputs == HARD].any()) and bool(
        solved_at_one[inputs == EASY].all()
    )
