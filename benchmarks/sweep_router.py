"""Accuracy and depth of the adaptive routers over a γ × b grid (the router-collapse check).

    python benchmarks/sweep_router.py [--task brevo] [--routers early,online]
                                      [--gammas 0.001,0.01,0.1] [--bases 1,2]
                                      [--settings γ:b,…] [--fixed-seeds 0,1] [--jobs 2]
                                      [--data-dir DIR] [--keep DIR] [--from-keep DIR]
                                      [--include FILE] [--out FILE] [override ...]

Generates the task's ``mini`` dataset once (seed 0; ``--data-dir`` reuses one), then trains and
evaluates one model per router × γ × b with the real Hydra apps (``anira.train`` with
``router.gamma=… router.prior_base=…``, then ``anira.evaluate``), ``--jobs`` at a time; trailing
``key=value`` arguments are passed to every training run (e.g. ``scale.train.steps=400``).
``--settings 0.001:2,0.01:1.2`` sweeps those (γ, b) pairs instead of the ``--gammas`` × ``--bases``
product; a fixed-depth router (``fixed``, ``fixed<D'>``) is trained once per seed of
``--fixed-seeds``, with γ = 0 and b = 1 (the adaptive routers at seed 0).
The online router is evaluated with every rule of ``--online-rules`` from the same
checkpoint. Checkpoints, evaluation records and logs are deleted at the end unless ``--keep DIR``
names a directory for them (e.g. to run further analyses on the records).

Per run it records exact-match accuracy per split, the mean executed depth of the test answer
tokens (and of the val ones, ``*_val``, which the selection reads), their depth histogram, the
share of the most common depth (``modal_share``: 1.0 means the router collapsed to one depth)
and the three features whose Spearman correlation with the
expected depth is strongest (test answer tokens, pairing t−1, with 95 % bootstrap intervals from
``anira.analysis.alignment``; none for a fixed router). Two choices, on ``val`` only (``test`` is
for reporting): ``chosen_on_val``, the paper's rule (the ANIRA-E run with the best val accuracy;
the online runs when no early one was swept), and, with ≥ 2 seeds of ``fixed``,
``chosen_compute_aware``, the study's rule (:func:`choose_compute_aware`). ``--include FILE``
adds the rows of an earlier sweep of the same task and training (e.g. a seed of fixed D) to
choose among; ``--from-keep DIR`` trains nothing and summarises the finished runs a ``--keep``
directory holds (an interrupted sweep). A failed run is reported and left out. Results go to
``benchmarks/results/router_sweep_<task>.json`` and a table is printed. A BREVO run (2,400 steps)
takes 2 to 7 minutes on the project's idle 2-core CPU, two at a time (fixed D' = 1 to online).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from anira.analysis.alignment import COLUMNS as ALIGNMENT_COLUMNS
from anira.analysis.alignment import DEPTHS, alignment_table
from anira.analysis.records import load_records
from anira.io import atomic_write_json, machine_info, measured_on
from anira.layout import MANIFEST, SPLITS, TEST, TRAIN, VAL, record_file
from anira.spec import compose_run

ROOT = Path(__file__).resolve().parents[1]
CHOICE_KEYS = ("router", "gamma", "prior_base", "inference_rule", "accuracy_val", "accuracy_test")
ALLOCATES = 0.8  # a router allocates when its mean executed depth is at most this share of D
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
    row.update(depth_summary(eval_dir, TEST))
    # The selection rules read the compute on val, where the setting is chosen.
    row.update({f"{key}_{VAL}": value for key, value in depth_summary(eval_dir, VAL).items()})
    row["strongest_alignment"] = strongest_alignment(eval_dir)
    return row


def depth_summary(eval_dir: Path, split: str) -> dict:
    """Mean executed and expected depth of one split's answer tokens, their executed-depth
    histogram and the share of its most common depth."""
    columns = ["is_answer", "executed_depth", "expected_depth"]
    tokens = pd.read_parquet(eval_dir / record_file(split, "tokens"), columns=columns)
    answers = tokens[tokens["is_answer"]]
    histogram = answers["executed_depth"].value_counts(normalize=True).sort_index()
    return {
        "mean_executed_depth": float(answers["executed_depth"].mean()),
        "mean_expected_depth": float(answers["expected_depth"].mean()),
        "depth_histogram": {int(d): round(float(p), 4) for d, p in histogram.items()},
        "modal_share": float(histogram.max()),
    }


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
    """The paper's rule: the best val accuracy among the ANIRA-E rows (all rows if none is
    early); ties go to the smaller γ, then the smaller b."""
    candidates = [r for r in rows if r["router"] == "early"] or rows
    best = max(candidates, key=lambda r: (r["accuracy_val"], -r["gamma"], -r["prior_base"]))
    return {key: best[key] for key in CHOICE_KEYS}


def choose_compute_aware(rows: list[dict], max_depth: int, reference: str = "fixed") -> dict:
    """The study's rule, declared before the LANO grid's results were in. Among the ANIRA-E rows
    (all adaptive rows if none is early) with a val depth:

    1. ``within_noise``: those whose val accuracy is within the seed noise of the fixed-depth-D
       router ``reference`` — measured, not assumed: two standard deviations of its val accuracy
       over its seeds (≥ 2 needed), below their mean — the one with the least mean executed depth
       on val (ties: the better accuracy);
    2. else ``allocating``: no setting keeps fixed D's accuracy at lower compute (a finding); among
       those that allocate (mean executed depth on val ≤ ``ALLOCATES`` · D), the best val accuracy,
       so that the controls at matched compute compare a router that does allocate;
    3. else ``best_accuracy``: none allocates either; the paper's rule (:func:`choose`)."""
    accuracies = np.array([r["accuracy_val"] for r in rows if r["router"] == reference])
    if len(accuracies) < 2:
        raise ValueError(
            f"the compute-aware rule needs ≥ 2 seeds of {reference}, got {len(accuracies)}"
        )
    # Rows of older sweeps (--include) without a val depth cannot be ranked on val.
    adaptive = [r for r in rows if r["gamma"] > 0 and "mean_executed_depth_val" in r]
    candidates = [r for r in adaptive if r["router"] == "early"] or adaptive
    noise = 2 * float(accuracies.std(ddof=1))
    threshold = float(accuracies.mean()) - noise
    admissible = [r for r in candidates if r["accuracy_val"] >= threshold]
    allocating = [r for r in candidates if r["mean_executed_depth_val"] <= ALLOCATES * max_depth]
    if admissible:
        step = "within_noise"
        best = min(admissible, key=lambda r: (r["mean_executed_depth_val"], -r["accuracy_val"]))
    elif allocating:
        step = "allocating"
        best = max(allocating, key=lambda r: (r["accuracy_val"], -r["mean_executed_depth_val"]))
    else:
        step, best = "best_accuracy", max(candidates, key=lambda r: r["accuracy_val"])
    keys = (*CHOICE_KEYS, "mean_executed_depth_val", "modal_share_val")
    return {
        "reference": reference,
        "reference_val_accuracies": accuracies.tolist(),
        "noise": noise,
        "threshold": threshold,
        "admissible": len(admissible),
        "allocating": len(allocating),
        "step": step,
        "chosen": {key: best[key] for key in keys},
    }


def sweep_grid(
    task: str,
    routers: list[str],
    pairs: list[tuple[float, float]],
    fixed_seeds: list[int],
    overrides: list[str],
) -> list[tuple[str, float, float, int]]:
    """(router, γ, b, seed) of every run. A fixed-depth router has no q for γ and b to shape, so it
    is trained once per seed of ``fixed_seeds`` (γ = 0, b = 1) rather than once per pair; the
    adaptive routers are trained at seed 0."""
    grid = []
    for router in routers:
        fixed = compose_run(task, router, "mini", 0, tuple(overrides)).model.router == "fixed"
        if fixed:
            grid += [(router, 0.0, 1.0, seed) for seed in fixed_seeds]
        else:
            grid += [(router, gamma, base, 0) for gamma, base in pairs]
    return grid


def sweep_one(
    task: str,
    router: str,
    gamma: float,
    base: float,
    seed: int,
    rules: list[str],
    paths: dict,
    extra: list,
) -> list[dict]:
    name = f"{router}_g{gamma:g}_b{base:g}_seed{seed}"
    ckpt, logs = paths["work"] / name, paths["logs"]
    start = time.perf_counter()
    run(
        [
            "anira.train",
            f"task={task}",
            f"router={router}",
            f"seed={seed}",
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
                "seed": seed,
                "inference_rule": rule,
                "train_seconds": round(train_seconds, 1),
                **summarize(eval_dir),
            }
        )
    return rows


def run_grid(args: argparse.Namespace, grid: list, out: Path) -> list[dict]:
    """Train and evaluate every (router, γ, b, seed) of ``grid``; a failed run is reported and
    left out (its log says why), the others go on."""
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
            futures = {
                pool.submit(
                    sweep_one,
                    args.task,
                    router,
                    gamma,
                    base,
                    seed,
                    args.online_rules.split(",") if router == "online" else ["default"],
                    paths,
                    args.overrides,
                ): (router, gamma, base, seed)
                for router, gamma, base, seed in grid
            }
            for done, future in enumerate(as_completed(futures), 1):
                router, gamma, base, seed = futures[future]
                try:
                    rows.extend(future.result())
                    status = "done"
                except RuntimeError as err:
                    status = f"failed ({err})"
                # Rows so far, so that a late failure keeps the finished runs.
                atomic_write_json(out, {"machine": machine_info(), "rows": rows})
                elapsed = time.perf_counter() - start
                eta = elapsed / done * (len(grid) - done)
                print(
                    f"[{done}/{len(grid)}] {router} γ={gamma:g} b={base:g} seed {seed} {status}"
                    f" | {elapsed:.0f}s elapsed, ETA {eta:.0f}s",
                    flush=True,
                )
    return rows


RUN_NAME = re.compile(
    r"(?P<router>\w+?)_g(?P<gamma>[\d.e-]+)_b(?P<base>[\d.e-]+)_seed(?P<seed>\d+)_eval_(?P<rule>\w+)"
)


def rows_from_keep(work: Path, task: str) -> list[dict]:
    """The rows of a sweep kept with ``--keep`` (e.g. one that was interrupted), from its
    finished evaluations; the training time comes from each training's log."""
    rows = []
    for eval_dir in sorted(work.glob("*_eval_*")):
        name = RUN_NAME.fullmatch(eval_dir.name)
        if name is None or not (eval_dir / MANIFEST).exists():
            continue
        log = work / "logs" / f"{eval_dir.name.split('_eval_')[0]}.train.log"
        wrote = re.search(r"^wrote .* in (\S+)$", log.read_text(), re.MULTILINE)
        rows.append(
            {
                "task": task,
                "router": name["router"],
                "gamma": float(name["gamma"]),
                "prior_base": float(name["base"]),
                "seed": int(name["seed"]),
                "inference_rule": name["rule"],
                "train_duration": wrote[1] if wrote else None,
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
    parser.add_argument(
        "--fixed-seeds",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[0],
        help="seeds of each fixed-depth router (≥ 2 of `fixed` for the compute-aware rule)",
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--data-dir", help="an anira.generate output to reuse (task, scale mini)")
    parser.add_argument("--keep", help="keep checkpoints, evaluation records and logs here")
    parser.add_argument("--out", help="default: benchmarks/results/router_sweep_<task>.json")
    parser.add_argument(
        "--from-keep", help="no training: the rows of the runs a --keep directory holds"
    )
    parser.add_argument(
        "--include",
        action="append",
        help="rows of an earlier sweep JSON (same task and training) to choose among too",
    )
    parser.add_argument("overrides", nargs="*", help="key=value passed to every training run")
    args = parser.parse_args()
    out = Path(args.out or ROOT / f"benchmarks/results/router_sweep_{args.task}.json")
    # The alignment statistics run in this process while trainings run beside it: one BLAS thread,
    # as Snakemake gives its analysis jobs (measured: a weighted correlation of 27k tokens takes
    # 0.07 ms with one OpenBLAS thread and 4.5 ms with the default threads on the busy 2-core CPU).
    threadpool_limits(1)

    if args.from_keep:
        rows = rows_from_keep(Path(args.from_keep), args.task)
    else:
        pairs = args.settings or list(itertools.product(args.gammas, args.bases))
        grid = sweep_grid(
            args.task, args.routers.split(","), pairs, args.fixed_seeds, args.overrides
        )
        rows = run_grid(args, grid, out)
    for path in args.include or []:
        earlier = json.loads(Path(path).read_text())["rows"]
        rows += [{"seed": 0, "included_from": path} | row for row in earlier]
    rows.sort(
        key=lambda r: (r["router"], r["gamma"], r["prior_base"], r["seed"], r["inference_rule"])
    )
    histograms = ["depth_histogram", "depth_histogram_val", "strongest_alignment"]
    table = pd.DataFrame(rows).drop(columns=histograms, errors="ignore")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    for row in rows:
        print(
            f"{row['router']:<7} γ={row['gamma']:<6g} b={row['prior_base']:<3g} "
            f"{row['inference_rule']:<7} val depths {row.get('depth_histogram_val')}"
        )
    chosen = choose(rows)
    fixed_seeds = sum(r["router"] == "fixed" for r in rows)
    adaptive = any(r["gamma"] > 0 for r in rows)  # none in a learning-rate check of fixed depth
    max_depth = compose_run(args.task, "fixed", "mini", 0, tuple(args.overrides)).model.max_depth
    compute_aware = choose_compute_aware(rows, max_depth) if fixed_seeds >= 2 and adaptive else None
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
            "chosen_compute_aware": compute_aware,
            "rows": rows,
        },
    )
    if compute_aware is not None:
        print(f"compute-aware rule: {compute_aware}")
    print(
        f"chosen on val: {chosen['router']} γ={chosen['gamma']:g} b={chosen['prior_base']:g} "
        f"(val {chosen['accuracy_val']:.3f}, test {chosen['accuracy_test']:.3f})"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
