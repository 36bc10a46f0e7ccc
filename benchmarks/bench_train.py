"""End-to-end training time of one mini model, dense vs packed vs auto execution.

    python benchmarks/bench_train.py [--task brevo] [--routers early,online]
                                     [--executions dense,packed,auto] [--out FILE]

Generates the task's ``mini`` dataset once (seed 0) in a temporary directory, then runs
``python -m anira.train task=T router=R seed=0 scale=mini … scale.model.execution=E`` for every
router and execution, one after the other, and records the wall time of each run (process start to
exit: data loading, every training step, the final checkpoint), the training steps per second, and
the final logged answer accuracy and mean executed depth. Same seed and data for every execution,
so the runs differ only in how the core is executed (their weights agree up to float rounding).
Results go to ``benchmarks/results/train_e2e.json`` and a table is printed. About 1.5 minutes per
run on the project's 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from anira.io import atomic_write_json, machine_info

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", *args], cwd=ROOT, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="brevo")
    parser.add_argument("--routers", default="early,online")
    parser.add_argument("--executions", default="dense,packed,auto")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/train_e2e.json"))
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        run(["anira.generate", f"task={args.task}", "scale=mini", "seed=0", f"out_dir={data}"])
        for router in args.routers.split(","):
            for execution in args.executions.split(","):
                out = Path(tmp) / f"{router}_{execution}"
                start = time.perf_counter()
                run(
                    [
                        "anira.train",
                        f"task={args.task}",
                        f"router={router}",
                        "seed=0",
                        "scale=mini",
                        f"data_dir={data}",
                        f"out_dir={out}",
                        f"scale.model.execution={execution}",
                    ]
                )
                seconds = time.perf_counter() - start
                metrics = [json.loads(line) for line in (out / "metrics.jsonl").open()]
                last = metrics[-1]
                row = {
                    "task": args.task,
                    "router": router,
                    "execution": execution,
                    "seconds": seconds,
                    "steps": last["step"],
                    "steps_per_s": last["step"] / seconds,
                    "final_answer_accuracy": last["answer_accuracy"],
                    "final_mean_depth": last["mean_depth"],
                }
                rows.append(row)
                print(
                    f"{args.task:6} {router:7} {execution:7} {seconds:7.1f}s "
                    f"{row['steps_per_s']:5.2f} steps/s  acc {row['final_answer_accuracy']:.3f}  "
                    f"depth {row['final_mean_depth']:.2f}",
                    flush=True,
                )
    for router in args.routers.split(","):
        base = next(r for r in rows if r["router"] == router and r["execution"] == "dense")
        for r in rows:
            if r["router"] == router:
                r["speedup_vs_dense"] = base["seconds"] / r["seconds"]
    result = {
        "machine": machine_info(),
        "rows": rows,
    }
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
