"""Reading evaluation records and writing tables, shared by the analysis programs.

Provenance: a table written by a program that read evaluation records comes with
``<table>.inputs.json``, the SHA-256 of the manifest of each evaluation directory read (which
lists the evaluation's ``config.yaml``, holding the digests of its checkpoint and dataset); the
CSV itself stays a plain table for the figures."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from anira.io import (
    MANIFEST_NAME,
    AniraInputError,
    atomic_write_json,
    atomic_write_text,
    report_input_error,
    sha256_file,
    verify_manifest,
)
from anira.layout import RECORD_KINDS, SPLITS, record_file

FEATURE_PREFIX = "f_"
# RECORD_KINDS: tokens: teacher-forced per token; examples: per example; generated: per token of
# each correct generated answer, features along the generated order (see anira.evaluate)
FLOAT_FORMAT = "%.6g"  # fixed precision: the same records always give the same bytes
INPUTS_SUFFIX = ".inputs.json"
# Evaluation directory → the SHA-256 of its manifest, for every directory this process read.
_READ: dict[str, str] = {}


def load_records(
    eval_dirs: Sequence[str | Path],
    kind: str,
    splits: Sequence[str] = SPLITS,
    columns: Sequence[str] | None = None,
    allow_empty: bool = False,
) -> pd.DataFrame:
    """Concatenate ``<eval_dir>/<split>.<kind>.parquet`` over directories and splits.

    Every file is checked against its directory's manifest first, so a truncated or modified record
    is an :class:`AniraInputError`, never a silently wrong table. With ``columns``, only those
    columns are read plus every ``f_<feature>`` column when ``"f_*"`` is listed. No record at all
    is an error unless ``allow_empty`` (then an empty frame is returned).
    """
    if kind not in RECORD_KINDS:
        raise AniraInputError(f"unknown record kind {kind!r}: expected one of {RECORD_KINDS}")
    if not eval_dirs:
        raise AniraInputError("no evaluation directories given")
    frames = []
    for directory in eval_dirs:
        names = [record_file(split, kind) for split in splits]
        verify_manifest(directory, names)
        _READ[str(directory)] = sha256_file(Path(directory) / MANIFEST_NAME)
        for name in names:
            path = Path(directory) / name
            wanted = None
            if columns is not None:
                available = _parquet_columns(path)
                wanted = [c for c in columns if c != "f_*" and c in available]
                missing = [c for c in columns if c != "f_*" and c not in available]
                if missing:
                    raise AniraInputError(f"{path} lacks columns {missing}")
                if "f_*" in columns:
                    wanted += [c for c in available if c.startswith(FEATURE_PREFIX)]
            frames.append(pd.read_parquet(path, columns=wanted))
    frames = [frame for frame in frames if len(frame)]
    if not frames and allow_empty:
        return pd.DataFrame()
    if not frames:
        raise AniraInputError(f"no {kind} records in {len(eval_dirs)} evaluation directories")
    return pd.concat(frames, ignore_index=True)


def _parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def sample_examples(frame: pd.DataFrame, max_examples: int, seed: int) -> pd.DataFrame:
    """At most ``max_examples`` rows of ``frame``, drawn with ``seed`` and kept in their order:
    the same rows for every model read with the same seed."""
    if len(frame) <= max_examples:
        return frame
    keep = np.random.default_rng(seed).choice(len(frame), max_examples, replace=False)
    return frame.iloc[np.sort(keep)]


def feature_columns(frame: pd.DataFrame) -> list[str]:
    return sorted(c for c in frame.columns if c.startswith(FEATURE_PREFIX))


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write ``frame`` as CSV atomically, with a fixed float format and no index; and, when the
    process read evaluation records, the digests of those evaluations beside it."""
    atomic_write_text(
        path, frame.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    )
    if _READ:
        atomic_write_json(inputs_file(path), {"evaluations": dict(sorted(_READ.items()))})


def inputs_file(table: str | Path) -> Path:
    """Where the digests of the evaluations a table was computed from are kept."""
    return Path(table).with_suffix(INPUTS_SUFFIX)


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("eval_dirs", nargs="+", help="output directories of anira.evaluate")
    parser.add_argument("--out", required=True, help="CSV table to write")
    return parser


def run_cli(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None) -> int:
    """Run ``main``; a user-facing error becomes one line on stderr and exit status 2."""
    try:
        main(argv)
    except AniraInputError as err:
        return report_input_error(err)
    return 0
