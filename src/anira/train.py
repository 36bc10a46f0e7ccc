"""Train one recurrent Transformer (fixed, ANIRA-E or ANIRA-O) on one generated task.

    python -m anira.train task=brevo router=early seed=0 scale=mini \\
        data_dir=results/mini/data/brevo out_dir=results/mini/checkpoints/brevo/early/seed0

- The run is a :class:`~anira.spec.RunSpec` resolved (and validated) from the config before any
  data is read; a bad value is one ``error:`` line and exit status 2.
- AdamW with linear warmup and cosine decay to ``min_lr_ratio``; CUDA with bf16 autocast when
  present, CPU otherwise.
- Gradient accumulation: each batch runs as the fewest micro-batches whose planned peak
  (:mod:`anira.memory`, at the longest training sequence) fits ``gpu_mem_gb``; their losses are
  normalised by the whole batch's counts, so the step equals the whole batch's up to float
  rounding (the routers' random draws are split with the batch: ``gpu_mem_gb`` is part of the
  run's configuration). A training that does not fit at micro-batch 1 is one ``error:`` line.
- Batches are a pure function of ``(seed, step)`` (one seeded permutation per epoch, after an
  optional size curriculum: ``task.scales.<scale>.curriculum``, see :class:`Curriculum`), and the
  checkpoint holds model, optimizer, scheduler, torch RNG and the metric accumulators, so an
  interrupted run resumed from ``last.pt`` ends with the same weights on CPU as one that never
  stopped.
- ``last.pt`` is written atomically every ``checkpoint_every`` steps with its checksum in
  ``last.json``; when training ends the outputs ``model.pt``, ``metrics.jsonl`` and
  ``config.yaml`` are written atomically with a checksum ``manifest.json``, and ``last.pt`` is
  removed. With ``scale.train.dynamics_checkpoints`` = n > 0 the weights at n log-spaced steps
  (:func:`dynamics_steps`) are kept too, as ``dynamics/step<k>.pt`` (listed in the manifest), for
  the training-dynamics analysis; a resumed run keeps those written before it stopped. Outputs
  hold no timing and no machine-local setting, so the same run gives the same bytes; timing goes
  to the progress lines only.
- The output directory is probed with a write before the model is built; a failed write (disk
  full, ``ulimit -f``, permissions) is one line naming the file and the cause.
- A finished training of the same configuration is not redone: the run says so and exits 0;
  ``force=true`` retrains from step 0.
- The config (``config.yaml``, and ``model.pt``'s) records the dataset it was trained on
  (:func:`~anira.dataset.dataset_provenance`: its manifest's digest and that of its generating
  config); a finished training on another dataset is an error naming both, unless ``force=true``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from anira.batches import PaddedSplit, autocast, select_device, set_threads
from anira.checkpoint import read_state, state_bytes
from anira.cli import anira_main
from anira.dataset import Vocabulary, dataset_provenance, load_split, load_vocab, other_dataset
from anira.io import (
    AniraInputError,
    atomic_write_bytes,
    atomic_write_text,
    ensure_writable,
    format_duration,
    verify_manifest,
    write_manifest,
)
from anira.layout import (
    CHECKPOINT_FILES,
    DYNAMICS_DIR,
    METRICS,
    MODEL,
    RESUME,
    RESUME_MANIFEST,
    RUN_CONFIG,
    SPLITS,
    TRAIN,
    dynamics_file,
)
from anira.memory import GB, Plan, check_limit, fit_training
from anira.model import AniraModel, ModelConfig
from anira.spec import RunSpec, integer

# Keys that may differ between an interrupted run and its resumption; they are not saved.
# ``match_records`` is a path too: what it gives (the control's depth settings) is saved.
RUN_LOCAL_KEYS = (
    "device",
    "threads",
    "stop_after_steps",
    "force",
    "data_dir",
    "out_dir",
    "match_records",
)


class Status(enum.Enum):
    """How a call of :func:`train` ended; ``main`` maps each to exit status 0."""

    FINISHED = "finished"  # model.pt written
    STOPPED = "stopped"  # stop_after_steps reached, last.pt written
    UP_TO_DATE = "up to date"  # a finished training of this configuration exists


def batch_indices(step: int, n_examples: int, batch_size: int, seed: int) -> np.ndarray:
    """The examples of training step ``step``: a slice of epoch ``step // steps_per_epoch``'s
    permutation, seeded by ``(seed, epoch)`` so any step can be recomputed without state."""
    steps_per_epoch = max(1, n_examples // batch_size)
    epoch, position = divmod(step, steps_per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_examples)
    return order[position * batch_size : (position + 1) * batch_size]


class Curriculum:
    """Sizes admitted in increasing order over the first ``fraction`` of training (0 disables).

    With sizes s_1 < … < s_k, stage j < k covers steps [(j−1)·f·T/(k−1), j·f·T/(k−1)) and draws
    its batches from the examples of size ≤ s_j (seeded by ``(seed, step)``, so any step can be
    recomputed); from step f·T on, every size is in play and batches are epoch permutations.
    Why: a one-token answer such as MANO's gives no partial credit, so the larger sizes are noise
    until the smallest ones are solved; admitting them late lets the small ones be learned first.
    """

    def __init__(self, sizes: np.ndarray, fraction: float, total_steps: int) -> None:
        if not 0.0 <= fraction < 1.0:
            raise AniraInputError(f"curriculum must be a fraction in [0, 1), got {fraction}")
        self.n_examples = len(sizes)
        stages = np.unique(sizes)
        self.end = int(fraction * total_steps) if len(stages) > 1 else 0
        # The examples each stage draws from, built once rather than on every step.
        self.pools = [np.flatnonzero(sizes <= size) for size in stages]

    def batch(self, step: int, batch_size: int, seed: int) -> np.ndarray:
        if step >= self.end:
            return batch_indices(step, self.n_examples, batch_size, seed)
        pool = self.pools[step * (len(self.pools) - 1) // self.end]
        rng = np.random.default_rng([seed, step, len(self.pools)])
        return rng.choice(pool, size=min(batch_size, len(pool)), replace=False)


def dynamics_steps(total: int, warmup: int, count: int) -> list[int]:
    """The steps whose weights the training-dynamics analysis reads: ``count`` points log-spaced
    from the end of warmup (at least step 1) to the last step, rounded, duplicates merged.

    Why from the end of warmup: before it the learning rate is still ramping up, and log spacing
    from step 1 would spend half the points there (1, 3, 7, 17 of 800 steps at ``mini``).
    Example: 800 steps, warmup 50, 8 points → 50, 74, 110, 164, 244, 362, 538, 800.
    """
    if count == 0:
        return []
    first = min(max(warmup, 1), total)
    return sorted({int(np.rint(step)) for step in np.geomspace(first, total, count)})


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay from 1 to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class Meter:
    """Sums over the steps since the last log line; part of the checkpoint for exact resume."""

    FIELDS = ("loss", "ce", "kl", "correct", "answers", "depth_sum", "tokens", "steps")

    def __init__(self, state: dict[str, float] | None = None) -> None:
        self.sums = dict.fromkeys(self.FIELDS, 0.0) | (state or {})

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.sums[key] += value

    def row(self) -> dict[str, float]:
        s, steps = self.sums, max(self.sums["steps"], 1.0)
        return {
            "loss": s["loss"] / steps,
            "ce": s["ce"] / steps,
            "kl": s["kl"] / steps,
            "answer_accuracy": s["correct"] / max(s["answers"], 1.0),
            "mean_depth": s["depth_sum"] / max(s["answers"], 1.0),
        }


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in RUN_LOCAL_KEYS}


def max_sequence_length(data_dir: Path) -> int:
    """Longest sequence over every split: positions must cover the extrapolation sizes too."""
    lengths = [load_split(data_dir, split)["tokens"].map(len) for split in SPLITS]
    return max(int(split.max()) for split in lengths if len(split))  # a split may have no sizes


def finished_training(
    out_dir: Path, data_dir: Path, config: dict[str, Any], force: bool, files: list[str]
) -> bool:
    """Whether ``out_dir`` already holds the finished training of ``config`` (``files``: what
    its manifest must list and match).

    A finished training of another configuration, or one failing its manifest, is an error
    unless ``force`` (retrain from step 0, discarding ``last.pt``)."""
    if force:
        if (out_dir / MODEL).exists() or (out_dir / RESUME).exists():
            print(f"force=true: retraining {out_dir} from step 0", flush=True)
        for name in (RESUME, RESUME_MANIFEST):
            (out_dir / name).unlink(missing_ok=True)
        return False
    if not (out_dir / MODEL).exists():
        return False
    try:
        verify_manifest(out_dir, files)
    except AniraInputError as err:
        raise AniraInputError(f"{err}; pass force=true to retrain") from err
    trained = comparable(read_state(out_dir / MODEL)["config"])
    if trained.get("data") != config["data"]:
        stale = other_dataset(out_dir / MODEL, trained.get("data"), data_dir, config["data"])
        raise AniraInputError(f"{stale}; pass force=true to retrain")
    if trained != config:
        raise AniraInputError(
            f"{out_dir / MODEL} was trained with another configuration; "
            "choose another out_dir or pass force=true to retrain"
        )
    return True


def load_resume(out_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The state saved in ``last.pt``, after checking its checksum and configuration."""
    path = out_dir / RESUME
    if not path.exists():
        return None
    try:
        verify_manifest(out_dir, [RESUME], RESUME_MANIFEST)
    except AniraInputError as err:
        raise AniraInputError(f"{err}; delete it to restart from step 0") from err
    state = read_state(path)
    if comparable(state["config"]) != config:
        raise AniraInputError(f"{path} is from another configuration; delete it to restart")
    return state


@dataclasses.dataclass
class Run:
    """The moving parts of one training run; :meth:`state` is what ``last.pt`` holds."""

    model: AniraModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    device: torch.device
    config: dict[str, Any]
    vocab_hash: str
    step: int = 0
    metrics: list[dict[str, float]] = dataclasses.field(default_factory=list)
    meter: Meter = dataclasses.field(default_factory=Meter)

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
            },
            "step": self.step,
            "metrics": self.metrics,
            "meter": self.meter.sums,
            "config": self.config,
            "model_config": self.model.cfg.__dict__,
            "vocab_hash": self.vocab_hash,
        }

    def weights(self) -> dict[str, Any]:
        """What a training-dynamics checkpoint holds: ``model.pt`` less the optimizer's state."""
        return {
            "model": self.model.state_dict(),
            "step": self.step,
            "config": self.config,
            "model_config": self.model.cfg.__dict__,
            "vocab_hash": self.vocab_hash,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"])
        self.step, self.metrics, self.meter = state["step"], state["metrics"], Meter(state["meter"])


def build_run(
    spec: RunSpec, mcfg: ModelConfig, device: torch.device, config: dict, vocab: Vocabulary
) -> Run:
    torch.manual_seed(spec.seed)
    model = AniraModel(mcfg).to(device)
    settings = spec.train
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, settings.warmup_steps, settings.steps, settings.min_lr_ratio),
    )
    return Run(model, optimizer, scheduler, device, config, vocab.hash)


def train_step(
    run: Run, batches: list[tuple[torch.Tensor, torch.Tensor]], grad_clip: float
) -> None:
    """One optimisation step on a batch given as micro-batches ``(tokens, answer_mask)``, each
    trimmed to its own longest sequence. With more than one, their gradients accumulate, each
    loss normalised by the whole batch's answer tokens and sequences (``AniraModel.loss``'s
    ``totals``): the step is the whole batch's. Loss, accuracy and depth go to ``run.meter``."""
    totals = None
    if len(batches) > 1:
        totals = (
            sum(int(mask[:, 1:].sum()) for _, mask in batches),
            sum(len(tokens) for tokens, _ in batches),
        )
    run.optimizer.zero_grad(set_to_none=True)
    for tokens, answer_mask in batches:
        tokens, answer_mask = tokens.to(run.device), answer_mask.to(run.device)
        with autocast(run.device):
            out = run.model(tokens)
            loss, parts = run.model.loss(out, tokens, answer_mask, totals)
        loss.backward()
        with torch.no_grad():
            targets = answer_mask[:, 1:]
            hits = out.logits[:, :-1].argmax(-1) == tokens[:, 1:]
            run.meter.add(
                loss=parts["loss"],
                ce=parts["ce"],
                kl=parts["kl"],
                correct=float(hits[targets].sum()),
                answers=float(targets.sum()),
                depth_sum=float(out.depth[:, :-1][targets].sum()),
                tokens=float((tokens != 0).sum()),
            )
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.meter.add(steps=1.0)
    run.step += 1


def micro_batches(data: PaddedSplit, idx: np.ndarray, micro_batch: int) -> list:
    """The batch ``idx`` as consecutive micro-batches of ``micro_batch`` rows, each trimmed."""
    return [data.batch(idx[i : i + micro_batch]) for i in range(0, len(idx), micro_batch)]


def training_memory(spec: RunSpec, mcfg: ModelConfig, data: PaddedSplit, gpu_mem_gb: Any):
    """The memory plan of this training (:mod:`anira.memory`) at the longest training sequence:
    its micro-batch fits ``gpu_mem_gb`` of GPU memory (the plan is the GPU's, whatever device
    runs, so a run's micro-batches, hence its random draws, do not depend on the machine)."""
    limit = check_limit(gpu_mem_gb)
    what = f"task {spec.task} router {spec.router}"
    return fit_training(mcfg, spec.train.batch_size, data.tokens.shape[1], limit, what)


def plan_line(plan: Plan) -> str:
    micro = f"micro-batch {plan.micro_batch} × {plan.accumulation_steps}"
    return f"{micro}, planned peak {plan.total / GB:.1f} GB"


def log_window(run: Run, total: int, window_seconds: float, rate: float) -> None:
    """Close the metric window: a row for ``metrics.jsonl`` and a progress line with the rate."""
    row = {"step": run.step, "lr": run.scheduler.get_last_lr()[0], **run.meter.row()}
    run.metrics.append(row)
    tokens_per_s = run.meter.sums["tokens"] / max(window_seconds, 1e-9)
    print(
        f"step {run.step}/{total} loss {row['loss']:.3f} acc {row['answer_accuracy']:.3f} "
        f"depth {row['mean_depth']:.2f} | {tokens_per_s:.0f} tok/s {rate:.2f} step/s | "
        f"ETA {format_duration((total - run.step) / rate)}",
        flush=True,
    )
    run.meter = Meter()


def save_resume(run: Run, out_dir: Path) -> None:
    atomic_write_bytes(out_dir / RESUME, state_bytes(run.state()))
    write_manifest(out_dir, [RESUME], RESUME_MANIFEST)


def save_outputs(run: Run, out_dir: Path, files: list[str]) -> None:
    atomic_write_bytes(out_dir / MODEL, state_bytes(run.state()))
    atomic_write_text(out_dir / METRICS, "".join(json.dumps(r) + "\n" for r in run.metrics))
    atomic_write_text(out_dir / RUN_CONFIG, OmegaConf.to_yaml(run.config))
    write_manifest(out_dir, files)
    for name in (RESUME, RESUME_MANIFEST):
        (out_dir / name).unlink(missing_ok=True)


def resolve_match(cfg: DictConfig) -> DictConfig:
    """A matched-compute control (``router.match``): the val depths of the matched adaptive
    model's evaluation (``match_records``) set ``router.depth_probs`` (random) or ``router.depth``
    (fixed at the mean), so the run's saved config and spec hold them."""
    from anira.analysis.controls import matched_setting

    records, match = cfg.get("match_records"), cfg.router.get("match")
    if match is None:
        if records is not None:
            raise AniraInputError("match_records needs a control router (one with router.match)")
        return cfg
    if records is None:
        raise AniraInputError(
            f"router={cfg.router.name} matches {match}: give match_records=<the evaluation "
            f"directory of {match}, same task and seed>"
        )
    spec = RunSpec.from_config(cfg)  # validated first; D is the model's (the task's, for both)
    setting = matched_setting(spec.model.router, records, spec.model.max_depth)
    cfg = cfg.copy()
    with open_dict(cfg):
        for key, value in setting.items():
            cfg.router[key] = value
    print(f"{cfg.router.name} matches {match} ({records}): {setting}", flush=True)
    return cfg


def train(cfg: DictConfig) -> Status:
    cfg = resolve_match(cfg)
    spec = RunSpec.from_config(cfg)  # every bad value fails here, before any data is read
    stop_after = integer(cfg.stop_after_steps, "stop_after_steps", 0)
    threads = integer(cfg.threads, "threads", 0)
    data_dir, out_dir = Path(cfg.data_dir), Path(cfg.out_dir)
    config = comparable(OmegaConf.to_container(cfg, resolve=True))
    config["data"] = dataset_provenance(data_dir)  # model.pt and config.yaml record their data
    settings = spec.train
    kept = dynamics_steps(settings.steps, settings.warmup_steps, settings.dynamics_checkpoints)
    files = [*CHECKPOINT_FILES, *(dynamics_file(step) for step in kept)]
    if finished_training(out_dir, data_dir, config, bool(cfg.force), files):
        print(
            f"{out_dir / MODEL} is already trained with this configuration; nothing to do "
            "(force=true retrains)",
            flush=True,
        )
        return Status.UP_TO_DATE
    vocab = load_vocab(data_dir)
    frame = load_split(data_dir, TRAIN)
    if set(frame["task"]) != {spec.task}:
        held = sorted(set(frame["task"]))
        raise AniraInputError(f"{data_dir} holds task {held}, not {spec.task}")
    mcfg = spec.model_for(len(vocab.tokens), max_sequence_length(data_dir))
    state = load_resume(out_dir, config)
    ensure_writable(out_dir)
    if state is None:  # a fresh start: weights kept by an earlier, abandoned run are not ours
        shutil.rmtree(out_dir / DYNAMICS_DIR, ignore_errors=True)
    curriculum = Curriculum(frame["size"].to_numpy(), spec.curriculum, spec.train.steps)
    device = select_device(cfg.device)
    set_threads(threads)
    data = PaddedSplit.from_frame(frame)
    run = build_run(spec, mcfg, device, config, vocab)
    plan = training_memory(spec, mcfg, data, cfg.gpu_mem_gb)
    total = spec.train.steps
    if state is not None:
        run.restore(state)
        print(f"resuming {out_dir} at step {run.step}/{total}", flush=True)
    print(
        f"train {spec.task}/{spec.router} seed={spec.seed} scale={spec.scale}: "
        f"{run.model.num_params():,} parameters, D={mcfg.max_depth}, {len(data)} examples, "
        f"{total} steps on {device}; {plan_line(plan)}",
        flush=True,
    )
    run.model.train()
    run_start = window_start = time.perf_counter()
    first = run.step
    while run.step < total:
        idx = curriculum.batch(run.step, spec.train.batch_size, spec.seed)
        train_step(run, micro_batches(data, idx, plan.micro_batch), spec.train.grad_clip)
        if run.step in kept:
            atomic_write_bytes(out_dir / dynamics_file(run.step), state_bytes(run.weights()))
        if run.step % spec.train.log_every == 0 or run.step == total:
            rate = (run.step - first) / (time.perf_counter() - run_start)
            log_window(run, total, time.perf_counter() - window_start, rate)
            window_start = time.perf_counter()
        if run.step == total:
            break
        if run.step % spec.train.checkpoint_every == 0:
            save_resume(run, out_dir)
        if stop_after and run.step - first >= stop_after:
            save_resume(run, out_dir)
            resume = out_dir / RESUME
            print(f"stopped after {run.step - first} steps; rerun to resume from {resume}")
            return Status.STOPPED
    save_outputs(run, out_dir, files)
    elapsed = format_duration(time.perf_counter() - run_start)
    print(f"wrote {out_dir / MODEL} in {elapsed}", flush=True)
    return Status.FINISHED


@anira_main("train")
def main(cfg: DictConfig) -> None:
    train(cfg)  # every status is a success (exit 0); bad input raises and exits 2


if __name__ == "__main__":
    main()
