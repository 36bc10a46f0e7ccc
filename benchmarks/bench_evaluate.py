"""Evaluation wall time with the key/value cache against the prefix-rerun reference, per task, and
what it comes to over a study's evaluation jobs.

    python benchmarks/bench_evaluate.py [--tasks brevo,clrs_sort] [--router early] [--repeats 1]
                                        [--work DIR] [--configfile config/config.yaml] [--out FILE]

Per task: its mini dataset (seed 0) and one trained model (``--router``, seed 0, one thread)
under ``--work`` (default: a temporary directory), made there when missing (an existing
checkpoint is used as it is; its training steps are recorded). Then ``python -m anira.evaluate …
threads=1`` with ``decode=cached`` and ``decode=reference``, alternately ``--repeats`` times: the
CPU time (user + system) of each process, start to exit (loading, the teacher-forced pass, greedy
decoding, scoring, writing), median per setting. CPU time, not wall time: on a shared machine
other processes stretch the wall time of a one-thread job, not its CPU time; on an idle machine
the two are about equal (the wall times are recorded too).

Extrapolation: the study's evaluation jobs (``snakemake -n --forceall evaluations`` with
``--configfile``: one per trained model) counted per task. A measured task's median stands for
each of its jobs whatever the router; a task not measured here is costed at the mean per-job time
of the measured ones and marked ``assumed``. Totals are serial (one job after another, one thread
each); Snakemake on a 2-core machine runs two at a time.

Results go to ``benchmarks/results/evaluate.json`` with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from anira.io import atomic_write_json, measured_on
from anira.spec import study_configs

ROOT = Path(__file__).resolve().parents[1]
DECODES = ("cached", "reference")


def run_module(args: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``python -m <args>`` from start to exit (output discarded)."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([sys.executable, "-m", *args], cwd=ROOT, check=True, capture_output=True)
    after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - start
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall


def mini_dataset(task: str, out: Path) -> list[str]:
    """``anira.generate`` arguments of the task's mini dataset (seed 0)."""
    return ["anira.generate", f"task={task}", "scale=mini", "seed=0", f"out_dir={out}"]


def mini_training(task: str, router: str, data: Path, out: Path, *overrides: str) -> list[str]:
    """``anira.train`` arguments of one mini model (seed 0) on ``data``."""
    return [
        "anira.train",
        f"task={task}",
        f"router={router}",
        "seed=0",
        "scale=mini",
        f"data_dir={data}",
        f"out_dir={out}",
        *overrides,
    ]


def trained_model(work: Path, task: str, router: str) -> tuple[Path, Path, int]:
    """(data dir, checkpoint dir, training steps) of the task's model, made when missing."""
    data, checkpoint = work / "data" / task, work / "ckpt" / task / router
    if not (data / "manifest.json").is_file():
        run_module(mini_dataset(task, data))
    if not (checkpoint / "model.pt").is_file():
        print(f"training {task}/{router} (mini, one thread) …", flush=True)
        run_module(mini_training(task, router, data, checkpoint, "threads=1"))
    steps = [json.loads(line)["step"] for line in (checkpoint / "metrics.jsonl").open()][-1]
    return data, checkpoint, steps


def study_jobs(configfile: str) -> Counter:
    """Evaluation jobs per task of the study, from Snakemake's dry run."""
    dry = subprocess.run(
        ["snakemake", "evaluations", "-n", "--forceall", "--configfile", configfile],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    blocks = dry.split("\nrule ")
    jobs = [re.search(r"wildcards: task=([\w]+)", b) for b in blocks if b.startswith("evaluate:")]
    return Counter(match.group(1) for match in jobs if match)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="brevo,clrs_sort")
    parser.add_argument("--router", default="early")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work", default=None, help="keeps datasets and models between runs")
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/evaluate.json"))
    args = parser.parse_args()
    jobs = study_jobs(args.configfile)  # before the measurements: a bad study file fails fast
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(Path(args.work or tmp), args.tasks.split(","), args.router, args.repeats)
    report(rows, jobs, args.configfile, Path(args.out))


def measure(work: Path, tasks: list[str], router: str, repeats: int) -> list[dict]:
    rows = []
    for task in tasks:
        data, checkpoint, steps = trained_model(work, task, router)
        seconds: dict[str, list[float]] = {decode: [] for decode in DECODES}
        walls: dict[str, list[float]] = {decode: [] for decode in DECODES}
        for _ in range(repeats):
            for decode in DECODES:
                out = work / "eval" / task / decode
                shutil.rmtree(out, ignore_errors=True)  # a finished evaluation would be kept
                cpu, wall = run_module(
                    [
                        "anira.evaluate",
                        f"checkpoint={checkpoint}",
                        f"data_dir={data}",
                        f"out_dir={out}",
                        f"decode={decode}",
                        "threads=1",
                    ]
                )
                seconds[decode].append(cpu)
                walls[decode].append(wall)
        cached, reference = (statistics.median(seconds[d]) for d in DECODES)
        row = {
            "task": task,
            "router": router,
            "train_steps": steps,
            "cached_s": cached,
            "reference_s": reference,
            "speedup": reference / cached,
            "cpu_s": seconds,
            "wall_s": walls,
        }
        rows.append(row)
        print(
            f"{task:10} {router} ({steps} steps): cached {cached:6.1f}s  reference "
            f"{reference:6.1f}s  speed-up ×{row['speedup']:.2f}",
            flush=True,
        )
    return rows


def report(rows: list[dict], jobs: Counter, configfile: str, out: Path) -> None:
    measured = {row["task"]: row for row in rows}
    mean = {d: statistics.mean(row[f"{d}_s"] for row in rows) for d in DECODES}
    study = []
    for task, count in sorted(jobs.items()):
        per_job = {d: measured[task][f"{d}_s"] if task in measured else mean[d] for d in DECODES}
        study.append(
            {
                "task": task,
                "jobs": count,
                "assumed": task not in measured,
                **{f"{d}_s": count * per_job[d] for d in DECODES},
            }
        )
    totals = {d: sum(row[f"{d}_s"] for row in study) for d in DECODES}
    print(
        f"{configfile}: {sum(jobs.values())} evaluation jobs "
        f"({', '.join(f'{t} {n}' for t, n in sorted(jobs.items()))}), serial: cached "
        f"{totals['cached'] / 60:.1f} min, reference {totals['reference'] / 60:.1f} min "
        f"(tasks not measured: {', '.join(r['task'] for r in study if r['assumed']) or 'none'})"
    )
    atomic_write_json(
        out,
        {
            **measured_on(study_configs(configfile)),
            "configfile": configfile,
            "rows": rows,
            "study": study,
            "study_serial_s": totals,
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
