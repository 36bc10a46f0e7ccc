"""``python -m anira.generate task=T scale=S seed=N out_dir=DIR``: write one dataset directory
(its files: :mod:`anira.dataset`; its plan, validated before any file is written:
:class:`anira.spec.DatasetSpec`).

Sharded (paper scale): ``shard=k shards=n parts_dir=P`` writes the training blocks of shard k to
``P/part<k>.parquet``; then ``shards=n parts_dir=P out_dir=DIR`` gathers the parts and draws the
evaluation splits, writing the same bytes as an unsharded run.

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

The command prints a short summary: the number of examples per split and size, and the
evaluation examples rejected because they repeated a training (or earlier evaluation) example.
Bad parameters are a one-line error before any file is written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import DictConfig

from anira.cli import anira_main
from anira.dataset import CHUNK, Vocabulary, sequence_key, write_dataset_manifest
from anira.io import AniraInputError, atomic_path, atomic_write_json, atomic_write_text
from anira.layout import (
    DATA_CONFIG,
    MANIFEST,
    SPLITS,
    SUMMARY,
    TRAIN,
    VOCAB,
    data_files,
    part_file,
    split_file,
)
from anira.spec import DatasetSpec, integer
from anira.tasks import Example, Task

log = logging.getLogger(__name__)

REJECTIONS = ("rejected_train_overlap", "rejected_repeat")  # summary.json counters per size
MAX_DRAWS_FACTOR = 20  # an evaluation split may draw this many times its count (+1000)


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


def generate_part(spec: DatasetSpec, shard: int, shards: int, path: str | os.PathLike) -> int:
    """Write shard ``shard`` of ``shards`` of the training split (its blocks, one row group each)
    to ``path``; returns the number of examples. :func:`generate_dataset` with the parts of every
    shard writes the dataset a single process writes, byte for byte."""
    task, vocab = spec.task, spec.vocabulary()
    rows = 0
    with atomic_path(Path(path)) as tmp, pq.ParquetWriter(tmp, split_schema(task)) as writer:
        for size, block, count in shard_blocks(train_blocks(spec.plan), shard, shards):
            writer.write_table(block_table(task, vocab, spec.seed, size, block, count))
            rows += count
    return rows


def generate_dataset(
    spec: DatasetSpec,
    out_dir: str | os.PathLike,
    progress_every: int = 50_000,
    parts: list[Path] | None = None,
) -> dict[str, Any]:
    """Write every split of a dataset's spec; the training split from ``parts``
    (:func:`generate_part`'s files, one per shard) when given.

    The spec is validated before any file is written; splits are written under temporary names
    and renamed only when every split is complete, then ``vocab.json``, ``config.yaml``,
    ``summary.json`` and finally ``manifest.json``. Returns the summary.
    """
    task, plan, seed = spec.task, spec.plan, spec.seed
    vocab = spec.vocabulary()
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    summary: dict[str, Any] = {
        "task": task.name,
        "scale": spec.scale,
        "seed": seed,
        "params": spec.params,
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
    atomic_write_text(out_dir / DATA_CONFIG, spec.config_text())
    atomic_write_json(out_dir / SUMMARY, summary)
    artifacts = task.artifacts()
    for name, text in artifacts.items():
        atomic_write_text(out_dir / name, text)
    write_dataset_manifest(out_dir, data_files(artifacts))
    return summary


def format_summary(summary: dict[str, Any], out_dir: str) -> str:
    """One line per split: ``size:count`` pairs and the rejected duplicates."""
    lines = [f"{summary['task']} ({summary['scale']}, seed {summary['seed']}) -> {out_dir}"]
    for split in SPLITS:
        per_size = summary["splits"][split]
        counts = " ".join(f"{size}:{stats['count']}" for size, stats in per_size.items())
        overlap = sum(stats["rejected_train_overlap"] for stats in per_size.values())
        repeat = sum(stats["rejected_repeat"] for stats in per_size.values())
        rejected = "" if split == TRAIN else f"  rejected: {overlap} in train, {repeat} repeats"
        lines.append(f"  {split:<7} {counts or '(no sizes)'}{rejected}")
    return "\n".join(lines)


@anira_main("generate")
def main(cfg: DictConfig) -> None:
    spec = DatasetSpec.from_config(cfg)
    shards = integer(cfg.shards, "shards", 1)
    if shards > 1 and cfg.parts_dir is None:
        raise AniraInputError("shards > 1 needs parts_dir (where the shards' parts are)")
    if cfg.shard is not None:
        shard = integer(cfg.shard, "shard", 0)
        path = part_file(cfg.parts_dir, shard)
        rows = generate_part(spec, shard, shards, path)
        name = f"{cfg.task.name} ({cfg.scale.name})"
        print(f"{name} shard {shard}/{shards}: {rows} training examples -> {path}")
        return
    parts = [Path(part_file(cfg.parts_dir, k)) for k in range(shards)] if shards > 1 else None
    summary = generate_dataset(spec, cfg.out_dir, progress_every=cfg.progress_every, parts=parts)
    print(format_summary(summary, str(cfg.out_dir)))


if __name__ == "__main__":
    main()
