"""Estimated compute of a training and an evaluation job before it runs: FLOPs from the model's own
accounting (``AniraModel.flops``) at the task's sequence lengths, and GPU time at an *assumed*
sustained throughput. One estimate serves ``benchmarks/estimate_study.py`` (a study's GPU-hours)
and the workflow (each SLURM job's runtime, ``anira.study.resources``).

- Lengths (:func:`sampled_lengths`): the mean sequence and answer length per (split, size) of the
  dataset plan, from ``samples`` examples drawn with the task's own generator at up to
  ``LENGTH_SIZES`` sizes per split, evenly spaced over its sizes (the smallest and largest
  included) and interpolated linearly between them. Lengths grow with the size, and where they
  grow faster than linearly (graphs) the interpolation errs long. Few draws keep the estimate cheap
  enough to make for every job of the paper study when the workflow is parsed (LANO's parser
  costs ≈ 45 ms per string, and it names ~775 (split, size) pairs).
- Training (:func:`job_cost`): every token at depth D (the dense unroll every router trains
  through), a step = 3 × forward (forward + backward) over ``batch_size`` sequences drawn evenly
  from the training sizes, times the run's steps.
- Evaluation: per example one teacher-forced forward pass and, per decoding pass, about one more
  (the prompt's prefill and a cached step per answer token). Greedily scored tasks decode once;
  tasks scored by sampling (LANO) sample an answer and complete the gold answer cut at each of
  ``COMPLETION_CUTS``: three passes. Decoding is sequential and batched as the evaluation batches
  it (``batches_by_length``), each batch running until its longest row stops: the gold answer plus
  ``EXTRA_ANSWER_TOKENS`` when greedy, the sampling budget (``Task.sampling_length``) when
  sampled, so each step of a batch pays an assumed latency (``decode_step_ms``). The train split
  is capped at ``max_train_examples``, the others at ``max_eval_examples`` (``anira.evaluate``),
  a cap spread over a split's sizes in proportion.
- GPU time = FLOPs ÷ an assumed sustained throughput + that latency. The throughput is not
  measured (no GPU where this was written): 60 TFLOP/s of bf16 is ≈ 20 % of an A100's dense peak,
  for small models (d_model 384) far from it; the paper's ≈ 7 A100-hours per 250k-step run
  suggests it may be optimistic by up to 2×. ``benchmarks/gpu_check.py`` measures tokens/s on a
  GPU.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Iterable

import numpy as np
import torch

from anira.inference import COMPLETION_CUTS, EXTRA_ANSWER_TOKENS, batches_by_length
from anira.memory import buildable
from anira.model import AniraModel, ModelConfig, ModelOutput
from anira.spec import RunSpec, compose_run, planned_dataset
from anira.tasks.base import Task

# Defaults of the study config's runtime_estimate (workflow/schemas/config.schema.yaml) and of
# benchmarks/estimate_study.py: assumptions, not measurements.
ASSUMED_GPU_TFLOPS = 60.0
ASSUMED_DECODE_STEP_MS = 5.0
LENGTH_SIZES = 8
LENGTH_SAMPLES = 2

Plan = Iterable[tuple[str, int, int]]  # (split, size, count), as DatasetSpec.plan


def forward_flops(model: AniraModel, length: int) -> float:
    """Forward FLOPs of one sequence of ``length`` tokens, every token at depth D."""
    valid = torch.ones((1, length), dtype=torch.bool)
    depth = torch.full(valid.shape, model.cfg.max_depth)
    out = ModelOutput(logits=None, depth=depth, expected_depth=None, q=None, kl=None, valid=valid)
    return model.flops(out)["flops"]


def flops_model(mcfg: ModelConfig) -> AniraModel:
    """A model to count FLOPs with, its weights never allocated: FLOPs need only their shapes."""
    with torch.device("meta"):
        return AniraModel(buildable(mcfg))


def sampled_lengths(
    task: Task,
    plan: Plan,
    samples: int = LENGTH_SAMPLES,
    sizes_per_split: int = LENGTH_SIZES,
    seed: int = 0,
) -> tuple[dict[tuple[str, int], tuple[float, float]], float]:
    """(split, size) → (mean sequence length, mean answer length) for every pair of ``plan``, and
    the CPU seconds the generator spent per drawn example (module docstring)."""
    rng = np.random.default_rng(seed)
    lengths, spent, drawn = {}, 0.0, 0
    for split in dict.fromkeys(split for split, _, _ in plan):
        sizes = np.array(sorted({size for name, size, _ in plan if name == split}))
        picks = np.unique(np.linspace(0, len(sizes) - 1, sizes_per_split).round().astype(int))
        drawn_sizes, means = sizes[picks], []
        for size in drawn_sizes:
            start = time.perf_counter()
            examples = [task.sample(int(size), rng) for _ in range(samples)]
            spent, drawn = spent + time.perf_counter() - start, drawn + samples
            means.append(
                (
                    np.mean([len(e.token_str) for e in examples]),
                    np.mean([sum(e.answer_mask) for e in examples]),
                )
            )
        sequence, answer = np.array(means).T
        for size in sizes:
            lengths[split, int(size)] = (
                float(np.interp(size, drawn_sizes, sequence)),
                float(np.interp(size, drawn_sizes, answer)),
            )
    return lengths, spent / drawn


@dataclasses.dataclass(frozen=True)
class JobCost:
    """A run's training and evaluation FLOPs, and its evaluation's sequential decoding steps."""

    train_flops: float
    eval_flops: float
    eval_decode_steps: float

    def train_hours(self, gpu_tflops: float = ASSUMED_GPU_TFLOPS) -> float:
        return self.train_flops / (gpu_tflops * 1e12) / 3600

    def eval_hours(
        self, gpu_tflops: float = ASSUMED_GPU_TFLOPS, step_ms: float = ASSUMED_DECODE_STEP_MS
    ) -> float:
        compute = self.eval_flops / (gpu_tflops * 1e12)
        return (compute + self.eval_decode_steps * step_ms / 1e3) / 3600


def decoding_passes(task: Task) -> int:
    """Decoding passes over every evaluated example (module docstring)."""
    return 1 if task.sampling_length() is None else 1 + len(COMPLETION_CUTS)


def decoding_steps(stops: np.ndarray, counts: np.ndarray, batch: int) -> float:
    """Sequential steps of one decoding pass over examples that stop after ``stops`` tokens
    (``counts`` of each, rounded up), batched as the evaluation batches them."""
    each = np.repeat(stops, np.ceil(counts).astype(int))
    return float(sum(each[idx].max() for idx in batches_by_length(each, batch)))


def job_cost(
    run: RunSpec,
    task: Task,
    plan: Plan,
    lengths: dict[tuple[str, int], tuple[float, float]],
    vocab_size: int,
    eval_batch: int,
    max_train_examples: int,
    max_eval_examples: int | None = None,
    splits: tuple[str, ...] | None = None,
) -> JobCost:
    """The estimated compute of training and evaluating ``run`` on the dataset ``plan`` (of
    ``task``) whose lengths are ``lengths`` (:func:`sampled_lengths`), evaluating the ``splits``
    (None: all) in batches of ``eval_batch`` (the memory plan's)."""
    plan = list(plan)
    longest = math.ceil(max(length for length, _ in lengths.values()))
    model = flops_model(run.model_for(vocab_size, longest))
    train_lengths = [length for (split, _), (length, _) in lengths.items() if split == "train"]
    per_example = np.mean([forward_flops(model, round(length)) for length in train_lengths])
    train_flops = 3 * per_example * run.train.batch_size * run.train.steps

    passes, budget = decoding_passes(task), task.sampling_length()
    eval_flops = eval_steps = 0.0
    evaluated = [split for split, _, _ in plan if splits is None or split in splits]
    for split in dict.fromkeys(evaluated):
        rows = [(size, count) for name, size, count in plan if name == split]
        total = sum(count for _, count in rows)
        cap = max_train_examples if split == "train" else max_eval_examples
        share = 1.0 if cap is None or total <= cap else cap / total
        counts = np.array([count * share for _, count in rows])
        seq, answer = np.array([lengths[split, size] for size, _ in rows]).T
        flops = np.array([forward_flops(model, round(length)) for length in seq])
        eval_flops += (1 + passes) * float(np.dot(counts, flops))
        stops = answer + EXTRA_ANSWER_TOKENS if budget is None else np.full(len(rows), budget)
        eval_steps += passes * decoding_steps(stops, counts, eval_batch)
    return JobCost(train_flops, eval_flops, eval_steps)


@functools.cache
def dataset_lengths(
    task: str, scale: str, seed: int, overrides: tuple[str, ...] = ()
) -> tuple[dict[tuple[str, int], tuple[float, float]], float]:
    """:func:`sampled_lengths` of the dataset ``python -m anira.generate task=… scale=… seed=…
    <overrides>`` would write, before it exists (once per process)."""
    dataset = planned_dataset(task, scale, seed, overrides)
    return sampled_lengths(dataset.task, dataset.plan)


@functools.cache
def run_cost(
    task: str,
    router: str,
    scale: str,
    data_seed: int,
    generate_overrides: tuple[str, ...],
    train_overrides: tuple[str, ...],
    vocab_size: int,
    eval_batch: int,
    max_train_examples: int,
    max_eval_examples: int | None,
    splits: tuple[str, ...] | None = None,
) -> JobCost:
    """:func:`job_cost` of a study's run of ``task`` × ``router`` (any seed: the seed changes no
    shape), from its dataset's planned lengths, once per process."""
    dataset = planned_dataset(task, scale, data_seed, generate_overrides)
    lengths, _ = dataset_lengths(task, scale, data_seed, generate_overrides)
    run = compose_run(task, router, scale, 0, train_overrides)
    return job_cost(
        run,
        dataset.task,
        dataset.plan,
        lengths,
        vocab_size,
        eval_batch,
        max_train_examples,
        max_eval_examples,
        splits,
    )
