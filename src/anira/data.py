"""Datasets: the vocabulary, deterministic split generation, and validated loading.

A dataset directory holds, for one task, scale and seed::

    train.parquet val.parquet test.parquet interp.parquet extrap.parquet   one row per example
    vocab.json     the token list (``<pad>`` at id 0) and its SHA-256
    config.yaml    the task config, scale, seed and the task's effective parameters
    summary.json   counts and rejected duplicates per split and size
    manifest.json  SHA-256 of every file above (written last); per split, its rows per size and
                   the SHA-256 of its example ids

Splits by difficulty: ``train``, ``val`` and ``test`` use the training sizes, ``interp`` sizes
held out strictly inside the training range, ``extrap`` sizes strictly beyond it. ``n_train``
examples are spread evenly over the training sizes; every other split has ``n_eval_per_size`` per
size. ``val`` is for choosing (hyperparameters, settings), ``test`` for reporting.

Determinism: each (split, size) draws from its own RNG,
``SeedSequence(seed, spawn_key=(split index, size))``, so the same seed gives byte-identical files
and adding a size never changes the examples of another. The training split is drawn in blocks of
``CHUNK`` examples per size (its Parquet row groups), block b > 0 from
``SeedSequence(seed, spawn_key=(0, size, b))`` and block 0 from the (split, size) stream, so
blocks can be drawn by parallel shards (:func:`generate_part`) and gathered into the same bytes
whatever the number of shards, and a size of at most ``CHUNK`` training examples (every size of
the ``mini`` scale) draws what it drew before blocks existed. Duplicates inside ``train`` are kept
(they are i.i.d. draws); an example of an evaluation split whose token sequence occurs in
``train`` or earlier in an evaluation split (``val`` is drawn last) is rejected and redrawn, and
the rejections are counted in ``summary.json``. A size whose example space is too small to fill a
split that way is an error.

Parquet columns: ``id``, ``task``, ``size``, ``split``, ``tokens`` (list of int64 ids),
``token_str``, ``answer_mask``, ``instance`` (JSON) and ``f_<feature>`` (list of float, null where
undefined) per feature of the task, all lists aligned with ``tokens``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import DictConfig, OmegaConf

from anira.io import (
    AniraInputError,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    read_manifest,
    sha256_file,
    verify_manifest,
    write_manifest,
)
from anira.layout import (
    DATA_CONFIG,
    EXTRAP,
    INTERP,
    MANIFEST,
    SPLITS,
    SUMMARY,
    TEST,
    TRAIN,
    VAL,
    VOCAB,
    data_files,
    split_file,
)
from anira.spec import integer, task_at_scale
from anira.tasks import Example, Task, get_task
from anira.tasks.base import ANS, EOS, PAD

log = logging.getLogger(__name__)

BASE_COLUMNS = ("id", "task", "size", "split", "tokens", "token_str", "answer_mask", "instance")
CHUNK = 10_000  # examples per Parquet row group (fixed, so files stay byte-identical)
REJECTIONS = ("rejected_train_overlap", "rejected_repeat")  # summary.json counters per size
MAX_DRAWS_FACTOR = 20  # an evaluation split may draw this many times its count (+1000)


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


# ---------------------------------------------------------------------------------------------
# Split plan: which sizes, how many examples, validated before any work.


SIZE_KEYS = ("train", "train_only", "interp", "extrap")
_RANGE_RE = re.compile(r"^\s*(\d+)\s*\.\.\s*(\d+)\s*$")


def _int_list(value: Any, what: str, task: Task, named: set[int]) -> list[int]:
    """The sizes of one split: integers, or ``"a..b"`` ranges standing for every size in [a, b]
    the task can produce that no split names as an integer (e.g. LANO lengths)."""
    items = list(value) if value is not None else []
    ints: list[int] = []
    for x in items:
        match = _RANGE_RE.match(x) if isinstance(x, str) else None
        if match is not None:
            lo, hi = int(match.group(1)), int(match.group(2))
            ints += [s for s in range(lo, hi + 1) if s not in named and _producible(task, s)]
        elif isinstance(x, bool | str) or int(x) != x:
            raise AniraInputError(
                f"{what} must be a list of integers or 'a..b' ranges, got {items}"
            )
        else:
            ints.append(int(x))
    if len(set(ints)) != len(ints):
        raise AniraInputError(f"{what} repeats a size: {ints}")
    return ints


def _producible(task: Task, size: int) -> bool:
    try:
        task.check_size(size)
    except AniraInputError:
        return False
    return True


def _train_counts(task: Task, train: list[int], n_train: int) -> list[int]:
    """``n_train`` shared by the training sizes: equally, or in proportion to the task's
    :meth:`~anira.tasks.Task.size_weights` (largest remainders; at least one per size)."""
    weights = task.size_weights(train)
    if weights is None:
        return [n_train // len(train) + (i < n_train % len(train)) for i in range(len(train))]
    share = np.asarray(weights, dtype=float) / float(np.sum(weights)) * n_train
    counts = np.floor(share).astype(np.int64)
    extra = np.argsort(-(share - counts), kind="stable")[: n_train - int(counts.sum())]
    counts[extra] += 1
    return [max(1, int(c)) for c in counts]


def plan_splits(task: Task, sizes: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """``(split, size, count)`` for every split and size of a scale config, validated.

    ``train_only`` sizes (optional) are trained on but never tested: sizes whose example space is
    too small for a test split disjoint from train (MANO L=1 has 1,587 expressions) can still teach
    the primitive steps of the larger sizes. ``n_train`` is shared by the training sizes, equally
    unless the task weighs them (:meth:`~anira.tasks.Task.size_weights`, e.g. LANO's lengths in
    proportion to the grammar's length distribution). A list may hold ``"a..b"`` ranges: every
    size in [a, b] the task can produce and that no split names as an integer.

    Raises :class:`AniraInputError` for sizes below the task's minimum, interp sizes not strictly
    inside the training range or equal to a training size, extrap sizes not beyond it, sizes shared
    between splits, non-positive counts, and sizes whose example space (when the task knows it) is
    too small for the examples requested.
    """
    named = {
        int(x)
        for key in SIZE_KEYS
        for x in (sizes.get(key) or [])
        if not isinstance(x, str | bool) and int(x) == x
    }
    tested, train_only, interp, extrap = (
        sorted(_int_list(sizes.get(key), f"{key} sizes", task, named)) for key in SIZE_KEYS
    )
    if not tested:
        raise AniraInputError("train sizes must not be empty")
    if set(train_only) & set(tested):
        both = sorted(set(train_only) & set(tested))
        raise AniraInputError(f"sizes {both} are both train and train_only")
    train = sorted(tested + train_only)
    n_train = integer(sizes.get("n_train"), "n_train", 1)
    n_eval = integer(sizes.get("n_eval_per_size"), "n_eval_per_size", 1)
    if n_train < len(train):
        raise AniraInputError(f"n_train={n_train} is fewer than the {len(train)} training sizes")
    for size in train + interp + extrap:
        task.check_size(size)
    lo, hi = train[0], train[-1]
    for size in interp:
        if not lo < size < hi or size in train:
            raise AniraInputError(
                f"interp size {size} must lie strictly inside the training range [{lo}, {hi}] "
                f"and not be a training size {train}"
            )
    for size in extrap:
        if size <= hi:
            raise AniraInputError(f"extrap size {size} must exceed the largest training size {hi}")
    if set(interp) & set(extrap):
        both = sorted(set(interp) & set(extrap))
        raise AniraInputError(f"sizes {both} are both interp and extrap")
    per_train = _train_counts(task, train, n_train)
    plan = [(TRAIN, s, n) for s, n in zip(train, per_train, strict=True)]
    plan += [(TEST, s, n_eval) for s in tested]
    plan += [(INTERP, s, n_eval) for s in interp] + [(EXTRAP, s, n_eval) for s in extrap]
    plan += [(VAL, s, n_eval) for s in tested]
    drawn: dict[int, int] = {}  # examples of a size planned so far, train included
    for split, size, count in plan:
        drawn[size] = drawn.get(size, 0) + count
        space = task.space_size(size)
        if split != TRAIN and space is not None and space < drawn[size]:
            raise AniraInputError(
                f"task {task.name} size {size} has only {space} distinct examples: too few for "
                f"{count} {split} examples disjoint from the training and evaluation examples of "
                "that size; choose larger sizes or fewer examples"
            )
    return plan


# ---------------------------------------------------------------------------------------------
# Generation.


def split_rng(seed: int, split: str, size: int) -> np.random.Generator:
    """The RNG of one (split, size): independent of every other split and size."""
    sequence = np.random.SeedSequence(seed, spawn_key=(SPLITS.index(split), size))
    return np.random.default_rng(sequence)


def block_rng(seed: int, size: int, block: int) -> np.random.Generator:
    """The RNG of training block ``block`` of ``size`` (its examples ``block·CHUNK`` onwards).
    Block 0 keeps the (split, size) stream of :func:`split_rng`, so a size of at most ``CHUNK``
    training examples draws what it drew before training was split into blocks."""
    if block == 0:
        return split_rng(seed, TRAIN, size)
    sequence = np.random.SeedSequence(seed, spawn_key=(SPLITS.index(TRAIN), size, block))
    return np.random.default_rng(sequence)


def train_blocks(plan: list[tuple[str, int, int]]) -> list[tuple[int, int, int]]:
    """``(size, block, count)`` of every block of the training split, in file order: each size's
    examples in blocks of ``CHUNK`` (the Parquet row groups), the last one partial."""
    return [
        (size, block, min(CHUNK, count - block * CHUNK))
        for split, size, count in plan
        if split == TRAIN
        for block in range(-(-count // CHUNK))
    ]


def shard_blocks(blocks: list, shard: int, shards: int) -> list:
    """The blocks shard ``shard`` of ``shards`` draws: a contiguous run, sizes balanced."""
    if not 0 <= shard < shards:
        raise AniraInputError(f"shard must be in [0, {shards}), got {shard}")
    return blocks[shard * len(blocks) // shards : (shard + 1) * len(blocks) // shards]


def block_table(
    task: Task, vocab: Vocabulary, seed: int, size: int, block: int, count: int
) -> pa.Table:
    """The rows of one training block, drawn from :func:`block_rng`."""
    rng = block_rng(seed, size, block)
    ids = (f"{TRAIN}-{size}-{block * CHUNK + i:07d}" for i in range(count))
    return examples_table(task, vocab, TRAIN, [(i, task.sample(size, rng)) for i in ids])


def sequence_key(token_str: list[str]) -> bytes:
    """A 16-byte digest of a token sequence, used to find examples shared between splits."""
    return hashlib.blake2b("\x1f".join(token_str).encode("utf-8"), digest_size=16).digest()


def split_schema(task: Task) -> pa.Schema:
    fields = [
        ("id", pa.string()),
        ("task", pa.string()),
        ("size", pa.int64()),
        ("split", pa.string()),
        ("tokens", pa.list_(pa.int64())),
        ("token_str", pa.list_(pa.string())),
        ("answer_mask", pa.list_(pa.bool_())),
        ("instance", pa.string()),
    ]
    fields += [(f"f_{name}", pa.list_(pa.float64())) for name in task.features]
    return pa.schema(fields)


def examples_table(
    task: Task, vocab: Vocabulary, split: str, rows: list[tuple[str, Example]]
) -> pa.Table:
    """A Parquet-ready table of ``(id, example)`` rows."""
    columns: dict[str, list[Any]] = {
        "id": [i for i, _ in rows],
        "task": [task.name] * len(rows),
        "size": [ex.size for _, ex in rows],
        "split": [split] * len(rows),
        "tokens": [vocab.encode(ex.token_str) for _, ex in rows],
        "token_str": [ex.token_str for _, ex in rows],
        "answer_mask": [ex.answer_mask for _, ex in rows],
        "instance": [json.dumps(ex.instance, sort_keys=True) for _, ex in rows],
    }
    for name in task.features:
        columns[f"f_{name}"] = [ex.features[name] for _, ex in rows]
    return pa.Table.from_pydict(columns, schema=split_schema(task))


class _Progress:
    """Logs ``examples done / total`` with the rate every ``every`` examples of a split."""

    def __init__(self, split: str, total: int, every: int) -> None:
        self.split, self.total, self.every = split, total, max(int(every), 1)
        self.done, self.start = 0, time.perf_counter()

    def advance(self, n: int) -> None:
        for _ in range(n):
            self.step()

    def step(self) -> None:
        self.done += 1
        if self.done % self.every == 0 or (self.done == self.total and self.total >= self.every):
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            eta = (self.total - self.done) / rate
            done, total = self.done, self.total
            log.info("%s: %d/%d examples (%.0f/s, ETA %.0fs)", self.split, done, total, rate, eta)


def draw_examples(
    task: Task,
    split: str,
    size: int,
    count: int,
    seed: int,
    train_keys: set[bytes],
    eval_keys: set[bytes],
    progress: _Progress,
) -> tuple[Iterator[Example], dict[str, int]]:
    """Draw ``count`` examples of one evaluation (split, size); see the module docstring for the
    rules (the training split is drawn in blocks: :func:`train_tables`).

    Returns a lazy iterator and the counters it fills (``rejected_train_overlap``,
    ``rejected_repeat``) as it runs.
    """
    stats = {"count": count, **dict.fromkeys(REJECTIONS, 0)}
    rng = split_rng(seed, split, size)
    max_draws = MAX_DRAWS_FACTOR * count + 1000

    def generate() -> Iterator[Example]:
        made = draws = 0
        while made < count:
            if draws >= max_draws:
                raise AniraInputError(
                    f"task {task.name} {split} size {size}: only {made} of {count} examples not "
                    f"in train after {draws} draws; the size's example space is too small for "
                    "disjoint splits, choose other sizes or fewer examples"
                )
            draws += 1
            example = task.sample(size, rng)
            key = sequence_key(example.token_str)
            if key in train_keys:
                stats["rejected_train_overlap"] += 1
                continue
            if key in eval_keys:
                stats["rejected_repeat"] += 1
                continue
            eval_keys.add(key)
            made += 1
            progress.step()
            yield example

    return generate(), stats


def _chunks(items: Iterator[Any], n: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _as_container(cfg: Any) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def build_task(task_cfg: Mapping[str, Any], scale: str) -> tuple[Task, dict[str, Any], list]:
    """The task of a dataset (with its dataset parameters), its effective parameters and plan.

    A scale may override task parameters (``scales.<scale>.params``), e.g. a smaller MANO modulus
    at ``mini``; the effective parameters are saved with the dataset and score its examples.
    """
    name = task_cfg.get("name")
    at_scale = task_at_scale(task_cfg, scale)
    params = dict(task_cfg.get("params") or {}) | dict(at_scale.get("params") or {})
    task = get_task(name, **params)
    plan = plan_splits(task, at_scale)
    extra = task.dataset_params(max(size for _, size, _ in plan))
    added = {k: v for k, v in extra.items() if k not in params}
    if added:  # the task of the dataset, revalidated with the parameters it fixes
        params.update(added)
        task = get_task(name, **params)
        plan = plan_splits(task, at_scale)
    return task, params, plan


def train_tables(
    task: Task, vocab: Vocabulary, plan: list, seed: int, parts: list[Path] | None
) -> Iterator[pa.Table]:
    """The rows of every training block in file order: drawn here, or (``parts``) read
    from the part files :func:`generate_part` wrote for each shard, checked block by block."""
    blocks = train_blocks(plan)
    if parts is None:
        for size, block, count in blocks:
            yield block_table(task, vocab, seed, size, block, count)
        return
    for shard, path in enumerate(parts):
        expected = shard_blocks(blocks, shard, len(parts))
        try:
            part = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as err:
            raise AniraInputError(f"cannot read part {path}: {err}") from err
        if part.num_row_groups != len(expected):
            raise AniraInputError(
                f"part {path} holds {part.num_row_groups} blocks, not the {len(expected)} of "
                f"shard {shard} of {len(parts)}: generated for another plan or shard count"
            )
        for index, (size, block, count) in enumerate(expected):
            table = part.read_row_group(index)
            ids = [f"{TRAIN}-{size}-{block * CHUNK + i:07d}" for i in range(count)]
            if table["id"].to_pylist() != ids:
                raise AniraInputError(f"part {path} block {index} is not size {size} block {block}")
            yield table


def generate_part(
    task_cfg: Any, scale: str, seed: int, shard: int, shards: int, path: str | os.PathLike
) -> int:
    """Write shard ``shard`` of ``shards`` of the training split (its blocks, one row group each)
    to ``path``; returns the number of examples. :func:`generate_dataset` with the parts of every
    shard writes the dataset a single process writes, byte for byte."""
    task, _, plan = build_task(_as_container(task_cfg), scale)
    vocab = Vocabulary([PAD, *task.vocab_tokens(max(size for _, size, _ in plan))])
    rows = 0
    with atomic_path(Path(path)) as tmp, pq.ParquetWriter(tmp, split_schema(task)) as writer:
        for size, block, count in shard_blocks(train_blocks(plan), shard, shards):
            writer.write_table(block_table(task, vocab, seed, size, block, count))
            rows += count
    return rows


def generate_dataset(
    task_cfg: Any,
    scale: Any,
    seed: int,
    out_dir: str | os.PathLike,
    progress_every: int = 50_000,
    parts: list[Path] | None = None,
) -> dict[str, Any]:
    """Write every split of ``task_cfg`` at ``scale`` (a name, or a config with ``name``); the
    training split from ``parts`` (:func:`generate_part`'s files, one per shard) when given.

    Everything is validated before any file is written; splits are written under temporary names
    and renamed only when every split is complete, then ``vocab.json``, ``config.yaml``,
    ``summary.json`` and finally ``manifest.json``. Returns the summary.
    """
    task_cfg = _as_container(task_cfg)
    scale_name = scale if isinstance(scale, str) else str(scale["name"])
    if isinstance(seed, bool) or int(seed) != seed or int(seed) < 0:
        raise AniraInputError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    task, params, plan = build_task(task_cfg, scale_name)
    max_size = max(size for _, size, _ in plan)
    vocab = Vocabulary([PAD, *task.vocab_tokens(max_size)])
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    summary: dict[str, Any] = {
        "task": task.name,
        "scale": scale_name,
        "seed": seed,
        "params": params,
        "vocab_sha256": vocab.hash,
        "splits": {},
    }
    train_keys: set[bytes] = set()
    eval_keys: set[bytes] = set()
    schema = split_schema(task)
    try:
        with contextlib.ExitStack() as stack:
            for split in SPLITS:
                split_plan = [(size, count) for s, size, count in plan if s == split]
                progress = _Progress(split, sum(c for _, c in split_plan), progress_every)
                tmp = stack.enter_context(atomic_path(out_dir / split_file(split)))
                with pq.ParquetWriter(tmp, schema) as writer:
                    summary["splits"][split] = {}
                    if split == TRAIN:
                        for table in train_tables(task, vocab, plan, seed, parts):
                            train_keys.update(map(sequence_key, table["token_str"].to_pylist()))
                            writer.write_table(table)
                            progress.advance(table.num_rows)
                        summary["splits"][split] = {
                            str(size): {"count": count, **dict.fromkeys(REJECTIONS, 0)}
                            for size, count in split_plan
                        }
                        continue
                    for size, count in split_plan:
                        examples, stats = draw_examples(
                            task, split, size, count, seed, train_keys, eval_keys, progress
                        )
                        ids = (f"{split}-{size}-{i:07d}" for i in range(count))
                        for rows in _chunks(zip(ids, examples, strict=False), CHUNK):
                            writer.write_table(examples_table(task, vocab, split, rows))
                        summary["splits"][split][str(size)] = stats
                    if not split_plan:
                        writer.write_table(schema.empty_table())
            (out_dir / MANIFEST).unlink(missing_ok=True)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    vocab.save(out_dir / VOCAB)
    atomic_write_text(out_dir / DATA_CONFIG, data_config_text(task_cfg, scale_name, seed, params))
    atomic_write_json(out_dir / SUMMARY, summary)
    artifacts = task.artifacts()
    for name, text in artifacts.items():
        atomic_write_text(out_dir / name, text)
    write_dataset_manifest(out_dir, data_files(artifacts))
    return summary


def data_config_text(task_cfg: Mapping[str, Any], scale: str, seed: int, params: dict) -> str:
    """The bytes of a dataset's ``config.yaml``: what the data was generated from. The workflow
    computes it for the study too (:func:`anira.spec.dataset_config_sha256`), so a model whose data
    was generated from another config is redone before its dataset is regenerated."""
    config = {"task": dict(task_cfg), "scale": scale, "seed": seed, "params": params}
    return OmegaConf.to_yaml(OmegaConf.create(config))


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
