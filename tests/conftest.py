"""Shared fixtures (tiny generated datasets) and the ``gpu`` marker: skipped without CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anira.compose import compose
from tests.factories import tiny_task


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> dict[str, Path]:
    """A tiny generated dataset per task used by training/evaluation tests."""
    from anira.generate import generate_dataset
    from anira.spec import DatasetSpec

    out = {}
    for task in ("brevo", "mano"):
        cfg = compose("generate", [*tiny_task(task), "seed=0", "out_dir=unused"])
        directory = tmp_path_factory.mktemp(f"data_{task}")
        generate_dataset(DatasetSpec.resolve(cfg.task, "mini", 0), directory)
        out[task] = directory
    return out


def pytest_collection_modifyitems(config, items) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
