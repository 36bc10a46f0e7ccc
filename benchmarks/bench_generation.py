"""Generation speed: examples per second for every task, at the ``mini`` and ``paper`` sizes.

    python benchmarks/bench_generation.py [--seconds 0.5] [--tasks clrs_sort,brevo] [--out FILE]

Every ``config/task/*.yaml`` whose task is registered is built exactly as a dataset builds it
(:class:`anira.spec.DatasetSpec`, dataset parameters included) and ``task.sample`` is timed, one
core, cycling round-robin through the sizes of three mixes:

- ``mini``: every size of the ``mini`` scale (train, interp and extrap);
- ``paper_train``: the ``paper`` training sizes (what most of a paper dataset costs);
- ``paper_extrap``: the ``paper`` extrapolation sizes (64 for CLRS-Text: the slowest examples).

Each mix runs for ``--seconds`` (at least 5 examples). The table also gives the mean sequence
length of the mix and the estimated time to draw the paper training set (``n_train / rate``).
Results go to ``benchmarks/results/generation.json`` (with the machine they were measured on).
Tokenising and writing Parquet are not included: this measures the task generators alone.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from anira.io import atomic_write_json, measured_on
from anira.spec import DatasetSpec
from anira.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
MIXES = {"mini": ("mini", ("train", "interp", "extrap")), "paper_train": ("paper", ("train",))}
MIXES["paper_extrap"] = ("paper", ("extrap",))
MIN_EXAMPLES = 5


def time_mix(cfg: dict[str, Any], scale: str, splits: tuple[str, ...], seconds: float) -> dict:
    spec = DatasetSpec.resolve(cfg, scale)
    task, plan = spec.task, spec.plan
    sizes = sorted({size for split, size, _ in plan if split in splits})  # ranges expanded
    rng = np.random.default_rng(0)
    n = tokens = 0
    start = time.perf_counter()
    while n < MIN_EXAMPLES or time.perf_counter() - start < seconds:
        tokens += len(task.sample(sizes[n % len(sizes)], rng).token_str)
        n += 1
    elapsed = time.perf_counter() - start
    return {
        "sizes": sizes,
        "examples": n,
        "seconds": round(elapsed, 4),
        "examples_per_s": round(n / elapsed, 1),
        "mean_tokens": round(tokens / n, 1),
    }


def run(task_names: list[str] | None, seconds: float) -> list[dict]:
    results = []
    for path in sorted((ROOT / "config" / "task").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        if cfg["name"] not in TASKS or (task_names and cfg["name"] not in task_names):
            continue
        row: dict[str, Any] = {"task": cfg["name"]}
        for mix, (scale, splits) in MIXES.items():
            row[mix] = time_mix(cfg, scale, splits, seconds)
        rate = row["paper_train"]["examples_per_s"]
        row["paper_train_set_minutes"] = round(cfg["scales"]["paper"]["n_train"] / rate / 60, 1)
        results.append(row)
        print_row(row)
    return results


def print_row(row: dict) -> None:
    cells = [f"{row['task']:<26}"]
    for mix in MIXES:
        cells.append(f"{row[mix]['examples_per_s']:>18,.0f} {row[mix]['mean_tokens']:>7.0f}")
    cells.append(f"{row['paper_train_set_minutes']:>22,.1f}")
    print(" ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per task and mix")
    parser.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "generation.json"))
    args = parser.parse_args()
    os.chdir(ROOT)  # task configs may name files relative to the repository root
    header = " ".join(f"{mix + ' ex/s':>18} {'tokens':>7}" for mix in MIXES)
    print(f"{'task':<26} {header} {'paper train set (min)':>22}")
    results = run([t for t in args.tasks.split(",") if t] or None, args.seconds)
    configs = ["config/task/*.yaml", "config/scale/*.yaml", "config/grammars/*"]
    report = {"seconds_per_mix": args.seconds, **measured_on(configs), "results": results}
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
