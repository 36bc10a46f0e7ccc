"""Token sequences of a split as padded tensors, and the device/precision policy shared by stages.

Sequences are right-padded with ``<pad>`` (id 0). The model is causal, so right padding never
changes what a real token sees; a batch is trimmed to its longest real sequence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from anira.io import AniraInputError


@dataclass
class PaddedSplit:
    tokens: torch.Tensor  # [N, T] long, right-padded with 0
    answer_mask: torch.Tensor  # [N, T] bool
    lengths: torch.Tensor  # [N] long, real length of each sequence

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> PaddedSplit:
        token_lists: Sequence[Sequence[int]] = frame["tokens"].tolist()
        mask_lists: Sequence[Sequence[bool]] = frame["answer_mask"].tolist()
        lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(frame))
        width = int(lengths.max()) if len(lengths) else 0
        tokens = np.zeros((len(frame), width), dtype=np.int64)
        mask = np.zeros((len(frame), width), dtype=bool)
        for row, (toks, answer) in enumerate(zip(token_lists, mask_lists, strict=True)):
            tokens[row, : len(toks)] = toks
            mask[row, : len(answer)] = answer
        return cls(torch.from_numpy(tokens), torch.from_numpy(mask), torch.from_numpy(lengths))

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def batch(self, indices: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``indices``, trimmed to their longest real sequence."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        width = int(self.lengths[indices].max())
        return self.tokens[indices, :width], self.answer_mask[indices, :width]


def select_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU is an input error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AniraInputError("device=cuda requested but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise AniraInputError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (the router keeps its softmax in float32); none on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)
