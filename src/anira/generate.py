"""``python -m anira.generate task=T scale=S seed=N out_dir=DIR``: write one dataset directory.

Sharded (paper scale): ``shard=k shards=n parts_dir=P`` writes the training blocks of shard k to
``P/part<k>.parquet``; then ``shards=n parts_dir=P out_dir=DIR`` gathers the parts and draws the
evaluation splits, writing the same bytes as an unsharded run (:mod:`anira.data`).

Writes ``DIR/{train,val,test,interp,extrap}.parquet``, ``vocab.json``, ``config.yaml``,
``summary.json`` and ``manifest.json`` (see :mod:`anira.data`), then prints a short summary: the
number of examples per split and size, and the evaluation examples rejected because they repeated a
training (or earlier evaluation) example. Bad parameters are a one-line error before any file is
written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from anira.cli import anira_main
from anira.data import generate_dataset, generate_part
from anira.io import AniraInputError
from anira.layout import SPLITS, TRAIN, part_file
from anira.spec import integer

log = logging.getLogger(__name__)


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
    shards = integer(cfg.shards, "shards", 1)
    if shards > 1 and cfg.parts_dir is None:
        raise AniraInputError("shards > 1 needs parts_dir (where the shards' parts are)")
    if cfg.shard is not None:
        shard = integer(cfg.shard, "shard", 0)
        path = part_file(cfg.parts_dir, shard)
        rows = generate_part(cfg.task, str(cfg.scale.name), cfg.seed, shard, shards, path)
        name = f"{cfg.task.name} ({cfg.scale.name})"
        print(f"{name} shard {shard}/{shards}: {rows} training examples -> {path}")
        return
    parts = [Path(part_file(cfg.parts_dir, k)) for k in range(shards)] if shards > 1 else None
    summary = generate_dataset(
        cfg.task, cfg.scale, cfg.seed, cfg.out_dir, progress_every=cfg.progress_every, parts=parts
    )
    print(format_summary(summary, str(cfg.out_dir)))


if __name__ == "__main__":
    main()
