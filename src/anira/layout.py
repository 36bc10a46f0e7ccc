"""Where the pipeline's files live and what they are called: the one home of split and file names
for the Python stages and the Snakemake workflow alike (``anira.study.paths`` imports it).

A study writes under ``<results>/`` (``results/<scale>`` by default)::

    data/<task>/                          one dataset (anira.generate)
    checkpoints/<task>/<router>/seed<N>/  one model (anira.train); dynamics/: weights over training
    eval/<task>/<router>/seed<N>/         its evaluation records (anira.evaluate)
    eval/<task>/<router>-<rule>/seed<N>/  an online model's under its other inference rule
    analysis/  logs/

Every output directory ends with a ``manifest.json`` holding the SHA-256 of each file above it;
the manifest is written last, so a directory without one is incomplete.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from anira.io import MANIFEST_NAME

TRAIN, TEST, INTERP, EXTRAP, VAL = "train", "test", "interp", "extrap", "val"
# ``val`` comes last: a split's RNG is keyed by its index here (anira.generate) and the evaluation
# splits drawn earlier win duplicates, so adding ``val`` left the other splits unchanged.
SPLITS = (TRAIN, TEST, INTERP, EXTRAP, VAL)
# The held-out splits results are reported on (``val`` chooses settings and is never reported).
REPORTED_SPLITS = (TEST, INTERP, EXTRAP)
MANIFEST = MANIFEST_NAME

# The output folders under a study's results root, one per phase (DVC versions each).
DATA, CHECKPOINTS, EVAL, ANALYSIS = "data", "checkpoints", "eval", "analysis"

# A dataset directory.
VOCAB = "vocab.json"
DATA_CONFIG = "config.yaml"
SUMMARY = "summary.json"

# A checkpoint directory. `last.pt` exists only while a training is unfinished; its own manifest
# `last.json` holds its checksum (the directory's manifest is written when training ends).
MODEL = "model.pt"
RESUME = "last.pt"
RESUME_MANIFEST = "last.json"
METRICS = "metrics.jsonl"
RUN_CONFIG = "config.yaml"
CHECKPOINT_FILES = (MODEL, METRICS, RUN_CONFIG)
# The weights at the training-dynamics steps (``scale.train.dynamics_checkpoints``), one file per
# step under this folder of the checkpoint directory, listed in its manifest.
DYNAMICS_DIR = "dynamics"

# An evaluation directory: per split, one table of each kind.
RECORD_KINDS = ("tokens", "examples", "generated")


def dynamics_file(step: int) -> str:
    """The weights at training step ``step``, relative to the checkpoint directory."""
    return f"{DYNAMICS_DIR}/step{step:07d}.pt"


def split_file(split: str) -> str:
    return f"{split}.parquet"


def record_file(split: str, kind: str) -> str:
    return f"{split}.{kind}.parquet"


def data_files(artifacts: Iterable[str] = ()) -> list[str]:
    """The files of a dataset directory its manifest lists (``artifacts``: the task's extra
    files, e.g. LANO's grammar)."""
    return [*(split_file(s) for s in SPLITS), VOCAB, DATA_CONFIG, SUMMARY, *artifacts]


def eval_files(splits: Iterable[str] = SPLITS) -> list[str]:
    """The files of an evaluation directory its manifest lists."""
    return [record_file(s, kind) for s in splits for kind in RECORD_KINDS] + [RUN_CONFIG]


def data_dir(results: str, task: str) -> str:
    return f"{results}/{DATA}/{task}"


def part_file(parts_dir: str | Path, shard: int | str) -> str:
    """The training examples of one shard of a sharded generation (``anira.generate``)."""
    return f"{parts_dir}/part{shard}.parquet"


def parts_dir(results: str, task: str) -> str:
    return f"{results}/data_parts/{task}"


def checkpoint_dir(results: str, task: str, router: str, seed: int | str) -> str:
    return f"{results}/{CHECKPOINTS}/{task}/{router}/seed{seed}"


def eval_dir(results: str, task: str, router: str, seed: int | str, rule: str | None = None) -> str:
    """A model's evaluation; with ``rule``, an online model's under that inference rule instead of
    the one it was trained with (``eval/<task>/<router>-<rule>/seed<N>``)."""
    return f"{results}/{EVAL}/{task}/{router if rule is None else f'{router}-{rule}'}/seed{seed}"


def analysis_dir(results: str) -> str:
    return f"{results}/{ANALYSIS}"


def log_dir(results: str) -> str:
    return f"{results}/logs"
