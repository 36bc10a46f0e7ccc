"""The one GPU check of the paper study (≤ 8 minutes on one H100/H200): what only a GPU measures.

    python benchmarks/gpu_check.py [--out benchmarks/results/gpu.json] [--steps 5] [--mini]

Refuses to run (one ``error:`` line, exit status 2) without a CUDA device. Sections, each timed
with CUDA events after warm-up steps, freshly initialised models (speed and memory do not depend
on the weights), the paper's model (``config/scale/paper.yaml``) with each task's D:

- ``train``: one bf16 training step (forward, loss, backward, AdamW) of the paper batch at three
  representative shapes — BREVO, LANO and the longest CLRS task (Floyd–Warshall) at their
  estimated longest training sequence (``anira.memory.estimated_shapes``), ANIRA-E — at the
  micro-batch the memory plan picks for this device's memory: tokens/s, and the peak
  ``torch.cuda.max_memory_allocated`` against the plan (:func:`compare`: the plan must bound the
  peak without exceeding it by more than ``PLAN_TOLERANCE``); then the dense unroll (the paper's
  estimator) against packed execution (``rescale_final``), and ``torch.compile`` on against off.
- ``decode``: cached greedy decoding against the prefix-rerun reference at 1k and 4k tokens of
  context (a few generated tokens, batch of one; the same tokens are checked).
- ``mini`` (with ``--mini``): the wall time of the default ``mini`` study on this GPU, if the
  budget allows (``snakemake --cores all`` in a temporary results root).

Writes ``benchmarks/results/gpu.json`` with the device's name and memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from anira.io import atomic_write_json, machine_info
from anira.memory import GB, Plan, estimated_shapes, fit_training
from anira.model import AniraModel, ModelConfig
from anira.model.decode import generate, generate_reference

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ("brevo", "lano", "clrs_floyd_warshall")  # short, grammar, the longest sequences
# The plan sizes saved activations in float32; bf16 autocast saves most of them at half that size.
PLAN_TOLERANCE = 1.0  # so the plan may be up to twice the bf16 peak
CONTEXTS = (1024, 4096)


def compare(plan: Plan, measured: int, tolerance: float = PLAN_TOLERANCE) -> dict[str, object]:
    """The plan against a measured peak: their ratio, whether the plan bounds the peak, and
    whether it does so within ``tolerance`` (plan ≤ (1 + tolerance) · measured)."""
    ratio = plan.total / measured
    return {
        "planned_bytes": plan.total,
        "measured_bytes": measured,
        "plan_over_measured": ratio,
        "plan_bounds_peak": ratio >= 1.0,
        "within_tolerance": 1.0 <= ratio <= 1.0 + tolerance,
    }


def paper_model(task: str, vocab: int, length: int, **changes) -> ModelConfig:
    scale = OmegaConf.load(ROOT / "config/scale/paper.yaml").model
    depth = int(OmegaConf.load(ROOT / "config/task" / f"{task}.yaml").scales.paper.max_depth)
    shape = {k: scale[k] for k in ("d_model", "n_heads", "mlp_ratio")}
    return ModelConfig(vocab_size=vocab, max_seq_len=length, max_depth=depth, **shape, **changes)


def cuda_time(fn, steps: int) -> float:
    """Seconds per call of ``fn`` (after one warm-up call), timed with CUDA events."""
    fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / steps


def train_step_of(mcfg: ModelConfig, micro: int, batch: int, length: int):
    """A closure running one bf16 training step of ``batch`` sequences in micro-batches."""
    torch.manual_seed(0)
    model = AniraModel(mcfg).cuda().train()
    optimizer = torch.optim.AdamW(model.parameters())
    tokens = torch.randint(1, mcfg.vocab_size, (batch, length), device="cuda")
    answers = torch.ones_like(tokens, dtype=torch.bool)
    totals = (int(answers[:, 1:].sum()), batch) if micro < batch else None

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        for i in range(0, batch, micro):
            rows = slice(i, i + micro)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(tokens[rows])
                loss, _ = model.loss(out, tokens[rows], answers[rows], totals)
            loss.backward()
        optimizer.step()

    return step


def train_section(steps: int, limit_gb: float, batch: int) -> list[dict]:
    rows = []
    for task in SHAPES:
        vocab, length, _ = estimated_shapes(task, "paper", 0)
        mcfg = paper_model(task, vocab, length, router="early")
        plan = fit_training(mcfg, batch, length, limit_gb, f"task {task}")
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        seconds = cuda_time(train_step_of(mcfg, plan.micro_batch, batch, length), steps)
        row = {
            "task": task,
            "length": length,
            "batch": batch,
            "micro_batch": plan.micro_batch,
            "unroll_tokens_per_s": batch * length / seconds,
            "memory": compare(plan, torch.cuda.max_memory_allocated()),
        }
        variants = {
            "packed": dataclasses.replace(mcfg, estimator="rescale_final", execution="packed"),
            "compiled": dataclasses.replace(mcfg, compile=True),
        }
        for name, variant in variants.items():
            torch.cuda.empty_cache()
            step = train_step_of(variant, plan.micro_batch, batch, length)
            row[f"{name}_tokens_per_s"] = batch * length / cuda_time(step, steps)
        rows.append(row)
        print(f"train {task}: {row}", flush=True)
    return rows


@torch.no_grad()
def decode_section(new_tokens: int = 16) -> list[dict]:
    rows = []
    mcfg = paper_model("clrs_floyd_warshall", 64, max(CONTEXTS) + new_tokens, router="fixed")
    torch.manual_seed(0)
    model = AniraModel(mcfg).cuda().eval()
    for context in CONTEXTS:
        buffer = torch.zeros((1, context + new_tokens), dtype=torch.long, device="cuda")
        buffer[:, :context] = torch.randint(2, 64, (1, context), device="cuda")
        cur = torch.tensor([context], device="cuda")
        stop = torch.tensor([context + new_tokens], device="cuda")
        timed = {}
        for name, decode in (("cached", generate), ("reference", generate_reference)):
            torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                timed[name] = decode(model, buffer, cur, stop, eos_id=1)
            torch.cuda.synchronize()
            timed[name + "_s"] = time.perf_counter() - start
        same = bool(torch.equal(timed["cached"][0], timed["reference"][0]))
        row = {"context": context, "new_tokens": new_tokens, "same_tokens": same}
        row |= {"cached_s": timed["cached_s"], "reference_s": timed["reference_s"]}
        rows.append(row)
        print(f"decode {row}", flush=True)
    return rows


def mini_section() -> dict:
    (ROOT / "results").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "results") as tmp:
        start = time.perf_counter()
        subprocess.run(
            ["snakemake", "--cores", "all", "--config", f"results_root={tmp}/mini"]
            + [f"figures_dir={tmp}/figures"],
            cwd=ROOT,
            check=True,
        )
        return {"wall_s": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/gpu.json"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--mini", action="store_true")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: benchmarks/gpu_check.py needs a CUDA device; none is available", flush=True)
        return 2
    props = torch.cuda.get_device_properties(0)
    limit_gb = props.total_memory / GB
    result = {
        "machine": machine_info(),
        "device": {"name": props.name, "memory_gb": limit_gb},
        "train": train_section(args.steps, limit_gb, args.batch),
        "decode": decode_section(),
    }
    if args.mini:
        result["mini"] = mini_section()
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
