"""Training states on disk (``model.pt``, ``last.pt``): written as reproducible bytes, read with
one-line errors. Shared by :mod:`anira.train` and :mod:`anira.evaluate`."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import torch

from anira.io import AniraInputError


def canonical(value: Any) -> Any:
    """``value`` with every string interned. Pickle writes a string once per object, so a state
    whose keys came from a loaded checkpoint (fresh string objects) would otherwise give other
    bytes than the same state built in one go; interned, equal strings are one object."""
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        return {canonical(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(canonical(v) for v in value)
    return value


def state_bytes(state: dict[str, Any]) -> bytes:
    """``torch.save`` into memory: the archive then has a fixed inner name (saving to a temporary
    file names it after the file, so the same state would give other bytes), and a failed write
    of the bytes reports its OS cause (disk full, file too large) instead of torch's
    "unexpected pos". The same state gives the same bytes (:func:`canonical`)."""
    buffer = io.BytesIO()
    torch.save(canonical(state), buffer)
    return buffer.getvalue()


def read_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # torch raises many types for a corrupt archive
        raise AniraInputError(f"cannot read checkpoint {path}: {err}") from err
