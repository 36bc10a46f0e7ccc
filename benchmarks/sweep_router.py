"""Accuracy and depth of the adaptive routers over a γ × b grid (the router-collapse check).

    python benchmarks/sweep_router.py [--task brevo] [--routers early,online]
                                      [--gammas 0.001,0.01,0.1] [--bases 1,2]
                                      [--settings γ:b,…] [--jobs 2] [--data-dir DIR]
                                      [--keep DIR] [--out FILE] [override ...]

Generates the task's ``mini`` dataset once (seed 0; ``--data-dir`` reuses one), then trains and
evaluates one model per router × γ × b with the real Hydra apps (``anira.train`` with
``router.gamma=… router.prior_base=…``, then ``anira.evaluate``), ``--jobs`` at a time; trailing
``key=value`` arguments are passed to every training run (e.g. ``scale.train.steps=400``).
``--settings 0.001:2,0.01:1.2`` sweeps those (γ, b) pairs instead of the ``--gammas`` × ``--bases``
product; a fixed-depth router (``fixed``, ``fixed<D'>``) is trained once, with γ = 0 and b = 1.
The online router is evaluated with every rule of ``--online-rules`` from the same
checkpoint. Checkpoints, evaluation records and logs are deleted at the end unless ``--keep DIR``
names a directory for them (e.g. to run further analyses on the records).

Per run it records exact-match accuracy per split, the mean executed depth of the test answer
tokens, their depth histogram, the share of the most common depth (``modal_share``: 1.0 means
the router collapsed to one depth) and the three features whose Spearman correlation with the
expected depth is strongest (test answer tokens, pairing t−1, with 95 % bootstrap intervals from
``anira.analysis.alignment``; none for a fixed router). The setting is chosen as the paper does,
on ``val`` only: the ANIRA-E run with the best val accuracy (the online runs when no early one
was swept); ``test`` is for reporting. Results go to
``benchmarks/results/router_sweep_<task>.json`` and a table is printed. A BREVO run (2,400 steps)
takes 2 to 7 minutes on the project's idle 2-core CPU, two at a time (fixed D' = 1 to online).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from anira.analysis.alignment import COLUMNS as ALIGNMENT_COLUMNS
from anira.analysis.alignment import DEPTHS, alignment_table
from anira.analysis.records import load_records
from anira.io import atomic_write_json, measured_on
from anira.layout import SPLITS, TEST, TRAIN, record_file
from anira.spec import compose_run

ROOT = Path(__file__).resolve().parents[1]
EVAL_SPLITS = [split for split in SPLITS if split != TRAIN]


def run(args: list[str], log: Path) -> None:
    with log.open("w") as stream:
        result = subprocess.run(
            [sys.executable, "-m", *args], cwd=ROOT, stdout=stream, stderr=subprocess.STDOUT
        )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} … failed; see {log}")


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def settings(text: str) -> list[tuple[float, float]]:
    """``"γ:b,γ:b"`` → [(γ, b), …]."""
    pairs = [item.split(":") for item in text.split(",")]
    if any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected γ:b pairs separated by commas, got {text!r}")
    return [(float(gamma), float(base)) for gamma, base in pairs]


def summarize(eval_dir: Path) -> dict:
    """Exact accuracy per split and the depth distribution of the test answer tokens."""
    row: dict = {}
    for split in EVAL_SPLITS:
        path = eval_dir / record_file(split, "examples")
        if path.exists():
            correct = pd.read_parquet(path, columns=["correct"])["correct"]
            row[f"accuracy_{split}"] = float(correct.mean())
    columns = ["is_answer", "executed_depth", "expected_depth"]
    tokens = pd.read_parquet(eval_dir / record_file(TEST, "tokens"), columns=columns)
    answers = tokens[tokens["is_answer"]]
    histogram = answers["executed_depth"].value_counts(normalize=True).sort_index()
    row["mean_executed_depth"] = float(answers["executed_depth"].mean())
    row["mean_expected_depth"] = float(answers["expected_depth"].mean())
    row["depth_histogram"] = {int(d): round(float(p), 4) for d, p in histogram.items()}
    row["modal_share"] = float(histogram.max())
    row["strongest_alignment"] = strongest_alignment(eval_dir)
    return row


def strongest_alignment(eval_dir: Path, top: int = 3) -> list[dict]:
    """The ``top`` features by |Spearman| with expected depth (test answer tokens, pairing t−1)."""
    tokens = load_records([eval_dir], "tokens", [TEST], columns=ALIGNMENT_COLUMNS)
    expected = ("t-1", "expected")
    table = alignment_table(tokens, depths={expected: DEPTHS[expected]})
    chosen = table[table["method"] == "spearman"].dropna(subset=["estimate"])
    strongest = chosen.loc[chosen["estimate"].abs().sort_values(ascending=False).index[:top]]
    return [
        {
            "feature": row.feature,
            "spearman": round(float(row.estimate), 3),
            "ci": [round(float(row.ci_low), 3), round(float(row.ci_high), 3)],
        }
        for row in strongest.itertuples()
    ]


def choose(rows: list[dict]) -> dict:
    """The best val accuracy among the ANIRA-E rows (all rows if none is early); ties go to the
    smaller γ, then the smaller b."""
    candidates = [r for r in rows if r["router"] == "early"] or rows
    best = max(candidates, key=lambda r: (r["accuracy_val"], -r["gamma"], -r["prior_base"]))
    keys = ("router", "gamma", "prior_base", "inference_rule", "accuracy_val", "accuracy_test")
    return {key: best[key] for key in keys}


def sweep_grid(
    task: str, routers: list[str], pairs: list[tuple[float, float]], overrides: list[str]
) -> list[tuple[str, float, float]]:
    """(router, γ, b) of every run. A fixed-depth router has no q for γ and b to shape, so it is
    trained once (γ = 0, b = 1) rather than once per pair."""
    grid = []
    for router in routers:
        fixed = compose_run(task, router, "mini", 0, tuple(overrides)).model.router == "fixed"
        grid += [(router, gamma, base) for gamma, base in ([(0.0, 1.0)] if fixed else pairs)]
    return grid


def sweep_one(
    task: str, router: str, gamma: float, base: float, rules: list[str], paths: dict, extra: list
) -> list[dict]:
    name = f"{router}_g{gamma:g}_b{base:g}"
    ckpt, logs = paths["work"] / name, paths["logs"]
    start = time.perf_counter()
    run(
        [
            "anira.train",
            f"task={task}",
            f"router={router}",
            "seed=0",
            "scale=mini",
            f"data_dir={paths['data']}",
            f"out_dir={ckpt}",
            f"threads={paths['threads']}",
            f"router.gamma={gamma}",
            f"router.prior_base={base}",
            *extra,
        ],
        logs / f"{name}.train.log",
    )
    train_seconds = time.perf_counter() - start
    rows = []
    for rule in rules:
        eval_dir = paths["work"] / f"{name}_eval_{rule}"
        run(
            [
                "anira.evaluate",
                f"checkpoint={ckpt}",
                f"data_dir={paths['data']}",
                f"out_dir={eval_dir}",
                f"threads={paths['threads']}",
                f"splits=[{','.join(EVAL_SPLITS)}]",
                *([f"inference_rule={rule}"] if router == "online" else []),
            ],
            logs / f"{name}_{rule}.eval.log",
        )
        rows.append(
            {
                "task": task,
                "router": router,
                "gamma": gamma,
                "prior_base": base,
                "inference_rule": rule,
                "train_seconds": round(train_seconds, 1),
                **summarize(eval_dir),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="brevo")
    parser.add_argument("--routers", default="early,online")
    parser.add_argument("--gammas", type=floats, default=floats("0.001,0.01,0.1"))
    parser.add_argument("--bases", type=floats, default=floats("1,2"))
    parser.add_argument("--settings", type=settings, help="γ:b pairs, instead of the product")
    parser.add_argument("--online-rules", default="median,mode")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--data-dir", help="an anira.generate output to reuse (task, scale mini)")
    parser.add_argument("--keep", help="keep checkpoints, evaluation records and logs here")
    parser.add_argument("--out", help="default: benchmarks/results/router_sweep_<task>.json")
    parser.add_argument("overrides", nargs="*", help="key=value passed to every training run")
    args = parser.parse_args()
    out = Path(args.out or ROOT / f"benchmarks/results/router_sweep_{args.task}.json")
    # The alignment statistics run in this process while trainings run beside it: one BLAS thread,
    # as Snakemake gives its analysis jobs (measured: a weighted correlation of 27k tokens takes
    # 0.07 ms with one OpenBLAS thread and 4.5 ms with the default threads on the busy 2-core CPU).
    threadpool_limits(1)

    pairs = args.settings or list(itertools.product(args.gammas, args.bases))
    grid = sweep_grid(args.task, args.routers.split(","), pairs, args.overrides)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp).resolve()
        logs = work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        data = Path(args.data_dir) if args.data_dir else work / "data"
        if not args.data_dir:
            generate = ["anira.generate", f"task={args.task}", "scale=mini", "seed=0"]
            run([*generate, f"out_dir={data}"], logs / "generate.log")
        threads = max(1, (os.cpu_count() or 1) // args.jobs)
        paths = {"work": work, "logs": logs, "data": data.resolve(), "threads": threads}
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [
                pool.submit(
                    sweep_one,
                    args.task,
                    router,
                    gamma,
                    base,
                    args.online_rules.split(",") if router == "online" else ["default"],
                    paths,
                    args.overrides,
                )
                for router, gamma, base in grid
            ]
            for done, future in enumerate(as_completed(futures), 1):
                rows.extend(future.result())
                elapsed = time.perf_counter() - start
                eta = elapsed / done * (len(grid) - done)
                print(
                    f"[{done}/{len(grid)}] {rows[-1]['router']} γ={rows[-1]['gamma']:g} "
                    f"b={rows[-1]['prior_base']:g} done | {elapsed:.0f}s elapsed, ETA {eta:.0f}s",
                    flush=True,
                )

    rows.sort(key=lambda r: (r["router"], r["gamma"], r["prior_base"], r["inference_rule"]))
    table = pd.DataFrame(rows).drop(columns=["depth_histogram"])
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    for row in rows:
        print(
            f"{row['router']:<7} γ={row['gamma']:<6g} b={row['prior_base']:<3g} "
            f"{row['inference_rule']:<7} depths {row['depth_histogram']}"
        )
    chosen = choose(rows)
    atomic_write_json(
        out,
        {
            **measured_on(
                [
                    f"config/task/{args.task}.yaml",
                    *(f"config/router/{router}.yaml" for router in args.routers.split(",")),
                    "config/router/fixed.yaml",
                    "config/scale/mini.yaml",
                    "config/generate.yaml",
                    "config/train.yaml",
                    "config/evaluate.yaml",
                    "config/grammars/*",
                ]
            ),
            "overrides": args.overrides,
            "chosen_on_val": chosen,
            "rows": rows,
        },
    )
    print(
        f"chosen on val: {chosen['router']} γ={chosen['gamma']:g} b={chosen['prior_base']:g} "
        f"(val {chosen['accuracy_val']:.3f}, test {chosen['accuracy_test']:.3f})"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
