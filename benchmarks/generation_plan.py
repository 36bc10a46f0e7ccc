"""The paper study's data generation, sharded: measured throughput per task, the critical path at
a number of concurrent CPU jobs, and the CPU-hours, before (one job per task) and after (shards).

    python benchmarks/generation_plan.py [--configfile config/study/paper.yaml] [--shards 16]
                                         [--slots 64] [--train-examples 200] [--eval-examples 60]
                                         [--out benchmarks/results/generation_plan.json]

Per task, on one core, what the jobs run (``anira.generate``):
- ``train_s_per_example``: a shard's work, :func:`anira.generate.block_table` (draw, tokenise, build
  the Parquet table) over ``--train-examples`` examples at training sizes drawn in proportion to
  their counts, plus writing and reading them back as Parquet (the gather copies every row);
- ``eval_s_per_example``: the gather's own draws, ``--eval-examples`` examples at the evaluation
  sizes in proportion to their counts (rejections of repeats are not modelled: they are rare at
  paper sizes, ``summary.json`` counts them).
Jobs: with one job per task, its time is ``n_train · (train) + n_eval · (eval)``; sharded, each of
``--shards`` part jobs builds the task (``setup_s``, measured) and draws ``n_train / shards``
training examples, and the gather copies them and draws the evaluation splits. The critical path
is the makespan of a longest-first list schedule of those jobs on ``--slots`` concurrent CPU jobs
(a gather waits for its task's parts).
"""

from __future__ import annotations

import argparse
import heapq
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import OmegaConf

from anira.generate import block_table
from anira.io import atomic_write_json, measured_on
from anira.layout import TRAIN
from anira.spec import DatasetSpec, study_configs

ROOT = Path(__file__).resolve().parents[1]
COPY_ROWS = 20_000


def drawn_sizes(plan: list, train: bool, n: int, rng: np.random.Generator) -> Counter:
    """``n`` sizes of the training (or evaluation) plan drawn in proportion to their counts."""
    rows = [(size, count) for split, size, count in plan if (split == TRAIN) == train]
    sizes, counts = zip(*rows, strict=True)
    return Counter(rng.choice(sizes, size=n, p=np.asarray(counts) / sum(counts)).tolist())


def measure(task_name: str, scale: str, n_train: int, n_eval: int) -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "config/task" / f"{task_name}.yaml"))
    start = time.perf_counter()
    spec = DatasetSpec.resolve(cfg, scale)
    task, plan = spec.task, spec.plan
    setup = time.perf_counter() - start
    vocab = spec.vocabulary()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    tables = [
        block_table(task, vocab, 0, size, 1, count)
        for size, count in drawn_sizes(plan, True, n_train, rng).items()
    ]
    draw = time.perf_counter() - start
    # Copy rate on at least COPY_ROWS rows, so that opening the file does not dominate.
    table = pa.concat_tables(tables * -(-COPY_ROWS // n_train))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        pq.write_table(table, Path(tmp) / "part.parquet")
        pq.ParquetFile(Path(tmp) / "part.parquet").read_row_group(0)
        copy = time.perf_counter() - start
    start = time.perf_counter()
    for size, count in drawn_sizes(plan, False, n_eval, rng).items():
        for _ in range(count):
            task.sample(size, rng)
    evaluation = time.perf_counter() - start
    return {
        "task": task_name,
        "n_train": sum(count for split, _, count in plan if split == TRAIN),
        "n_eval": sum(count for split, _, count in plan if split != TRAIN),
        "setup_s": setup,
        "train_s_per_example": draw / n_train + copy / table.num_rows,
        "copy_s_per_example": copy / table.num_rows,
        "eval_s_per_example": evaluation / n_eval,
    }


def makespan(jobs: dict[str, list[float]], gathers: dict[str, float], slots: int) -> float:
    """Longest-first list schedule: every task's part jobs, then its gather once they are done."""
    free = [0.0] * slots
    done = {}
    parts = sorted(
        ((seconds, task) for task, times in jobs.items() for seconds in times), reverse=True
    )
    for seconds, task in parts:
        start = heapq.heappop(free)
        heapq.heappush(free, start + seconds)
        done[task] = max(done.get(task, 0.0), start + seconds)
    end = 0.0
    for task in sorted(gathers, key=lambda t: done.get(t, 0.0)):
        start = max(heapq.heappop(free), done.get(task, 0.0))
        heapq.heappush(free, start + gathers[task])
        end = max(end, start + gathers[task])
    return max(end, max(free))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", default="config/study/paper.yaml")
    parser.add_argument("--shards", type=int, default=None)
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--train-examples", type=int, default=200)
    parser.add_argument("--eval-examples", type=int, default=60)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/generation_plan.json"))
    args = parser.parse_args()
    study = OmegaConf.load(ROOT / args.configfile)
    shards = args.shards or int(study.get("generation_shards", 1))
    rows = []
    for name in study.tasks:
        row = measure(name, study.scale, args.train_examples, args.eval_examples)
        train = row["n_train"] * (row["train_s_per_example"] - row["copy_s_per_example"])
        row["gather_s"] = (
            row["n_eval"] * row["eval_s_per_example"] + row["n_train"] * row["copy_s_per_example"]
        )
        row["part_s"] = row["setup_s"] + train / shards
        row["single_job_s"] = train + row["n_eval"] * row["eval_s_per_example"]
        rows.append(row)
        print(
            f"{name:26} train {row['train_s_per_example'] * 1e3:7.2f} ms/ex  eval "
            f"{row['eval_s_per_example'] * 1e3:7.2f} ms/ex  single job "
            f"{row['single_job_s'] / 3600:5.2f} h  part {row['part_s'] / 60:6.1f} min  gather "
            f"{row['gather_s'] / 60:6.1f} min",
            flush=True,
        )
    before = {r["task"]: [r["single_job_s"]] for r in rows}
    after = {r["task"]: [r["part_s"]] * shards for r in rows}
    result = {
        **measured_on(study_configs(args.configfile)),
        "configfile": args.configfile,
        "note": "one core per job, measured on a shared machine (other jobs running)",
        "shards": shards,
        "slots": args.slots,
        "before": {
            "critical_path_h": makespan(before, {}, args.slots) / 3600,
            "cpu_h": sum(r["single_job_s"] for r in rows) / 3600,
        },
        "after": {
            "critical_path_h": makespan(after, {r["task"]: r["gather_s"] for r in rows}, args.slots)
            / 3600,
            "cpu_h": sum(shards * r["part_s"] + r["gather_s"] for r in rows) / 3600,
        },
        "tasks": rows,
    }
    for when in ("before", "after"):
        print(
            f"{when}: critical path {result[when]['critical_path_h']:.2f} h at {args.slots} "
            f"jobs, {result[when]['cpu_h']:.1f} CPU-h"
        )
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
