"""Training speed: a training step eager vs compiled, dense unroll vs packed; the packed core's
efficiency against its limit; and (optionally) whole training runs.

    python benchmarks/bench_train.py [--sections efficiency,steps] [--models mini,paper]
                                     [--paper-batch 128] [--min-time 2] [--out FILE]
    python benchmarks/bench_train.py --sections runs [--task brevo] [--routers early,online]
                                     [--executions dense,packed,auto]

Synthetic tokens (sequences of 40, vocabulary 64), D = 6, the early router, forced per-token depths
(``model(tokens, depth=…)``) with mean ``--mean-depth`` (3.5: the trained mini BREVO models'
answers run 3.3–3.65), so that only the execution varies. Models: the scales' shapes
(config/scale/mini.yaml: d_model 64, 4 heads, batch 64; config/scale/paper.yaml: d_model 384,
6 heads, batch 128, ``--paper-batch`` to shrink it), one thread. Times are CPU time (user +
system) of this process and its finished children (``cpu_seconds``: inductor compiles in this
process and runs the C++ compiler as children), not wall time: on a shared machine other processes
stretch wall time, not the CPU time of a one-thread process. Medians of round-robin rounds
(``bench_packed.timed``); ratios are taken within one run.

- ``steps``: tokens/s of a full training step (forward, loss, backward, AdamW) for each model,
  path and compile setting: ``unroll`` (the paper's estimator: the dense unroll, every token runs
  all D iterations) and ``packed`` (the ``rescale_final`` estimator with ``execution=packed``: the
  executed depths only); eager and ``model.compile``. ``first_step_s`` is the first step's time
  (compilation included); ``compile_s`` = compiled minus eager first step; ``break_even_steps`` =
  compile_s ÷ the time a compiled step saves (None when it saves none), against the scale's
  ``scale_steps``.
- ``efficiency``: the core iterations alone (from a fixed prelude output), forward + backward as
  in training, at the training batch and mean depths ``--efficiency-depths`` (≤ D/2): the packed
  core's speed-up over the dense core (all D iterations) divided by its limit D / mean depth.
  Variants: ``packed_slots`` (every iteration's queries attend in slots: the packed step before
  ``SLOT_ATTENTION_LIMIT``), ``packed`` (the current step), ``auto`` (per-iteration dense/packed
  by the crossover stored in ``benchmarks/results/packed.json``) and ``packed_compiled`` (the
  current step under ``model.compile``, against the compiled dense core).
- ``runs`` (not by default: ≈1.5 min per run): ``python -m anira.train`` on the task's mini
  dataset (generated once, seed 0) for every router and execution, one after the other: wall time
  (process start to exit), steps/s, final logged accuracy and mean depth, speed-up over dense.

Results go to ``benchmarks/results/train.json`` with the machine they were measured on, written
after each model (a long run keeps what it has measured). The committed numbers come from two
runs on the shared CPU: ``--sections efficiency`` (train.json; its paper rows did not finish) and
``--sections steps --paper-batch 8 --min-time 0.3 --out benchmarks/results/train_steps.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch._functorch.config
import torch._inductor.config
from bench_evaluate import mini_dataset, mini_training, run_module
from bench_packed import depths, timed

from anira.io import atomic_write_json, measured_on
from anira.model import AniraModel, ModelConfig
from anira.model.execution import SLOT_ATTENTION_LIMIT, DenseExecutor, PackedExecutor

ROOT = Path(__file__).resolve().parents[1]
VOCAB, SEQ_LEN, MAX_DEPTH = 64, 40, 6
MODELS = {  # config/scale/<name>.yaml: model shape, training batch and steps
    "mini": {"d_model": 64, "n_heads": 4, "batch": 64, "steps": 800},
    "paper": {"d_model": 384, "n_heads": 6, "batch": 128, "steps": 250_000},
}
PATHS = {"unroll": ("unroll", "dense"), "packed": ("rescale_final", "packed")}


def build(name: str, estimator: str = "unroll", execution: str = "dense", compile=False):
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=VOCAB,
        max_seq_len=SEQ_LEN,
        d_model=MODELS[name]["d_model"],
        n_heads=MODELS[name]["n_heads"],
        max_depth=MAX_DEPTH,
        router="early",
        estimator=estimator,
        execution=execution,
        compile=compile,
    )
    return AniraModel(cfg).train()


def train_step(model: AniraModel, tokens: torch.Tensor, depth: torch.Tensor):
    """A full training step with forced depths: forward, loss, backward, AdamW."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    answer = torch.ones_like(tokens, dtype=torch.bool)

    def run() -> None:
        loss, _ = model.loss(model(tokens, depth=depth), tokens, answer)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have finished."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def first_call_seconds(fn) -> float:
    start = cpu_seconds()
    fn()
    return cpu_seconds() - start


def step_rows(name: str, batch: int, mean_depth: float, min_time: float) -> list[dict[str, Any]]:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, VOCAB, (batch, SEQ_LEN), generator=g)
    depth = depths(batch, MAX_DEPTH, mean_depth, seed=1)
    runs, first = {}, {}
    for path, (estimator, execution) in PATHS.items():
        for compiled in (False, True):
            run = train_step(build(name, estimator, execution, compiled), tokens, depth)
            first[path, compiled] = first_call_seconds(run)
            runs[path, compiled] = run
    times = timed(list(runs.values()), min_time, 3, cpu_seconds)
    seconds = dict(zip(runs, times, strict=True))
    rows = []
    for (path, compiled), t in seconds.items():
        row = {
            "model": name,
            "batch": batch,
            "mean_depth": round(depth.float().mean().item(), 3),
            "path": path,
            "compiled": compiled,
            "step_s": t,
            "tokens_per_s": tokens.numel() / t,
            "first_step_s": first[path, compiled],
            "speedup_vs_eager_unroll": seconds["unroll", False] / t,
        }
        if compiled:
            eager = seconds[path, False]
            row["compile_speedup"] = eager / t
            row["compile_s"] = first[path, True] - first[path, False]
            saved = eager - t
            row["break_even_steps"] = row["compile_s"] / saved if saved > 0 else None
            row["scale_steps"] = MODELS[name]["steps"]
        rows.append(row)
        print(
            f"step {name:5} B={batch:3} {path:6} {'compiled' if compiled else 'eager':8} "
            f"{row['tokens_per_s']:8.0f} tok/s  first step {row['first_step_s']:6.1f}s"
            + (
                f"  compile ×{row['compile_speedup']:.2f}, {row['compile_s']:.0f}s, break-even "
                + (f"{row['break_even_steps']:.0f} steps" if row["break_even_steps"] else "never")
                if compiled
                else ""
            ),
            flush=True,
        )
    return rows


def core_runner(model: AniraModel, tokens, depth, execution: str, slot_limit: float | None):
    """The core iterations alone, forward + backward, from a fixed prelude output."""
    cos, sin = model.rope_cos[:SEQ_LEN], model.rope_sin[:SEQ_LEN]
    with torch.no_grad():
        e = model.prelude(model.embed(tokens), cos, sin)
    e.requires_grad_(True)
    grad = torch.randn_like(e)
    cfg = dataclasses.replace(model.cfg, execution=execution)

    def run() -> None:
        if execution == "dense":
            executor = DenseExecutor(model.core_steps, e, cos, sin, "frozen")
        else:
            executor = PackedExecutor(model.core_steps, e, cos, sin, cfg)
            if slot_limit is not None:
                executor.slot_limit = slot_limit
        s = e
        for r in range(1, MAX_DEPTH + 1):
            s = executor.step(s, depth, r)
        model.zero_grad(set_to_none=True)
        s.backward(grad)

    return run


def efficiency_rows(name: str, batch: int, means: list[float], min_time: float) -> list[dict]:
    eager, compiled = build(name), build(name, compile=True)
    tokens = torch.randint(1, VOCAB, (batch, SEQ_LEN), generator=torch.Generator().manual_seed(0))
    full = torch.full_like(tokens, MAX_DEPTH)
    rows = []
    for mean in means:
        depth = depths(batch, MAX_DEPTH, mean, seed=1)
        variants = {  # name: (model, execution, slot limit)
            "dense": (eager, "dense", None),
            "packed_slots": (eager, "packed", float("inf")),
            "packed": (eager, "packed", None),
            "auto": (eager, "auto", None),
            "dense_compiled": (compiled, "dense", None),
            "packed_compiled": (compiled, "packed", None),
        }
        runs = [
            core_runner(model, tokens, full if execution == "dense" else depth, execution, slots)
            for model, execution, slots in variants.values()
        ]
        times = timed(runs, min_time, 3, cpu_seconds)
        ms = dict(zip(variants, (1e3 * t for t in times), strict=True))
        actual = depth.float().mean().item()
        limit = MAX_DEPTH / actual  # the core's speed-up if its time were ∝ token-steps
        row = {"model": name, "batch": batch, "mean_depth": round(actual, 3), "limit": limit}
        row.update({f"{v}_ms": t for v, t in ms.items()})
        for v in ("packed_slots", "packed", "auto"):
            row[f"{v}_efficiency"] = ms["dense"] / ms[v] / limit
        row["packed_compiled_efficiency"] = ms["dense_compiled"] / ms["packed_compiled"] / limit
        rows.append(row)
        print(
            f"efficiency {name:5} B={batch:3} mean depth {actual:.2f} (limit ×{limit:.2f}): "
            + "  ".join(
                f"{v} {row[f'{v}_efficiency']:.2f}"
                for v in ("packed_slots", "packed", "auto", "packed_compiled")
            ),
            flush=True,
        )
    return rows


def training_runs(task: str, routers: list[str], executions: list[str]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        run_module(mini_dataset(task, data))
        for router in routers:
            for execution in executions:
                out = Path(tmp) / f"{router}_{execution}"
                execute = f"scale.model.execution={execution}"
                _, seconds = run_module(mini_training(task, router, data, out, execute))
                last = [json.loads(line) for line in (out / "metrics.jsonl").open()][-1]
                row = {
                    "task": task,
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
                    f"run {task:6} {router:7} {execution:7} {seconds:7.1f}s "
                    f"{row['steps_per_s']:5.2f} steps/s  acc {row['final_answer_accuracy']:.3f}  "
                    f"depth {row['final_mean_depth']:.2f}",
                    flush=True,
                )
    for router in routers:
        base = next((r for r in rows if r["router"] == router and r["execution"] == "dense"), None)
        for r in rows:
            if base and r["router"] == router:
                r["speedup_vs_dense"] = base["seconds"] / r["seconds"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default="efficiency,steps", help="efficiency,steps,runs")
    parser.add_argument("--models", default="mini,paper")
    parser.add_argument("--paper-batch", type=int, default=MODELS["paper"]["batch"])
    parser.add_argument("--mean-depth", type=float, default=3.5)
    parser.add_argument("--efficiency-depths", default="2,3")
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds per timing")
    parser.add_argument("--task", default="brevo")
    parser.add_argument("--routers", default="early,online")
    parser.add_argument("--executions", default="dense,packed,auto")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/train.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # process CPU time then measures the work, whatever else runs
    # Cold compilation, as a fresh machine pays it (inductor's on-disk caches would let a second
    # process compiling the same graphs skip most of it), in this process (so it is CPU-timed).
    torch._inductor.config.fx_graph_cache = False
    torch._functorch.config.enable_autograd_cache = False
    torch._inductor.config.compile_threads = 1
    sections = args.sections.split(",")
    batches = {"mini": MODELS["mini"]["batch"], "paper": args.paper_batch}
    means = [float(m) for m in args.efficiency_depths.split(",")]

    start = time.perf_counter()
    result: dict[str, Any] = {
        **measured_on(["config/scale/*.yaml"]),
        "seq_len": SEQ_LEN,
        "max_depth": MAX_DEPTH,
        "slot_attention_limit": SLOT_ATTENTION_LIMIT,
    }
    models = args.models.split(",")
    measurements = {
        "efficiency": lambda name: efficiency_rows(name, batches[name], means, args.min_time),
        "steps": lambda name: step_rows(name, batches[name], args.mean_depth, args.min_time),
    }
    for section, rows_of in measurements.items():
        if section in sections:
            for name in models:  # written after each model: a long run keeps what it measured
                result.setdefault(section, []).extend(rows_of(name))
                result["seconds"] = time.perf_counter() - start
                atomic_write_json(Path(args.out), result)
    if "runs" in sections:
        result["runs"] = training_runs(
            args.task, args.routers.split(","), args.executions.split(",")
        )
    result["seconds"] = time.perf_counter() - start
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out} in {result['seconds']:.0f}s")


if __name__ == "__main__":
    main()
