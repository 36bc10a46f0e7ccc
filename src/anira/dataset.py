"""Datasets as the stages read them: the vocabulary, validated loading, and the content checks
a checksum cannot make. :mod:`anira.generate` writes them; :mod:`anira.spec` plans them.

A dataset directory holds, for one task, scale and seed::

    train.parquet val.parquet test.parquet interp.parquet extrap.parquet   one row per example
    vocab.json     the token list (``<pad>`` at id 0) and its SHA-256
    config.yaml    the task config, scale, seed and the task's effective parameters
    summary.json   counts and rejected duplicates per split and size
    manifest.json  SHA-256 of every file above (written last); per split, its rows per size and
                   the SHA-256 of its example ids

Splits by difficulty: ``train``, ``val`` and ``test`` use the training sizes, ``interp`` sizes
held out strictly inside the training range, ``extrap`` sizes strictly beyond it. ``val`` is for
choosing (hyperparameters, settings), ``test`` for reporting.

Parquet columns: ``id``, ``task``, ``size``, ``split``, ``tokens`` (list of int64 ids),
``token_str``, ``answer_mask``, ``instance`` (JSON) and ``f_<feature>`` (list of float, null where
undefined) per feature of the task, all lists aligned with ``tokens``; one row group per ``CHUNK``
examples.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import OmegaConf

from anira.io import (
    AniraInputError,
    atomic_write_json,
    read_manifest,
    sha256_file,
    verify_manifest,
    write_manifest,
)
from anira.layout import DATA_CONFIG, MANIFEST, SPLITS, SUMMARY, TRAIN, VOCAB, split_file
from anira.tasks import Example, Task, get_task
from anira.tasks.base import ANS, EOS, PAD

BASE_COLUMNS = ("id", "task", "size", "split", "tokens", "token_str", "answer_mask", "instance")
CHUNK = 10_000  # examples per Parquet row group (fixed, so files stay byte-identical)


class Vocabulary:
    """Token strings ↔ ids. ``<pad>`` is id 0; ``hash`` identifies the vocabulary."""

    def __init__(self, tokens: list[str]) -> None:
        tokens = [str(t) for t in tokens]
        if not tokens or tokens[0] != PAD:
            raise AniraInputError(f"vocabulary must start with {PAD}")
        if len(set(tokens)) != len(tokens):
            raise AniraInputError("vocabulary has repeated tokens")
        for special in (EOS, ANS):
            if special not in tokens:
                raise AniraInputError(f"vocabulary lacks {special}")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def eos_id(self) -> int:
        return self.index[EOS]

    @property
    def ans_id(self) -> int:
        return self.index[ANS]

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.tokens).encode("utf-8")).hexdigest()

    def encode(self, token_str: list[str]) -> list[int]:
        try:
            return [self.index[t] for t in token_str]
        except KeyError as err:
            raise AniraInputError(f"token {err.args[0]!r} is not in the vocabulary") from err

    def decode(self, ids: list[int]) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, {"tokens": self.tokens, "sha256": self.hash})

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        try:
            payload = json.loads(Path(path).read_text())
            vocab = cls(payload["tokens"])
            expected = payload["sha256"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise AniraInputError(f"cannot read vocabulary {path}: {err}") from err
        if vocab.hash != expected:
            raise AniraInputError(f"vocabulary {path} does not match its recorded hash")
        return vocab


def sequence_key(token_str: list[str]) -> bytes:
    """A 16-byte digest of a token sequence, used to find examples shared between splits."""
    return hashlib.blake2b("\x1f".join(token_str).encode("utf-8"), digest_size=16).digest()


# ---------------------------------------------------------------------------------------------
# Content checks: what a checksum cannot tell. A manifest regenerated over a corrupted split
# matches its files; the rows must still be those the generator wrote (ids in order, the counts
# of summary.json) and no evaluation example may repeat a training example.


def ids_sha256(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def split_content(path: Path) -> dict[str, Any]:
    """Rows per size and the digest of the example ids of one split file."""
    table = pq.read_table(path, columns=["id", "size"])
    ids = [str(i) for i in table.column("id").to_pylist()]
    rows = rows_per_size(pd.Series(table.column("size").to_numpy(), dtype="int64"))
    return {"rows": rows, "ids_sha256": ids_sha256(ids)}


def rows_per_size(sizes: pd.Series) -> dict[str, int]:
    return {str(size): int(n) for size, n in sizes.value_counts().sort_index().items()}


def write_dataset_manifest(out_dir: Path, names: list[str]) -> None:
    """The manifest of a dataset: checksums, and per split its rows per size and ids digest."""
    content = {split: split_content(out_dir / split_file(split)) for split in SPLITS}
    write_manifest(out_dir, names, content=content)


def dataset_sha256(data_dir: str | os.PathLike) -> str:
    """The digest a dataset is known by: the SHA-256 of its manifest, which lists the SHA-256 of
    every file (a checkpoint and an evaluation record it)."""
    read_manifest(data_dir)  # a missing or corrupt manifest is one line
    return sha256_file(Path(data_dir) / MANIFEST)


def dataset_provenance(data_dir: str | os.PathLike) -> dict[str, str]:
    """What an output records of the dataset it read: the manifest's digest and that of the
    ``config.yaml`` it was generated from (the workflow compares the latter with the study's)."""
    return {
        "manifest_sha256": dataset_sha256(data_dir),
        "config_sha256": read_manifest(data_dir)[DATA_CONFIG],
    }


def other_dataset(what: Path, trained: dict | None, data_dir: Path, data: dict) -> str:
    """Why ``what`` (made from the dataset ``trained`` records) is not an output of ``data_dir``
    (whose :func:`dataset_provenance` is ``data``): both digests, shortened."""
    had = "no recorded dataset" if not trained else f"dataset {trained['manifest_sha256'][:12]}"
    return f"{what} was trained on {had}, not on {data_dir} ({data['manifest_sha256'][:12]})"


def expected_ids(split: str, counts: Mapping[str, Any]) -> list[str]:
    """The ids the generator gives a split with ``counts`` (size → count), in its order: sizes
    ascending (:func:`plan_splits`), then by draw."""
    ordered = sorted(counts.items(), key=lambda item: int(item[0]))
    return [f"{split}-{size}-{i:07d}" for size, n in ordered for i in range(int(n))]


def check_content(data_dir: Path, split: str, df: pd.DataFrame) -> None:
    """Raise :class:`AniraInputError` unless the rows of ``split`` are those generated: no repeated
    id, the rows per size of ``summary.json`` and of the manifest, the ids in generation order,
    the manifest's ids digest, and (evaluation splits) no token sequence of ``train``."""
    path = data_dir / split_file(split)
    ids = [str(i) for i in df["id"]]
    repeated = df["id"][df["id"].duplicated()]
    if len(repeated):
        raise AniraInputError(f"{path} repeats example ids ({repeated.iloc[0]} first)")
    try:
        summary = json.loads((data_dir / SUMMARY).read_text())["splits"][split]
        counts = {size: int(stats["count"]) for size, stats in summary.items()}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        where = data_dir / SUMMARY
        raise AniraInputError(f"cannot read the {split} counts of {where}: {err}") from err
    rows = rows_per_size(df["size"])
    if rows != {size: n for size, n in counts.items() if n}:
        raise AniraInputError(f"{path} has rows per size {rows}, {SUMMARY} says {counts}")
    if ids != expected_ids(split, counts):
        raise AniraInputError(f"{path} holds its rows out of generation order (shuffled or edited)")
    recorded = manifest_content(data_dir).get(split)
    if recorded is None:
        raise AniraInputError(f"{data_dir / MANIFEST} records no content of {split}: regenerate")
    if recorded.get("rows") != rows or recorded.get("ids_sha256") != ids_sha256(ids):
        raise AniraInputError(f"{path} does not match the rows and ids its manifest records")
    if split != TRAIN and len(df):
        train_keys = _train_keys(str(data_dir), dataset_sha256(data_dir))
        leaked = [
            i
            for i, tokens in zip(ids, df["token_str"], strict=True)
            if sequence_key(list(tokens)) in train_keys
        ]
        if leaked:
            raise AniraInputError(
                f"{path}: {len(leaked)} examples repeat a training example ({leaked[0]} first)"
            )


def manifest_content(data_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((data_dir / MANIFEST).read_text()).get("content") or {}
    except (OSError, json.JSONDecodeError, AttributeError) as err:
        raise AniraInputError(f"corrupt manifest {data_dir / MANIFEST}: {err}") from err


@functools.lru_cache(maxsize=4)
def _train_keys(data_dir: str, manifest_sha256: str) -> frozenset[bytes]:
    """The token sequences of a dataset's ``train`` split (cached per manifest digest: evaluating
    every split reads them once)."""
    batches = pq.ParquetFile(Path(data_dir) / split_file(TRAIN)).iter_batches(
        batch_size=CHUNK, columns=["token_str"]
    )  # a chunk at a time: a paper-scale train split's strings would not fit in memory at once
    return frozenset(
        sequence_key(tokens) for batch in batches for tokens in batch.column(0).to_pylist()
    )


# ---------------------------------------------------------------------------------------------
# Loading.


def load_vocab(data_dir: str | os.PathLike) -> Vocabulary:
    """The vocabulary of a dataset directory, checked against its manifest."""
    verify_manifest(data_dir, [VOCAB])
    return Vocabulary.load(Path(data_dir) / VOCAB)


def load_task(data_dir: str | os.PathLike) -> Task:
    """The task a dataset was generated with (its effective parameters included)."""
    verify_manifest(data_dir, [DATA_CONFIG])
    cfg = OmegaConf.to_container(OmegaConf.load(Path(data_dir) / DATA_CONFIG), resolve=True)
    try:
        return get_task(cfg["task"]["name"], **cfg["params"])
    except (KeyError, TypeError) as err:
        raise AniraInputError(f"malformed {DATA_CONFIG} in {data_dir}: {err}") from err


def load_split(data_dir: str | os.PathLike, split: str) -> pd.DataFrame:
    """One split as a DataFrame, after checking checksums, columns and token ids.

    Raises :class:`AniraInputError` when the directory, manifest or file is missing, truncated,
    modified, or from another task or vocabulary, or when its rows are not those generated
    (:func:`check_content`: a checksum alone trusts a manifest regenerated over edited rows).
    """
    if split not in SPLITS:
        raise AniraInputError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    data_dir = Path(data_dir)
    verify_manifest(data_dir, [split_file(split), VOCAB, DATA_CONFIG])
    vocab = load_vocab(data_dir)
    task = load_task(data_dir)
    path = data_dir / split_file(split)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise AniraInputError(f"cannot read {path}: {err}") from err
    expected = list(BASE_COLUMNS) + [f"f_{name}" for name in task.features]
    missing = [c for c in expected if c not in table.column_names]
    if missing:
        raise AniraInputError(f"{path} lacks columns {missing}")
    df = table.to_pandas()
    if len(df) and (set(df["split"]) != {split} or set(df["task"]) != {task.name}):
        raise AniraInputError(f"{path} holds rows of another split or task")
    ids = table.column("tokens").combine_chunks().flatten().to_numpy()
    if len(ids) and (ids.min() < 0 or ids.max() >= len(vocab)):
        raise AniraInputError(f"{path} has token ids outside its vocabulary of {len(vocab)}")
    check_content(data_dir, split, df)
    return df


def row_to_example(row: Mapping[str, Any], features: tuple[str, ...]) -> Example:
    """Rebuild the :class:`Example` of one row of :func:`load_split` (e.g. for ``is_correct``)."""
    return Example(
        token_str=[str(t) for t in row["token_str"]],
        answer_mask=[bool(m) for m in row["answer_mask"]],
        size=int(row["size"]),
        features={
            name: [None if v is None or np.isnan(v) else float(v) for v in row[f"f_{name}"]]
            for name in features
        },
        instance=json.loads(row["instance"]),
    )
