"""The model's layers: rotary embeddings, the pre-norm Transformer layer (``Block``) of the prelude
and coda, and the recurrent core block (``CoreBlock``) built on it."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from anira.model.config import ModelConfig


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
