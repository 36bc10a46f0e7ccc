"""The CUDA paths: device selection, bf16 autocast forward/backward, packed vs dense, and the CUDA
RNG in an exact resume. Every test is marked ``gpu`` and skipped without a GPU (conftest.py)."""

from __future__ import annotations

import pytest
import torch

from anira.batches import autocast, select_device
from anira.model import AniraModel, ModelConfig
from anira.train import train
from tests.factories import max_diffs, pair, ragged_batch, train_cfg

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")
CUDA_TOL = 1e-4  # fp32 on CUDA: other kernels (SDPA, reductions) than on CPU


def test_auto_selects_cuda_and_the_model_runs_there():
    assert select_device("auto") == CUDA and select_device("cuda") == CUDA
    assert select_device("cpu") == torch.device("cpu")
    dense, _ = pair("online")
    tokens, _ = ragged_batch()
    out = dense.to(CUDA).eval()(tokens.to(CUDA))
    assert out.logits.device.type == "cuda" and out.depth.device.type == "cuda"


@pytest.mark.parametrize("router", ["fixed", "early", "online"])
@pytest.mark.parametrize("execution", ["dense", "packed"])
def test_bf16_autocast_forward_backward_tracks_fp32(router, execution):
    """Under the stages' autocast the matmuls run in bf16 while q, the KL and the router's
    softmaxes stay float32; loss and gradients stay close to the fp32 pass of the same model."""
    cfg = dict(vocab_size=19, max_seq_len=40, d_model=32, n_heads=4, max_depth=5, router=router)
    torch.manual_seed(0)
    model = AniraModel(ModelConfig(**cfg, execution=execution)).to(CUDA).eval()
    tokens, answer = (t.to(CUDA) for t in ragged_batch())
    depth = torch.randint(1, 6, tokens.shape, device=CUDA)  # the same depths in both passes
    losses, grads = {}, {}
    for precision in ("fp32", "bf16"):
        model.zero_grad(set_to_none=True)
        with autocast(CUDA) if precision == "bf16" else torch.autocast("cuda", enabled=False):
            out = model(tokens, depth=depth)
            loss, _ = model.loss(out, tokens, answer)
        loss.backward()
        losses[precision] = loss.item()
        grads[precision] = torch.cat(
            [p.grad.flatten() for p in model.parameters() if p.grad is not None]
        )
        if precision == "bf16":
            assert out.logits.dtype == torch.bfloat16
            assert out.kl.dtype == torch.float32 and out.expected_depth.dtype == torch.float32
            if out.q is not None:
                assert out.q.dtype == torch.float32
    assert torch.isfinite(grads["bf16"]).all()
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=2e-2)
    cosine = torch.nn.functional.cosine_similarity(grads["bf16"], grads["fp32"], dim=0)
    assert cosine > 0.99


@pytest.mark.parametrize("router", ["early", "online"])
@pytest.mark.parametrize("train", [True, False])
def test_packed_equals_dense_on_cuda(router, train):
    dense, packed = pair(router)
    dense, packed = dense.to(CUDA), packed.to(CUDA)
    tokens, answer = (t.to(CUDA) for t in ragged_batch(2, lengths=(30, 12, 30, 5, 21, 2)))
    diffs = max_diffs(dense, packed, tokens, answer, None, train)
    assert max(diffs.values()) < CUDA_TOL, diffs


def test_resume_on_cuda_restores_the_cuda_rng(tiny_dataset, tmp_path):
    """ANIRA-E draws its Gumbel noise on the GPU: a resumed run samples the depths an uninterrupted
    one does (the mean depth of every logged window) only if the checkpoint restores the CUDA
    generator. Weights are compared with a tolerance: CUDA kernels need not be bit-reproducible."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    on_cuda = ["device=cuda"]
    train(train_cfg(tiny_dataset["brevo"], straight, "early", on_cuda))
    with pytest.raises(SystemExit):
        train(train_cfg(tiny_dataset["brevo"], resumed, "early", [*on_cuda, "stop_after_steps=5"]))
    assert torch.load(resumed / "last.pt", weights_only=True)["rng"]["cuda"] is not None
    train(train_cfg(tiny_dataset["brevo"], resumed, "early", on_cuda))
    a = torch.load(straight / "model.pt", weights_only=True)
    b = torch.load(resumed / "model.pt", weights_only=True)
    depths = [[row["mean_depth"] for row in state["metrics"]] for state in (a, b)]
    assert depths[1] == pytest.approx(depths[0], abs=1e-6)
    for name, tensor in a["model"].items():
        assert torch.allclose(tensor, b["model"][name], atol=1e-3), name
