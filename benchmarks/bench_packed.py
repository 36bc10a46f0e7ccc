"""Packed vs dense execution of the recurrent core: measured speed-up against its limit.

    python benchmarks/bench_packed.py [--quick] [--models mini,paper] [--out FILE]

Three sections, all on synthetic tokens with *forced* per-token depths (``model(tokens, depth=…)``),
so that the depth distribution is the only thing that varies:

- ``rows``: for D = 6 and D = 14, mean executed depth from 1 to D (the ``paper`` model: the means
  of the closing note only), batch 1 and a training batch, forward and forward+backward:
  * core time: the D iterations of the core alone (``DenseExecutor`` vs ``PackedExecutor``), with
    theoretical speed-up D ÷ mean depth;
  * whole-model time (embedding, prelude, router head, core, coda, LM head; + loss and backward),
    with the Amdahl bound flops(every token at D) ÷ flops(these depths) from ``AniraModel.flops``;
  * efficiency = measured ÷ theoretical speed-up.
  Depths per token are 1 + Binomial(D−1, (m−1)/(D−1)) (mean m, ragged), and one token is set to D
  so that the dense path really runs D iterations (it stops early once every token has halted).
  Dense, packed and auto runs of a row are timed round-robin, so a busy spell of the shared
  machine slows them alike.
- ``crossover``: one core step with a random fraction f of the tokens active (the rest long
  halted), for the mini model at batches of 1, 4, 16 and 64 sequences and the paper model at 1 and
  16: the active fraction below which packed is faster (``crossing``), forward and
  forward+backward, keyed by the step's work B·T·d_model². Stored as ``crossover_table``, which
  ``execution=auto`` reads (``anira.model.execution.measured_crossover``) to pick a step's path
  per iteration (the ``model_auto_ms`` column).
- ``training``: tokens/s of a full training step (forward, loss, backward, AdamW) of the mini
  model, dense vs packed vs auto, at the mean depths given by ``--train-depths`` (default: those
  the mini BREVO models trained by this project used, see ``DEFAULT_TRAIN_DEPTHS``).

The crossover section runs first, and the ``auto`` runs of the same invocation use the table it
has just measured (printed as ``crossover_table = …``; writing the default ``--out`` makes it the
one ``execution=auto`` reads).

Models: ``mini`` (d_model 64, 4 heads: the mini scale, ≈0.17M parameters) and ``paper``
(d_model 576, 9 heads: ≈13.7M parameters, the paper's larger synthetic model). Sequences of 40
tokens; training batch 64 (mini) and 16 (paper, to keep the CPU run short). Times are medians.
Results go to ``benchmarks/results/packed.json`` with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from anira.io import atomic_write_json, measured_on
from anira.model import AniraModel, ModelConfig
from anira.model.execution import PASSES, DenseExecutor, PackedExecutor, crossover_at

ROOT = Path(__file__).resolve().parents[1]
VOCAB, SEQ_LEN = 64, 40
MODELS = {
    "mini": {"d_model": 64, "n_heads": 4, "train_batch": 64, "means": None},
    "paper": {"d_model": 576, "n_heads": 9, "train_batch": 16, "means": {6: (2, 3), 14: (4, 7)}},
}
# Mean executed depth (answer tokens) of the mini BREVO models trained with this code (D = 6):
# ANIRA-E ≈ 3.65 and ANIRA-O ≈ 3.3 at the end of `python -m anira.train … scale=mini` (800 steps).
DEFAULT_TRAIN_DEPTHS = {6: (3.3, 3.65)}


def timed(fns, min_time: float, min_reps: int, clock=time.perf_counter) -> list[float]:
    """Median seconds of each function in ``fns``, called round-robin (so that a slow spell of
    the machine hits all of them alike) after one warm-up call each, ≥ min_reps rounds and
    ≥ min_time seconds in all. ``clock``: wall time, or ``time.process_time`` (this process's
    CPU time: with one thread, immune to other processes sharing the cores)."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    while len(times[0]) < min_reps or sum(map(sum, times)) < min_time:
        for fn, bucket in zip(fns, times, strict=True):
            start = clock()
            fn()
            bucket.append(clock() - start)
    return [statistics.median(bucket) for bucket in times]


def depths(batch: int, max_depth: int, mean: float, seed: int) -> torch.Tensor:
    """Ragged depths with mean ≈ ``mean``; one token at D so the dense path runs all D steps."""
    shape = (batch, SEQ_LEN)
    if max_depth == 1:
        return torch.ones(shape, dtype=torch.long)
    p = torch.full(shape, (mean - 1) / (max_depth - 1))
    g = torch.Generator().manual_seed(seed)
    d = 1 + torch.binomial(torch.full(shape, float(max_depth - 1)), p, generator=g).long()
    d[0, -1] = max_depth
    return d


def build(name: str, max_depth: int) -> AniraModel:
    spec = MODELS[name]
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=VOCAB,
        max_seq_len=SEQ_LEN,
        d_model=spec["d_model"],
        n_heads=spec["n_heads"],
        max_depth=max_depth,
        router="early",
        execution="dense",
    )
    return AniraModel(cfg)


def core_runner(model: AniraModel, tokens, depth, mode: str, backward: bool):
    """The core iterations alone, from a fixed prelude output."""
    cos, sin = model.rope_cos[:SEQ_LEN], model.rope_sin[:SEQ_LEN]
    with torch.no_grad():
        e = model.prelude(model.embed(tokens), cos, sin)
    e.requires_grad_(backward)
    grad = torch.randn_like(e)
    packed_cfg = dataclasses.replace(model.cfg, execution="packed")

    def run() -> None:
        with torch.set_grad_enabled(backward):
            if mode == "dense":
                executor = DenseExecutor(model.core_steps, e, cos, sin, "frozen")
            else:
                executor = PackedExecutor(model.core_steps, e, cos, sin, packed_cfg)
            s = e
            for r in range(1, model.cfg.max_depth + 1):
                if not bool((depth >= r).any()):
                    break
                s = executor.step(s, depth, r)
            if backward:
                model.zero_grad(set_to_none=True)
                s.backward(grad)

    return run


def model_runner(model: AniraModel, tokens, depth, mode: str, backward: bool, crossover=None):
    """The whole model; ``crossover``: the ``packed_crossover`` of an ``auto`` run."""
    answer = torch.ones_like(tokens, dtype=torch.bool)

    def run() -> None:
        model.cfg.execution, model.cfg.packed_crossover = mode, crossover
        if backward:
            model.train()
            model.zero_grad(set_to_none=True)
            out = model(tokens, depth=depth)
            model.loss(out, tokens, answer)[0].backward()
        else:
            model.eval()
            with torch.no_grad():
                model(tokens, depth=depth)

    return run


def amdahl_bound(model: AniraModel, tokens, depth) -> float:
    valid = tokens != 0
    full = SimpleNamespace(depth=torch.full_like(depth, model.cfg.max_depth), valid=valid)
    return (
        model.flops(full)["flops"] / model.flops(SimpleNamespace(depth=depth, valid=valid))["flops"]
    )


def auto_crossover(table, pass_: str, batch: int, d_model: int) -> float:
    """The crossover of ``table`` (this invocation's measurement) that ``execution=auto`` would
    read from the stored table for a core step of ``batch`` sequences."""
    return crossover_at(table[pass_], batch * SEQ_LEN * d_model**2)


def speed_rows(name: str, quick: bool, min_time: float, table) -> list[dict[str, Any]]:
    rows = []
    spec = MODELS[name]
    min_reps = 2 if name == "paper" else 3
    for max_depth in (6, 14):
        model = build(name, max_depth)
        means = spec["means"][max_depth] if spec["means"] else range(1, max_depth + 1)
        if quick:
            means = [m for m in means if m in (2, 3, 4, 7)]
        for batch in (1, spec["train_batch"]):
            tokens = torch.randint(1, VOCAB, (batch, SEQ_LEN), generator=torch.Generator())
            for pass_ in PASSES:
                backward = pass_ == "forward_backward"
                crossover = auto_crossover(table, pass_, batch, model.cfg.d_model)
                full = torch.full_like(tokens, max_depth)
                for mean in means:
                    depth = depths(batch, max_depth, mean, seed=mean)
                    actual = depth.float().mean().item()
                    core_dense, core_packed = timed(
                        [
                            core_runner(model, tokens, full, "dense", backward),
                            core_runner(model, tokens, depth, "packed", backward),
                        ],
                        min_time,
                        min_reps,
                    )
                    whole_dense, whole_packed, whole_auto = timed(
                        [
                            model_runner(model, tokens, full, "dense", backward),
                            model_runner(model, tokens, depth, "packed", backward),
                            model_runner(model, tokens, depth, "auto", backward, crossover),
                        ],
                        min_time,
                        min_reps,
                    )
                    core_theory = max_depth / actual
                    whole_theory = amdahl_bound(model, tokens, depth)
                    row = {
                        "model": name,
                        "params": model.num_params(),
                        "D": max_depth,
                        "batch": batch,
                        "pass": pass_,
                        "mean_depth": round(actual, 3),
                        "core_dense_ms": 1e3 * core_dense,
                        "core_packed_ms": 1e3 * core_packed,
                        "core_speedup": core_dense / core_packed,
                        "core_theory": core_theory,
                        "core_efficiency": core_dense / core_packed / core_theory,
                        "model_dense_ms": 1e3 * whole_dense,
                        "model_packed_ms": 1e3 * whole_packed,
                        "model_speedup": whole_dense / whole_packed,
                        "model_theory": whole_theory,
                        "model_efficiency": whole_dense / whole_packed / whole_theory,
                        "model_auto_ms": 1e3 * whole_auto,
                    }
                    rows.append(row)
                    print_row(row)
    return rows


def step_runner(model: AniraModel, e, depth, mode: str, backward: bool):
    """Iteration 3 of the core alone, after two untimed iterations fill the key/value cache."""
    cos, sin = model.rope_cos[:SEQ_LEN], model.rope_sin[:SEQ_LEN]
    cfg = dataclasses.replace(model.cfg, execution="packed")
    with torch.no_grad():
        if mode == "dense":
            ex = DenseExecutor(model.core_steps, e, cos, sin, "frozen")
        else:
            ex = PackedExecutor(model.core_steps, e, cos, sin, cfg)
        s = ex.step(ex.step(e, depth, 1), depth, 2)
    s.requires_grad_(backward)
    grad = torch.randn_like(s)
    cache = getattr(ex, "k", None), getattr(ex, "v", None)

    def run() -> None:
        if mode == "packed":
            ex.k, ex.v = cache  # the cache as left by iteration 2, every call
        with torch.set_grad_enabled(backward):
            new = ex.step(s, depth, 3)
            if backward:
                model.zero_grad(set_to_none=True)
                new.backward(grad)

    return run


CROSSOVER_POINTS = (("mini", (1, 4, 16, 64), 0.05), ("paper", (1, 16), 0.1))  # batches, f step


def crossover(min_time: float) -> dict[str, Any]:
    """Iteration 3 of the core with a fraction f of the tokens active (the others halted at
    iteration 1, so their keys/values are cached), for several models and batch sizes. Each point
    is keyed by its work B·T·d_model², on which the crossover depends (fixed per-step overhead
    against matmul work)."""
    out: dict[str, Any] = {}
    for name, batches, step in CROSSOVER_POINTS:
        model = build(name, 6)
        cos, sin = model.rope_cos[:SEQ_LEN], model.rope_sin[:SEQ_LEN]
        fractions = [round(step * i, 2) for i in range(1, round(1 / step) + 1)]
        for batch in batches:
            g = torch.Generator().manual_seed(batch)
            tokens = torch.randint(1, VOCAB, (batch, SEQ_LEN), generator=g)
            with torch.no_grad():
                e = model.prelude(model.embed(tokens), cos, sin)
            for pass_ in PASSES:
                backward = pass_ == "forward_backward"
                ratios = []
                for f in fractions:
                    n_active = max(1, round(f * tokens.numel()))
                    chosen = torch.randperm(tokens.numel(), generator=g)[:n_active]
                    depth = torch.ones(tokens.numel(), dtype=torch.long).index_fill(0, chosen, 6)
                    depth = depth.view_as(tokens)
                    runs = [step_runner(model, e, depth, m, backward) for m in ("dense", "packed")]
                    dense, packed = timed(runs, min_time / 3, 5)
                    ratios.append(dense / packed)
                work = tokens.numel() * model.cfg.d_model**2
                point = {
                    "model": name,
                    "batch": batch,
                    "tokens": tokens.numel(),
                    "work": work,
                    "pass": pass_,
                    "fractions": fractions,
                    "dense_over_packed": ratios,
                    "crossover": crossing(fractions, ratios),
                }
                out[f"{pass_}/{work}"] = point
                steps = " ".join(f"{f}:{r:.2f}" for f, r in zip(fractions, ratios, strict=True))
                print(
                    f"crossover {name} batch {batch} {pass_} (work {work:.2e}): "
                    f"{point['crossover']:.2f}  [dense/packed time by active fraction {steps}]",
                    flush=True,
                )
    return out


def crossing(fractions: list[float], ratios: list[float]) -> float:
    """The threshold c that maximises the time saved by running packed below c and dense above:
    argmax over c of Σ_{f ≤ c} log(dense/packed at f) (robust to a noisy point); 0.0 when packed
    never pays. Example: ratios (3, 1.5, 0.9, 1.1, 0.7) at f = 0.2, 0.4, …, 1.0 give the running
    sums (1.10, 1.50, 1.40, 1.49, 1.14) → c = 0.4."""
    best, best_c, total = 0.0, 0.0, 0.0
    for f, ratio in zip(fractions, ratios, strict=True):
        total += math.log(ratio)
        if total > best:
            best, best_c = total, f
    return best_c


def train_step_runner(model: AniraModel, depth):
    """A full training step: forward with forced depths, loss, backward, AdamW."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(1, VOCAB, depth.shape, generator=torch.Generator().manual_seed(0))
    answer = torch.ones_like(tokens, dtype=torch.bool)

    def run() -> None:
        out = model(tokens, depth=depth)
        loss, _ = model.loss(out, tokens, answer)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run


def training(train_depths: dict[int, tuple[float, ...]], min_time: float, table) -> list[dict]:
    rows = []
    batch = MODELS["mini"]["train_batch"]
    for max_depth, means in train_depths.items():
        for mean in means:
            depth = depths(batch, max_depth, mean, seed=1)
            runs = {}
            for mode in ("dense", "packed", "auto"):
                model = build("mini", max_depth)
                model.cfg.execution = mode
                if mode == "auto":
                    model.cfg.packed_crossover = auto_crossover(
                        table, "forward_backward", batch, model.cfg.d_model
                    )
                runs[mode] = train_step_runner(model, depth)
            seconds = timed(list(runs.values()), 2 * min_time, 5)
            rates = {mode: depth.numel() / t for mode, t in zip(runs, seconds, strict=True)}
            row = {
                "D": max_depth,
                "mean_depth": round(depth.float().mean().item(), 3),
                "dense_tokens_per_s": rates["dense"],
                "packed_tokens_per_s": rates["packed"],
                "auto_tokens_per_s": rates["auto"],
                "speedup": rates["packed"] / rates["dense"],
            }
            rows.append(row)
            print(
                f"training step D={max_depth} mean depth {row['mean_depth']:.2f}: dense "
                f"{row['dense_tokens_per_s']:.0f} tok/s, packed {row['packed_tokens_per_s']:.0f} "
                f"tok/s, auto {row['auto_tokens_per_s']:.0f} tok/s, packed speed-up "
                f"{row['speedup']:.2f}"
            )
    return rows


HEADER = (
    f"{'model':6} {'D':>3} {'batch':>5} {'pass':16} {'depth':>6} | {'core dense':>10} "
    f"{'packed':>8} {'speedup':>7} {'theory':>6} {'eff':>5} | {'model dense':>11} {'packed':>8} "
    f"{'speedup':>7} {'bound':>6} {'eff':>5} | {'auto':>8}"
)


def print_row(r: dict[str, Any]) -> None:
    print(
        f"{r['model']:6} {r['D']:>3} {r['batch']:>5} {r['pass']:16} {r['mean_depth']:>6.2f} | "
        f"{r['core_dense_ms']:>8.2f}ms {r['core_packed_ms']:>6.2f}ms {r['core_speedup']:>7.2f} "
        f"{r['core_theory']:>6.2f} {r['core_efficiency']:>5.2f} | {r['model_dense_ms']:>9.2f}ms "
        f"{r['model_packed_ms']:>6.2f}ms {r['model_speedup']:>7.2f} {r['model_theory']:>6.2f} "
        f"{r['model_efficiency']:>5.2f} | {r['model_auto_ms']:>6.2f}ms",
        flush=True,
    )


def parse_train_depths(text: str) -> dict[int, tuple[float, ...]]:
    """``"6:1.3,3.5;14:4,7"`` → {6: (1.3, 3.5), 14: (4.0, 7.0)}."""
    out = {}
    for part in filter(None, text.split(";")):
        d, means = part.split(":")
        out[int(d)] = tuple(float(m) for m in means.split(","))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="mini,paper")
    parser.add_argument("--quick", action="store_true", help="mean depths 2, 3, 4, 7 only")
    parser.add_argument("--min-time", type=float, default=0.15, help="seconds per timing")
    parser.add_argument("--train-depths", default="", help='e.g. "6:1.3,3.5;14:4,7"')
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/packed.json"))
    args = parser.parse_args()
    train_depths = parse_train_depths(args.train_depths) or DEFAULT_TRAIN_DEPTHS

    start = time.perf_counter()
    cross = crossover(args.min_time)
    table = {
        pass_: {p["work"]: p["crossover"] for p in cross.values() if p["pass"] == pass_}
        for pass_ in PASSES
    }
    print(f"crossover_table = {table}")  # the auto runs below use this measurement
    print(HEADER)
    rows = []
    for name in args.models.split(","):
        rows += speed_rows(name, args.quick, args.min_time, table)
    result = {
        **measured_on(["config/scale/mini.yaml"]),
        "seq_len": SEQ_LEN,
        "crossover": cross,
        "crossover_table": table,
        "rows": rows,
        "training": training(train_depths, args.min_time, table),
    }
    result["seconds"] = time.perf_counter() - start
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out} in {result['seconds']:.0f}s")


if __name__ == "__main__":
    main()
