"""``python -m anira.generate task=T scale=S seed=N out_dir=DIR``: write one dataset directory.

Writes ``DIR/{train,val,test,interp,extrap}.parquet``, ``vocab.json``, ``config.yaml``,
``summary.json`` and ``manifest.json`` (see :mod:`anira.data`), then prints a short summary: the
number of examples per split and size, and the evaluation examples rejected because they repeated a
training (or earlier evaluation) example. Bad parameters are a one-line error before any file is
written.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from anira.cli import anira_main
from anira.data import generate_dataset
from anira.layout import SPLITS, TRAIN

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
    summary = generate_dataset(
        cfg.task, cfg.scale, cfg.seed, cfg.out_dir, progress_every=cfg.progress_every
    )
    print(format_summary(summary, str(cfg.out_dir)))


if __name__ == "__main__":
    main()
