"""What a study costs: GPU-hours per phase and in total, and the largest single job (an estimate).

    python benchmarks/estimate_study.py --configfile config/study/paper.yaml
                                        [--gpu-tflops 60] [--step-ms 5] [--out FILE]

How (no GPU on the machine this was written on, so GPU time is an estimate from FLOP counts):
- Every run's training and evaluation compute comes from ``anira.cost.run_cost``, the estimate the
  workflow also derives each SLURM job's runtime from (its module docstring has the method):
  sequence lengths drawn with each task's own generator at a few sizes per split, the FLOPs of
  the spec a run of the study resolves (``anira.spec.RunSpec``: the scale's model, the task's D,
  its steps with the task's ``steps_factor``, the batch sizes), every token at D, evaluation at
  the memory plan's batch with cached decoding (LANO: its sampled answers and completions).
- GPU time = FLOPs ÷ ``--gpu-tflops``, an *assumed* sustained bf16 throughput (default 60
  TFLOP/s ≈ 20 % of an A100's dense bf16 peak: these models are small, d_model 384, so far from
  peak), plus ``--step-ms`` (assumed latency of one cached decoding step of a batch) per
  sequential decoding step. The paper quotes ≈ 7 A100-hours per 250k-step run; the printout
  compares.
- Memory (``anira.memory``, the plan the workflow makes before submitting): per task, the
  training micro-batch and planned peak of its largest router at ``--gpu-mem-gb``, and the
  evaluation batch and peak. Micro-batching splits a step into several passes of the same FLOPs,
  so it changes the wall time (smaller kernels), not the FLOP count nor the number of optimizer
  steps; the GPU time above does not model that slowdown.
- Measured on this machine: the CPU's training throughput of the same model (a few forward +
  backward steps; FLOP/s and the CPU-hours the study would take here) and the data generation
  time per example (CPU work, reported as CPU-hours; ``benchmarks/generation_plan.py`` measures
  it per task). The analyses and figures read the evaluation tables on the CPU (minutes at
  ``mini``); they need no GPU.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import torch
from omegaconf import OmegaConf

from anira.cost import (
    ASSUMED_DECODE_STEP_MS,
    ASSUMED_GPU_TFLOPS,
    dataset_lengths,
    forward_flops,
    run_cost,
)
from anira.io import atomic_write_json, measured_on
from anira.memory import GB, estimated_shapes, fit_evaluation, fit_training
from anira.model import AniraModel, ModelConfig
from anira.spec import compose_run, planned_dataset, planned_evaluation_caps, study_configs

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 128  # the CPU probe's vocabulary; the tasks' vocabularies are below this


def cpu_training_flops_per_s(model_kw: dict, steps: int = 3) -> float:
    """Measured forward+backward FLOP/s of the scale's model on this CPU (batch 4 × 128)."""
    torch.manual_seed(0)
    model = AniraModel(ModelConfig(vocab_size=VOCAB, max_seq_len=128, **model_kw)).train()
    tokens = torch.randint(1, VOCAB, (4, 128))
    depth = torch.full(tokens.shape, model.cfg.max_depth)
    model(tokens, depth=depth).logits.sum().backward()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        model(tokens, depth=depth).logits.float().pow(2).mean().backward()
    seconds = (time.perf_counter() - start) / steps
    return 3 * forward_flops(model, 128) * 4 / seconds


def router_plans(task: str, study, limit_gb: float) -> dict:
    """router → (training plan, evaluation plan) (``anira.memory``) of the task's run with each
    of the study's routers, at ``limit_gb`` of GPU memory."""
    vocab, train_len, eval_len = estimated_shapes(task, study.scale, 0, phase(study, "generate"))
    plans = {}
    for router in study.routers:
        spec = compose_run(task, router, study.scale, 0, phase(study, "train"))
        mcfg = spec.model_for(vocab, eval_len)
        plans[router] = (
            fit_training(mcfg, spec.train.batch_size, train_len, limit_gb, task),
            fit_evaluation(mcfg, spec.eval_batch_size, eval_len, limit_gb, task),
        )
    return plans


def largest(plans: dict, train_len: int) -> dict:
    """The training micro-batch and peak, evaluation batch and peak of the largest router."""
    train = max((p[0] for p in plans.values()), key=lambda plan: plan.total)
    evaluate = max((p[1] for p in plans.values()), key=lambda plan: plan.total)
    return {
        "planned_train_sequence": train_len,
        "train_micro_batch": train.micro_batch,
        "train_peak_gb": train.total / GB,
        "eval_batch": evaluate.batch,
        "eval_peak_gb": evaluate.total / GB,
    }


def phase(study, name: str) -> tuple[str, ...]:
    """The study file's Hydra overrides of a phase (generate, train, evaluate)."""
    return tuple((study.get("overrides") or {}).get(name) or ())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", required=True)
    parser.add_argument("--gpu-tflops", type=float, default=ASSUMED_GPU_TFLOPS)
    parser.add_argument("--step-ms", type=float, default=ASSUMED_DECODE_STEP_MS)
    parser.add_argument("--gpu-mem-gb", type=float, default=80.0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/study_cost.json"))
    args = parser.parse_args()
    study = OmegaConf.load(args.configfile)
    caps = planned_evaluation_caps(phase(study, "evaluate"))
    seeds = len(study.seeds)
    runs = len(study.routers) * seeds

    # The scale's model on this CPU at D = 6, through the spec a run resolves (no task adjustment
    # reaches the model's width).
    probe = compose_run(study.tasks[0], "fixed", study.scale, 0).model
    model_kw = {k: getattr(probe, k) for k in ("d_model", "n_heads", "mlp_ratio")}
    cpu_flops = cpu_training_flops_per_s(model_kw | {"max_depth": 6})
    print(f"CPU training throughput (measured): {cpu_flops / 1e9:.1f} GFLOP/s", flush=True)
    phases, jobs, per_task = defaultdict(float), [], []
    for i, name in enumerate(study.tasks, 1):
        generate = phase(study, "generate")
        plan = planned_dataset(name, study.scale, 0, generate).plan
        lengths, gen_s = dataset_lengths(name, study.scale, 0, generate)
        longest = int(max(length for length, _ in lengths.values()))
        vocab, train_len, _ = estimated_shapes(name, study.scale, 0, generate)
        plans = router_plans(name, study, args.gpu_mem_gb)
        costs = {
            router: run_cost(
                name,
                router,
                study.scale,
                0,
                generate,
                phase(study, "train"),
                vocab,
                plans[router][1].batch,
                *caps,
            )
            for router in study.routers
        }
        train_h = {r: cost.train_hours(args.gpu_tflops) for r, cost in costs.items()}
        eval_h = {r: cost.eval_hours(args.gpu_tflops, args.step_ms) for r, cost in costs.items()}
        train_flops = sum(cost.train_flops for cost in costs.values()) / len(costs)
        row = {
            "task": name,
            "max_depth": compose_run(name, "fixed", study.scale, 0).model.max_depth,
            "longest_sequence": longest,
            **largest(plans, train_len),
            "generation_cpu_h": sum(count for _, _, count in plan) * gen_s / 3600,
            # the mean over the study's routers (the dense unroll: they differ by their heads)
            "train_gpu_h_per_run": sum(train_h.values()) / len(costs),
            "eval_gpu_h_per_run": sum(eval_h.values()) / len(costs),
            "train_cpu_h_per_run": train_flops / cpu_flops / 3600,
        }
        per_task.append(row)
        phases["generation_cpu_h"] += row["generation_cpu_h"]
        phases["training_gpu_h"] += seeds * sum(train_h.values())
        phases["evaluation_gpu_h"] += seeds * sum(eval_h.values())
        phases["training_cpu_h_here"] += runs * row["train_cpu_h_per_run"]
        jobs += [("train", name, hours) for hours in train_h.values()]
        jobs += [("evaluate", name, hours) for hours in eval_h.values()]
        print(
            f"[{i}/{len(study.tasks)}] {name:26} D={row['max_depth']:2} longest {longest:5}  "
            f"train {row['train_gpu_h_per_run']:6.2f} GPU-h/run  "
            f"eval {row['eval_gpu_h_per_run']:6.2f} GPU-h/run  "
            f"generation {row['generation_cpu_h']:6.2f} CPU-h",
            flush=True,
        )
    kind, task_name, hours = max(jobs, key=lambda job: job[2])
    total = phases["training_gpu_h"] + phases["evaluation_gpu_h"]
    result = {
        **measured_on(study_configs(args.configfile)),
        "configfile": args.configfile,
        "estimate": True,
        "assumed_gpu_tflops": args.gpu_tflops,
        "assumed_decode_step_ms": args.step_ms,
        "gpu_mem_gb": args.gpu_mem_gb,
        "measured_cpu_train_gflops": cpu_flops / 1e9,
        "runs_per_task": runs,
        "phases": dict(phases) | {"analyses_gpu_h": 0.0, "total_gpu_h": total},
        "largest_job": {"phase": kind, "task": task_name, "gpu_h": hours},
        "tasks": per_task,
    }
    atomic_write_json(Path(args.out), result)
    training, evaluation = phases["training_gpu_h"], phases["evaluation_gpu_h"]
    print(f"ESTIMATE at {args.gpu_tflops:g} TFLOP/s sustained (no GPU measured):")
    print(f"  training {training:.0f} GPU-h, evaluation {evaluation:.1f} GPU-h, analyses 0 GPU-h")
    print(f"  total {total:.0f} GPU-h; generation {phases['generation_cpu_h']:.1f} CPU-h")
    print(f"  largest job: {kind} {task_name} {hours:.1f} GPU-h (paper: ≈7 A100-h per run)")
    print(f"  on this CPU, training alone: {phases['training_cpu_h_here']:.0f} CPU-h")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
