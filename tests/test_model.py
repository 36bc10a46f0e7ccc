"""The ANIRA model: unroll, frozen halted tokens, KL, online rules, gradients, padding."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from anira.model import AniraModel, ModelConfig, kl_to_prior, log_prior, online_depth, online_log_q

V, T = 17, 12


def tiny(router="fixed", **kw) -> AniraModel:
    torch.manual_seed(0)
    cfg = dict(vocab_size=V, max_seq_len=32, d_model=32, n_heads=4, max_depth=4, router=router)
    return AniraModel(ModelConfig(**(cfg | kw)))


def batch(b=3, t=T, seed=1) -> torch.Tensor:
    return torch.randint(1, V, (b, t), generator=torch.Generator().manual_seed(seed))


# --- Brute-force references in plain Python ------------------------------------------------------


def q_from_lambdas(lam: list[float], max_depth: int) -> list[float]:
    q, stay = [], 1.0
    for d in range(1, max_depth):
        q.append(stay * lam[d - 1])
        stay *= 1 - lam[d - 1]
    return q + [stay]


def median_ref(lam: list[float], max_depth: int) -> int:
    cdf = 0.0
    for d, p in enumerate(q_from_lambdas(lam, max_depth), start=1):
        cdf += p
        if cdf >= 0.5 - 1e-12:
            return d
    return max_depth


def mode_ref(lam: list[float], max_depth: int) -> int:
    """First r that is the argmax of the q it would report when halting at r (later λ's = λ_r)."""
    for r in range(1, max_depth):
        q = q_from_lambdas(lam[:r] + [lam[r - 1]] * (max_depth - 1 - r), max_depth)
        if max(range(max_depth), key=lambda i: (q[i], -i)) == r - 1:
            return r
    return max_depth


def logit(p: float) -> float:
    return math.log(p / (1 - p))


# --- Tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("execution", ["dense", "packed"])
def test_fixed_depth_equals_hand_written_unroll(execution):
    model = tiny("fixed", execution=execution).eval()
    tokens = batch()
    cos, sin = model.rope_cos[:T], model.rope_sin[:T]
    with torch.no_grad():
        e = model.prelude(model.embed(tokens), cos, sin)
        s = e
        for _ in range(model.cfg.max_depth):
            s = model.core(s, e, cos, sin)
        expected = model.lm_head(model.norm(model.coda(s, cos, sin)))
        out = model(tokens)
        forced = tiny("early", execution=execution).eval()
        forced.load_state_dict(model.state_dict(), strict=False)
        out_forced = forced(tokens, depth=torch.full_like(tokens, model.cfg.max_depth))
    assert (out.depth == model.cfg.max_depth).all()
    diff = (out.logits - expected).abs().max().item()
    assert diff < 1e-5, f"max diff {diff}"
    assert (out_forced.logits - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize("execution", ["dense", "packed"])
def test_halted_state_is_bit_identical_while_active_ones_change(execution):
    model = tiny("early", execution=execution).eval()
    tokens = batch()
    depth = torch.randint(1, 5, tokens.shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model(tokens, depth=depth, return_states=True)
    states = torch.stack(out.states)  # [D+1, B, T, d]
    for r in range(1, model.cfg.max_depth + 1):
        halted = depth < r
        active = depth >= r
        assert torch.equal(states[r][halted], states[r - 1][halted])
        moved = (states[r][active] - states[r - 1][active]).abs().amax(-1)
        assert (moved > 0).all()
    assert torch.equal(out.depth, depth)


@pytest.mark.parametrize("router", ["early", "online"])
def test_kl_equals_brute_force_sum_over_depths(router):
    model = tiny(router, prior_base=1.7).train()
    torch.manual_seed(5)
    out = model(batch())
    D = model.cfg.max_depth
    norm = sum(1.7**-k for k in range(1, D + 1))
    for b, t in itertools.product(range(3), range(T)):
        q = out.q[b, t].tolist()
        assert sum(q) == pytest.approx(1.0, abs=1e-5)
        brute = sum(p * math.log(p / (1.7**-d / norm)) for d, p in enumerate(q, 1) if p > 0)
        assert out.kl[b, t].item() == pytest.approx(brute, abs=1e-5)
        assert out.expected_depth[b, t].item() == pytest.approx(
            sum(d * p for d, p in enumerate(q, 1)), abs=1e-5
        )


def test_prior_and_kl_small_examples():
    assert log_prior(2, 2.0).exp().tolist() == pytest.approx([2 / 3, 1 / 3])
    uniform = torch.full((4,), 0.25).log()
    assert kl_to_prior(uniform, 1.0).item() == pytest.approx(0.0, abs=1e-7)


def test_online_q_sums_to_one_and_matches_stick_breaking():
    lam = torch.tensor([0.5, 0.5])
    q = online_log_q(torch.logit(lam)).exp()
    assert q.tolist() == pytest.approx([0.5, 0.25, 0.25])
    rng = torch.Generator().manual_seed(0)
    z = torch.randn(50, 13, generator=rng) * 3
    q = online_log_q(z).exp()
    assert torch.allclose(q.sum(-1), torch.ones(50), atol=1e-5)
    for row in range(5):
        ref = q_from_lambdas(torch.sigmoid(z[row]).tolist(), 14)
        assert q[row].tolist() == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize(
    ("lam", "median", "mode"),
    [
        ([0.4, 0.2, 0.2], 2, 1),  # CDF .4, .52 → median 2; q(1)=.4 beats q(D)=.6³ → mode 1
        ([0.3, 0.6, 0.1], 2, 2),  # q(1)=.3 < .343; q(2)=.42 → both 2
        ([0.1, 0.1, 0.1], 4, 4),  # CDF never reaches ½ before D; q(D)=.729 is the mode
        ([0.6, 0.9, 0.9], 1, 1),
        ([0.2, 0.2, 0.6], 3, 3),  # q = .2, .16, .384, .256
    ],
)
def test_online_rules_on_hand_made_halting_probabilities(lam, median, mode):
    z = torch.tensor([logit(p) for p in lam])
    assert online_depth(z, "median").item() == median == median_ref(lam, 4)
    assert online_depth(z, "mode").item() == mode == mode_ref(lam, 4)


def test_online_rules_match_brute_force_on_random_lambdas():
    rng = torch.Generator().manual_seed(1)
    z = torch.randn(300, 5, generator=rng) * 2
    median, mode = online_depth(z, "median"), online_depth(z, "mode")
    for row in range(300):
        lam = torch.sigmoid(z[row]).double().tolist()
        assert median[row].item() == median_ref(lam, 6)
        assert mode[row].item() == mode_ref(lam, 6)


@pytest.mark.parametrize("rule", ["median", "mode"])
def test_online_model_depth_follows_its_rule_and_q(rule):
    model = tiny("online", online_rule=rule, max_depth=6).eval()
    # Larger halting logits spread the depths over 1..D.
    torch.nn.init.normal_(model.router.head[-1].weight, std=2.0)
    with torch.no_grad():
        out = model(batch(4))
    assert out.depth.unique().numel() > 1
    cdf = out.q.cumsum(-1)
    if rule == "median":
        first = (cdf >= 0.5 - 1e-6).float().argmax(-1) + 1
        assert torch.equal(out.depth, first)
    else:
        halted = out.depth < 6
        assert torch.equal(out.depth[halted], out.q.argmax(-1)[halted] + 1)


@pytest.mark.parametrize("router", ["early", "online"])
def test_cross_entropy_gradients_reach_the_router_head(router):
    model = tiny(router, gamma=0.0).train()
    tokens = batch()
    torch.manual_seed(2)
    out = model(tokens)
    loss, parts = model.loss(out, tokens, torch.ones_like(tokens, dtype=torch.bool))
    assert parts["kl"] >= 0 and parts["loss"] == pytest.approx(parts["ce"])
    loss.backward()
    grads = [p.grad for p in model.router.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0
    assert all(p.grad is not None for p in model.parameters())


def test_loss_is_answer_cross_entropy_plus_gamma_kl():
    model = tiny("early", gamma=0.3).train()
    tokens = batch()
    answer = torch.zeros_like(tokens, dtype=torch.bool)
    answer[:, 7:] = True
    tokens[2, 10:] = 0  # right padding
    answer[2, 10:] = False
    torch.manual_seed(0)
    out = model(tokens)
    loss, parts = model.loss(out, tokens, answer)
    terms = []
    for b, t in itertools.product(range(3), range(T - 1)):
        if answer[b, t + 1]:
            terms.append(-torch.log_softmax(out.logits[b, t], -1)[tokens[b, t + 1]].item())
    # KL summed over each sequence's non-pad tokens, averaged over the 3 sequences
    kls = [out.kl[b, t].item() for b, t in itertools.product(range(3), range(T)) if tokens[b, t]]
    expected = sum(terms) / len(terms) + 0.3 * sum(kls) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert parts["ce"] == pytest.approx(sum(terms) / len(terms), rel=1e-5)


@pytest.mark.parametrize("execution", ["dense", "packed"])
@pytest.mark.parametrize("router", ["fixed", "early", "online", "act", "expert_choice"])
def test_forward_backward_on_cpu_and_bf16_autocast(router, execution):
    model = tiny(router, execution=execution).train()
    tokens = batch()
    out = model(tokens)
    assert out.logits.shape == (3, T, V) and out.depth.dtype == torch.long
    model.loss(out, tokens, torch.ones_like(tokens, dtype=torch.bool))[0].backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(tokens)
        loss, _ = model.loss(out, tokens, torch.ones_like(tokens, dtype=torch.bool))
    loss.backward()
    assert torch.isfinite(loss) and out.kl.dtype == torch.float32
    if out.q is not None:
        assert out.q.dtype == torch.float32


@pytest.mark.parametrize("execution", ["dense", "packed"])
@pytest.mark.parametrize("router", ["fixed", "early", "online", "act", "expert_choice"])
def test_right_padding_does_not_change_real_tokens(router, execution):
    model = tiny(router, execution=execution).eval()
    tokens = batch(2, 8)
    padded = torch.cat([tokens, torch.zeros(2, 5, dtype=torch.long)], dim=1)
    with torch.no_grad():
        a, b = model(tokens), model(padded)
    assert torch.allclose(a.logits, b.logits[:, :8], atol=1e-5)
    assert torch.equal(a.depth, b.depth[:, :8])
    assert torch.allclose(a.expected_depth, b.expected_depth[:, :8], atol=1e-5)
    assert (b.depth[:, 8:] == 1).all()


@pytest.mark.parametrize("execution", ["dense", "packed"])
@pytest.mark.parametrize("router", ["fixed", "early", "online", "act", "expert_choice"])
def test_causality_future_tokens_do_not_change_the_past(router, execution):
    model = tiny(router, execution=execution).eval()
    spread_router(model)
    tokens = batch(2)
    changed = tokens.clone()
    changed[:, 7:] = (changed[:, 7:] % (V - 1)) + 1
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert torch.allclose(a.logits[:, :7], b.logits[:, :7], atol=1e-5)
    assert torch.equal(a.depth[:, :7], b.depth[:, :7])
    assert not torch.allclose(a.logits[:, 7:], b.logits[:, 7:])


def test_flops_count_token_steps_and_head_calls():
    for router, calls in (("fixed", 0), ("early", 1)):
        model = tiny(router).eval()
        tokens = batch()
        tokens[0, 9:] = 0
        depth = torch.randint(1, 5, tokens.shape, generator=torch.Generator().manual_seed(0))
        out = model(tokens, depth=depth)
        f = model.flops(out)
        valid = tokens != 0
        assert f["token_steps"] == depth[valid].sum().item()
        assert f["head_calls"] == calls * valid.sum().item()
        assert f["flops"] == pytest.approx(f["core_flops"] + f["other_flops"] + f["head_flops"])
    online = tiny("online").eval()
    out = online(tokens, depth=depth)
    assert online.flops(out)["head_calls"] == depth.clamp(max=3)[valid].sum().item()


def test_decision_heads_are_a_small_share_of_parameters():
    for router in ("early", "online"):
        model = tiny(router, d_model=64, max_depth=6)
        share = model.num_params(decision_heads_only=True) / model.num_params()
        assert 0.03 < share < 0.12, share
    assert tiny("fixed").num_params(decision_heads_only=True) == 0


def spread_router(model: AniraModel) -> None:
    """Large random decision heads, so depths differ from token to token."""
    torch.manual_seed(4)
    for p in model.router.parameters():
        torch.nn.init.normal_(p, std=0.5)


def test_expert_choice_training_top_k_is_not_causal_but_its_inference_is():
    """The top-k of training reads later tokens' scores (so the causality test above is needed):
    changing only later tokens changes an earlier token's depth in training, never at inference."""
    model = tiny("expert_choice", max_depth=4)
    spread_router(model)
    tokens = batch(8)
    changed = tokens.clone()
    changed[:, 7:] = (changed[:, 7:] % (V - 1)) + 1
    with torch.no_grad():
        train = [model.train()(x).depth[:, :7] for x in (tokens, changed)]
        infer = [model.eval()(x).depth[:, :7] for x in (tokens, changed)]
    assert not torch.equal(*train)
    assert torch.equal(*infer) and infer[0].unique().numel() > 1


def act_reference(model: AniraModel, tokens: torch.Tensor, eps: float):
    """ACT written from Graves (2016) as loops over one token at a time: h_r from the head on
    s_r, N = first r with Σ h ≥ 1 − ε (or D), p_r = h_r before N and R = 1 − Σ_{r<N} h_r at N,
    the output mixture Σ p_r s_r and the ponder cost N + R. The states are those the model ran
    (frozen past each token's N), read with return_states."""
    D = model.cfg.max_depth
    with torch.no_grad():
        out = model(tokens, return_states=True)
        states = out.states
        B, n = tokens.shape
        mixture = torch.zeros_like(states[0])
        depth = torch.zeros_like(tokens)
        ponder = torch.zeros(tokens.shape)
        q = torch.zeros((B, n, D))
        for b, t in itertools.product(range(B), range(n)):
            total = 0.0
            for r in range(1, D + 1):
                h = torch.sigmoid(model.router.head(states[r][b, t])).item() if r < D else 1.0
                if total + h >= 1 - eps or r == D:
                    q[b, t, r - 1] = 1 - total
                    mixture[b, t] += (1 - total) * states[r][b, t]
                    depth[b, t], ponder[b, t] = r, r + 1 - total
                    break
                q[b, t, r - 1] = h
                mixture[b, t] += h * states[r][b, t]
                total += h
        cos, sin = model.rope_cos[:n], model.rope_sin[:n]
        logits = model.lm_head(model.norm(model.coda(mixture, cos, sin)))
    return out, depth, q, ponder, logits


@pytest.mark.parametrize("execution", ["dense", "packed"])
def test_act_halting_mixture_and_ponder_cost_match_a_loop_reference(execution):
    model = tiny("act", execution=execution, max_depth=5, act_epsilon=0.05).eval()
    spread_router(model)
    torch.nn.init.normal_(model.router.head[-1].weight, std=0.2)  # h around 0.3: N over 2..D
    torch.nn.init.constant_(model.router.head[-1].bias, -1.0)
    out, depth, q, ponder, logits = act_reference(model, batch(4), 0.05)
    assert out.depth.unique().numel() >= 3
    assert torch.equal(out.depth, depth)
    torch.testing.assert_close(out.q, q, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.kl, ponder, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.logits, logits, atol=1e-5, rtol=1e-5)


def test_expert_choice_capacity_and_inference_rule_match_brute_force():
    """Training: in each sequence exactly ⌊c_r·n + ½⌋ tokens run iteration r, the best-scored
    among those that ran r − 1; inference: a token runs r + 1 iff the predictor's a_r > 0."""
    model = tiny("expert_choice", max_depth=5, capacity_ratio=0.6)
    spread_router(model)
    tokens = batch(4, 20)
    tokens[1, 13:] = 0  # padding: n counts the real tokens only
    router = model.router
    with torch.no_grad():
        out = model.train()(tokens, return_states=True)
        for b in range(4):
            n = int((tokens[b] != 0).sum())
            ran = [t for t in range(20) if tokens[b, t] != 0]
            for r in range(2, 6):
                scores = {t: router.head(out.states[r - 1][b, t]).item() for t in ran}
                ran = sorted(ran, key=lambda t: (-scores[t], t))[
                    : math.floor(0.6 ** (r - 1) * n + 0.5)
                ]
                assert sorted(ran) == (out.depth[b] >= r).nonzero().flatten().tolist()
        out = model.eval()(tokens, return_states=True)
        depth = torch.full_like(tokens, 5)
        for b, t in itertools.product(range(4), range(20)):
            for r in range(1, 5):
                if tokens[b, t] == 0 or router.predictor(out.states[r][b, t]).item() <= 0:
                    depth[b, t] = r
                    break
    assert out.depth.unique().numel() >= 3
    assert torch.equal(out.depth, depth)


def test_expert_choice_top_k_example():
    router = tiny("expert_choice").router
    router.cfg.capacity_ratio = 0.5
    score = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    chosen = router.top_k(
        score, torch.ones(1, 4, dtype=torch.bool), torch.ones(1, 4, dtype=torch.bool), 2
    )
    assert chosen.tolist() == [[True, False, True, False]]


def test_flops_of_the_field_routers():
    """ACT calls its head after every iteration but the last; expert choice counts only the
    predictor, the one head inference runs (its scores are a training cost)."""
    tokens = batch()
    depth = torch.randint(1, 5, tokens.shape, generator=torch.Generator().manual_seed(0))
    for router in ("act", "expert_choice"):
        model = tiny(router).eval()
        f = model.flops(model(tokens, depth=depth))
        assert f["token_steps"] == depth.sum().item()
        assert f["head_calls"] == depth.clamp(max=3).sum().item()
        head = model.router.predictor if router == "expert_choice" else model.router.head
        weights = sum(m.weight.numel() for m in head if isinstance(m, torch.nn.Linear))
        assert f["head_flops"] == f["head_calls"] * 2 * weights
