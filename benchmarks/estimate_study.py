"""What a study costs: GPU-hours per phase and in total, and the largest single job (an estimate).

    python benchmarks/estimate_study.py --configfile config/study/paper.yaml
                                        [--gpu-tflops 60] [--samples 2] [--out FILE]

How (no GPU on the machine this was written on, so GPU time is an estimate from FLOP counts):
- Sequence lengths: ``--samples`` examples per (split, size) of the study's scale, drawn with
  each task's own generator and dataset parameters (``anira.spec.DatasetSpec``); the mean length
  per size stands for every example of that size.
- Every setting comes from the spec a run of the study resolves (``anira.spec.RunSpec``: the
  scale's model, the task's D, its steps with the task's ``steps_factor``, the batch sizes).
- FLOPs: ``AniraModel.flops`` of that model (every token at D: training runs the dense
  unroll, and D bounds evaluation), a training step = 3 × forward (forward + backward) over
  ``batch_size`` examples drawn evenly from the training sizes. Evaluation = per example one
  teacher-forced forward plus cached greedy decoding, which costs one more forward of the
  sequence (the prompt's prefill and one cached step per answer token); the train split is
  sampled to ``max_train_examples`` (config/evaluate.yaml). Greedy decoding is sequential, so
  evaluation also pays ``--step-ms`` (assumed latency of one cached decoding step of a batch) per
  answer token per batch of ``eval.batch_size``: its GPU time is FLOPs ÷ throughput + that.
- GPU time = FLOPs ÷ ``--gpu-tflops``, an *assumed* sustained bf16 throughput (default 60
  TFLOP/s ≈ 20 % of an A100's dense bf16 peak: these models are small, d_model 384, so far from
  peak). The paper quotes ≈ 7 A100-hours per 250k-step run; the printout compares.
- Memory (``anira.memory``, the plan the workflow makes before submitting): per task, the
  training micro-batch and planned peak of its largest router at ``--gpu-mem-gb``, and the
  evaluation batch and peak. Micro-batching splits a step into several passes of the same FLOPs,
  so it changes the wall time (smaller kernels), not the FLOP count nor the number of optimizer
  steps; the GPU time above does not model that slowdown.
- Measured on this machine: the CPU's training throughput of the same model (a few forward +
  backward steps; FLOP/s and the CPU-hours the study would take here) and the data generation
  time per example (CPU work, reported as CPU-hours). The analyses and figures read the
  evaluation tables on the CPU (minutes at ``mini``); they need no GPU.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from anira.io import atomic_write_json, measured_on
from anira.memory import GB, estimated_shapes, fit_evaluation, fit_training
from anira.model import AniraModel, ModelConfig, ModelOutput
from anira.spec import compose_run, planned_dataset, study_configs

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 128  # the LM head's share is small; the tasks' vocabularies are below this


def forward_flops(model: AniraModel, length: int) -> float:
    """Forward FLOPs of one sequence of ``length`` tokens, every token at depth D."""
    valid = torch.ones((1, length), dtype=torch.bool)
    depth = torch.full(valid.shape, model.cfg.max_depth)
    out = ModelOutput(logits=None, depth=depth, expected_depth=None, q=None, kl=None, valid=valid)
    return model.flops(out)["flops"]


def sample_lengths(task, plan, samples: int) -> tuple[dict, float]:
    """Mean (sequence length, answer length) per (split, size), and CPU seconds per example."""
    rng = np.random.default_rng(0)
    lengths, spent, drawn = {}, 0.0, 0
    for split, size, _ in plan:
        if (split, size) in lengths:
            continue
        start = time.perf_counter()
        examples = [task.sample(size, rng) for _ in range(samples)]
        spent, drawn = spent + time.perf_counter() - start, drawn + samples
        lengths[(split, size)] = (
            float(np.mean([len(e.token_str) for e in examples])),
            float(np.mean([sum(e.answer_mask) for e in examples])),
        )
    return lengths, spent / drawn


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


def memory_plans(task: str, study, limit_gb: float) -> dict:
    """The memory plan (``anira.memory``) of the task's largest model (over the study's routers):
    training micro-batch and peak, evaluation batch and peak, at ``limit_gb`` of GPU memory."""
    vocab, train_len, eval_len = estimated_shapes(task, study.scale, 0)
    plans = []
    for router in study.routers:
        spec = compose_run(task, router, study.scale, 0)
        mcfg = spec.model_for(vocab, eval_len)
        plans.append(
            (
                fit_training(mcfg, spec.train.batch_size, train_len, limit_gb, task),
                fit_evaluation(mcfg, spec.eval_batch_size, eval_len, limit_gb, task),
            )
        )
    train = max((p[0] for p in plans), key=lambda plan: plan.total)
    evaluate = max((p[1] for p in plans), key=lambda plan: plan.total)
    return {
        "planned_train_sequence": train_len,
        "train_micro_batch": train.micro_batch,
        "train_peak_gb": train.total / GB,
        "eval_batch": evaluate.batch,
        "eval_peak_gb": evaluate.total / GB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", required=True)
    parser.add_argument("--gpu-tflops", type=float, default=60.0)
    parser.add_argument("--step-ms", type=float, default=5.0)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--gpu-mem-gb", type=float, default=80.0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/study_cost.json"))
    args = parser.parse_args()
    study = OmegaConf.load(args.configfile)
    max_train_eval = OmegaConf.load(ROOT / "config/evaluate.yaml").max_train_examples
    gpu = args.gpu_tflops * 1e12
    runs = len(study.routers) * len(study.seeds)

    # The scale's model on this CPU at D = 6, through the spec a run resolves (no task adjustment
    # reaches the model's width).
    probe = compose_run(study.tasks[0], "fixed", study.scale, 0).model
    model_kw = {k: getattr(probe, k) for k in ("d_model", "n_heads", "mlp_ratio")}
    cpu_flops = cpu_training_flops_per_s(model_kw | {"max_depth": 6})
    print(f"CPU training throughput (measured): {cpu_flops / 1e9:.1f} GFLOP/s", flush=True)
    phases, jobs, per_task = defaultdict(float), [], []
    for i, name in enumerate(study.tasks, 1):
        # Everything a run of this task resolves: the dataset's plan, and the run's model, steps
        # (the task's steps_factor applied) and batch sizes (``RunSpec``).
        dataset = planned_dataset(name, study.scale, 0)
        task, plan = dataset.task, dataset.plan
        run = compose_run(name, "fixed", study.scale, 0)  # every token at D, as training unrolls
        depth = run.model.max_depth
        lengths, gen_s = sample_lengths(task, plan, args.samples)
        longest = int(max(length for length, _ in lengths.values()))
        model = AniraModel(run.model_for(VOCAB, longest))
        train_sizes = sorted({size for split, size, _ in plan if split == "train"})
        per_example = np.mean(
            [forward_flops(model, round(lengths["train", s][0])) for s in train_sizes]
        )
        train_flops = 3 * per_example * run.train.batch_size * run.train.steps
        eval_flops, eval_steps = 0.0, 0.0
        for split, size, count in plan:
            n = min(count, max_train_eval) if split == "train" else count
            length, answer = lengths[split, size]
            eval_flops += 2 * n * forward_flops(model, round(length))
            eval_steps += math.ceil(n / run.eval_batch_size) * answer
        n_examples = sum(count for _, _, count in plan)
        memory = memory_plans(name, study, args.gpu_mem_gb)
        row = {
            "task": name,
            "max_depth": depth,
            "longest_sequence": longest,
            **memory,
            "generation_cpu_h": n_examples * gen_s / 3600,
            "train_gpu_h_per_run": train_flops / gpu / 3600,
            "eval_gpu_h_per_run": (eval_flops / gpu + eval_steps * args.step_ms / 1e3) / 3600,
            "train_cpu_h_per_run": train_flops / cpu_flops / 3600,
        }
        per_task.append(row)
        phases["generation_cpu_h"] += row["generation_cpu_h"]
        phases["training_gpu_h"] += runs * row["train_gpu_h_per_run"]
        phases["evaluation_gpu_h"] += runs * row["eval_gpu_h_per_run"]
        phases["training_cpu_h_here"] += runs * row["train_cpu_h_per_run"]
        jobs += [
            ("train", name, row["train_gpu_h_per_run"]),
            ("evaluate", name, row["eval_gpu_h_per_run"]),
        ]
        print(
            f"[{i}/{len(study.tasks)}] {name:26} D={depth:2} longest {longest:5}  train "
            f"{row['train_gpu_h_per_run']:6.2f} GPU-h/run  eval {row['eval_gpu_h_per_run']:6.2f} "
            f"GPU-h/run  generation {row['generation_cpu_h']:6.2f} CPU-h",
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
