"""Memory plan of a job, made before it is submitted: what a training or evaluation job holds at
its peak on the device, and the micro-batch that keeps training under a memory limit.

Training (one optimizer step of ``batch`` sequences of ``length`` tokens, the batch's longest):
- ``params``, ``gradients``: 4 bytes per parameter each (float32 master weights and gradients);
  ``optimizer``: AdamW's two moments, 8 bytes per parameter; ``cast_weights``: on CUDA the bf16
  copies autocast keeps of the weights during a step, 2 bytes per parameter.
- ``activations``: what autograd saves for the backward pass over one micro-batch. It is
  measured, not derived by hand: :func:`saved_bytes` runs the model's training forward pass and
  loss on a short probe (one sequence of 16, 64 and 112 tokens, every token an answer token) and
  sums the storages autograd saves (``torch.autograd.graph.saved_tensors_hooks``); the three
  points fix ``a + b·T + c·T²`` per sequence, exact for this model because every saved tensor is
  ``[B, T, ·]`` (or ``[B, H, T, T]`` where attention materialises its scores: the math backend, or
  an explicit mask). The probe runs in float32 on the CPU, where SDPA's causal kernel saves, like
  CUDA's flash and memory-efficient kernels, only the output and the log-sum-exp (no T² term); the
  training forward pass never passes a mask (the ``frozen`` halted view). Under bf16 autocast most
  saved tensors are half as large, so the float32 figure bounds the GPU's from above;
  ``benchmarks/gpu_check.py`` measures the GPU's.
- ``transient``: what is alive on top of the saved tensors, bounded by the sum of the forward
  pass's end (its D + 1 states s_0..s_D, which the forward pass keeps in a list until it returns,
  though autograd saves few of them) and the backward pass's working set (one ``[B, T, ·]`` float32
  tensor of each kind alive at once: the gradient of the logits, of the MLP's hidden layer, and of
  the residual stream): ``B · T · 4 · ((D + 1)·d + V + (mlp_ratio + 3)·d)``.

Evaluation (``batch`` sequences of ``length`` tokens, no gradients): the weights (and their bf16
copies) and the working set, plus the larger of its two stages, which run one after the other: the
teacher-forced pass (``activations``: the D + 1 states of the forward pass, alive until it
returns) and cached decoding (``cache``: prelude, D core iterations and coda, keys and values,
``(2D + 4) · B · T · d`` elements of the compute dtype; ``attention``: the prompt prefill's boolean
mask ``[B, 1, T, T]`` and the additive float copy SDPA makes of it for the memory-efficient
kernel).

:func:`measured_peak` measures a training step's or a forward pass's peak on the CPU with
``torch.profiler``'s memory timeline (every allocation and free of the step, categorised), which
is what the plan is validated against (tests/test_memory.py, ``benchmarks/memory_plan.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from anira.io import AniraInputError
from anira.model import AniraModel, ModelConfig
from anira.spec import planned_dataset

GB = 1e9  # gpu_mem_gb counts decimal gigabytes, as GPU datasheets do
PROBE_LENGTHS = (16, 64, 112)
PROBE_VOCABS = (16, 80)
SHAPE_SAMPLES = 8
SHAPE_MARGIN = 1.1


def saved_bytes(mcfg: ModelConfig, batch: int, length: int) -> int:
    """Bytes autograd saves for the backward pass of one training forward pass and loss over
    ``batch`` random sequences of ``length`` tokens (every token an answer), parameters excluded;
    a storage saved twice is counted once."""
    with probe_rng():
        return _saved(_probe_model(mcfg, length), batch, length)


@contextlib.contextmanager
def probe_rng() -> Iterator[None]:
    """Seed 0 for a probe's weights and tokens, on a fork of the caller's random state: a training
    run plans its memory after seeding, and its draws must not depend on whether the plan was
    already cached in this process (a cached plan draws nothing)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def _probe_model(mcfg: ModelConfig, length: int) -> AniraModel:
    model = AniraModel(buildable(mcfg, max_seq_len=max(length, 1)))
    return model.train()


def _saved(model: AniraModel, batch: int, length: int) -> int:
    tokens = torch.randint(1, model.cfg.vocab_size, (batch, length))
    answers = torch.ones_like(tokens, dtype=torch.bool)
    fixed = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in fixed:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model.loss(model(tokens), tokens, answers)
    return sum(saved.values())


@functools.cache
def _activation_fit(key: tuple) -> np.ndarray:
    """Per-sequence saved bytes ``a + b·T + c·T²`` as rows (a, b, c) at the two probe
    vocabularies (the vocabulary enters linearly: the logits and the loss's log-softmax)."""
    rows = []
    for vocab in PROBE_VOCABS:
        with probe_rng():
            model = _probe_model(ModelConfig(**dict(key), vocab_size=vocab), max(PROBE_LENGTHS))
            points = [_saved(model, 1, length) for length in PROBE_LENGTHS]
        rows.append(np.polyfit(PROBE_LENGTHS, points, 2)[::-1])
    return np.asarray(rows)


def activation_bytes(mcfg: ModelConfig, batch: int, length: int) -> int:
    """Saved-tensor bytes of a training step, extrapolated from the probe (module docstring)."""
    probe = dataclasses.replace(mcfg, max_seq_len=max(PROBE_LENGTHS), compile=False)
    fields = dataclasses.asdict(probe)
    fields.pop("vocab_size")
    low, high = _activation_fit(tuple(sorted(fields.items())))
    a, b, c = low + (high - low) * (mcfg.vocab_size - PROBE_VOCABS[0]) / np.subtract(
        *PROBE_VOCABS[::-1]
    )
    return math.ceil(batch * (a + b * length + max(c, 0.0) * length * length))


def buildable(mcfg: ModelConfig, **changes) -> ModelConfig:
    """``mcfg`` uncompiled, with ``changes``; a matched random control, whose depth distribution
    is only known once its matched model is evaluated, gets a uniform one (memory does not
    depend on it)."""
    if mcfg.router == "random" and mcfg.depth_probs is None:
        changes["depth_probs"] = (1 / mcfg.max_depth,) * mcfg.max_depth
    return dataclasses.replace(mcfg, compile=False, **changes)


def _num_params(mcfg: ModelConfig) -> int:
    with torch.device("meta"):
        return AniraModel(buildable(mcfg)).num_params()


def _working_set(mcfg: ModelConfig, batch: int, length: int) -> int:
    width = mcfg.vocab_size + (mcfg.mlp_ratio + 3) * mcfg.d_model
    return 4 * batch * length * width


def _states(mcfg: ModelConfig, batch: int, length: int) -> int:
    """The forward pass's D + 1 float32 states s_0..s_D, alive together until it returns."""
    return (mcfg.max_depth + 1) * 4 * batch * length * mcfg.d_model


@dataclasses.dataclass(frozen=True)
class Plan:
    """A job's planned peak, in bytes per component; ``micro_batch`` sequences at a time."""

    batch: int
    micro_batch: int
    length: int
    params: int  # float32 weights
    cast_weights: int  # their bf16 copies under CUDA autocast
    activations: int
    transient: int
    gradients: int = 0
    optimizer: int = 0
    cache: int = 0
    attention: int = 0

    @property
    def total(self) -> int:
        """The peak: weights and optimizer, plus the larger of the two stages that do not
        overlap: the forward (and backward) pass's activations, and cached decoding."""
        fixed = self.params + self.gradients + self.optimizer + self.cast_weights
        return fixed + self.transient + max(self.activations, self.cache + self.attention)

    @property
    def accumulation_steps(self) -> int:
        return math.ceil(self.batch / self.micro_batch)


def _weights(mcfg: ModelConfig, cuda: bool) -> dict[str, int]:
    n = _num_params(mcfg)
    return {"params": 4 * n, "cast_weights": 2 * n if cuda else 0}


def training_plan(mcfg: ModelConfig, micro_batch: int, batch: int, length: int, cuda: bool) -> Plan:
    """The planned peak of one training step at ``micro_batch`` sequences of ``length`` tokens."""
    weights = _weights(mcfg, cuda)
    return Plan(
        batch=batch,
        micro_batch=micro_batch,
        length=length,
        activations=activation_bytes(mcfg, micro_batch, length),
        transient=_working_set(mcfg, micro_batch, length) + _states(mcfg, micro_batch, length),
        gradients=weights["params"],
        optimizer=2 * weights["params"],
        **weights,
    )


def evaluation_plan(mcfg: ModelConfig, batch: int, length: int, cuda: bool) -> Plan:
    """The planned peak of evaluating ``batch`` sequences of ``length`` tokens (see above)."""
    element = 2 if cuda else 4  # the compute dtype: bf16 under CUDA autocast
    return Plan(
        batch=batch,
        micro_batch=batch,
        length=length,
        activations=_states(mcfg, batch, length),
        transient=_working_set(mcfg, batch, length),
        cache=(2 * mcfg.max_depth + 4) * batch * length * mcfg.d_model * element,
        attention=batch * length * length * (1 + element),
        **_weights(mcfg, cuda),
    )


def fit_training(
    mcfg: ModelConfig, batch: int, length: int, limit_gb: float, what: str, cuda: bool = True
) -> Plan:
    """The training plan with the fewest micro-batches (``ceil(batch / k)`` sequences each)
    whose peak fits ``limit_gb``; one :class:`AniraInputError` line naming ``what`` (the job),
    the need and the limit when even one sequence at a time does not fit."""
    limit = limit_gb * GB
    for steps in range(1, batch + 1):
        micro = math.ceil(batch / steps)
        if steps > 1 and micro == math.ceil(batch / (steps - 1)):
            continue  # the same micro-batch as the previous count
        plan = training_plan(mcfg, micro, batch, length, cuda)
        if plan.total <= limit:
            return plan
    need = training_plan(mcfg, 1, batch, length, cuda).total / GB
    raise AniraInputError(
        f"{what}: training needs {need:.3g} GB at micro-batch 1 (sequences of {length} tokens), "
        f"more than gpu_mem_gb={limit_gb:g}"
    )


def fit_evaluation(mcfg: ModelConfig, batch: int, length: int, limit_gb: float, what: str) -> Plan:
    """The evaluation plan at the largest batch (``batch`` halved until it fits) whose peak fits
    ``limit_gb``; one :class:`AniraInputError` line when one sequence does not fit."""
    size = batch
    while True:
        plan = evaluation_plan(mcfg, size, length, cuda=True)
        if plan.total <= limit_gb * GB:
            return plan
        if size == 1:
            raise AniraInputError(
                f"{what}: evaluation needs {plan.total / GB:.3g} GB for one sequence of {length} "
                f"tokens, more than gpu_mem_gb={limit_gb:g}"
            )
        size = max(1, size // 2)


@functools.cache
def estimated_shapes(
    task: str, scale: str, seed: int, overrides: tuple[str, ...] = ()
) -> tuple[int, int, int]:
    """(vocabulary size, longest training sequence, longest sequence of any split) of a task's
    dataset before it is generated, for planning: ``SHAPE_SAMPLES`` examples drawn at the largest
    training size and at the largest size of any split, the longest of each times ``SHAPE_MARGIN``
    (lengths vary within a size; the training job replans from its data)."""
    dataset = planned_dataset(task, scale, seed, overrides)
    built, plan = dataset.task, dataset.plan
    rng = np.random.default_rng(seed)

    def longest(size: int) -> int:
        drawn = max(len(built.sample(size, rng).token_str) for _ in range(SHAPE_SAMPLES))
        return math.ceil(drawn * SHAPE_MARGIN)

    largest = max(size for _, size, _ in plan)
    vocab = len(built.vocab_tokens(largest)) + 1  # <pad>
    return (
        vocab,
        longest(max(size for split, size, _ in plan if split == "train")),
        longest(largest),
    )


def measured_peak(mcfg: ModelConfig, batch: int, length: int, train: bool = True) -> int:
    """The peak bytes of one CPU training step (forward, loss, backward, AdamW step, from a
    model whose optimizer state exists already) or, with ``train=False``, of one forward pass
    without gradients, from ``torch.profiler``'s memory timeline of the step."""
    with probe_rng():
        return _profiled_peak(mcfg, batch, length, train)


def _profiled_peak(mcfg: ModelConfig, batch: int, length: int, train: bool) -> int:
    from torch.profiler import ProfilerActivity, profile

    model = AniraModel(buildable(mcfg, max_seq_len=length))
    tokens = torch.randint(1, mcfg.vocab_size, (batch, length))
    model.train(train)
    answers = torch.ones_like(tokens, dtype=torch.bool)
    optimizer = torch.optim.AdamW(model.parameters())

    def step() -> None:
        if not train:
            with torch.no_grad():
                model(tokens)
            return
        loss, _ = model.loss(model(tokens), tokens, answers)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if train:
        step()  # AdamW allocates its moments at the first step
    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        step()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "timeline.json")
        with warnings.catch_warnings():  # deprecated for CUDA's snapshots; the CPU has no other
            warnings.simplefilter("ignore", FutureWarning)
            prof.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    return int(np.asarray(sizes, dtype=np.int64).sum(axis=1).max())


def check_limit(value: object) -> float:
    """``gpu_mem_gb`` as a positive number, or an :class:`AniraInputError` line."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise AniraInputError(f"gpu_mem_gb must be a positive number, got {value!r}")
    return float(value)
