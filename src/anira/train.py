"""Train one recurrent Transformer (fixed, ANIRA-E or ANIRA-O) on one generated task.

    python -m anira.train task=brevo router=early seed=0 scale=mini \\
        data_dir=results/mini/data/brevo out_dir=results/mini/checkpoints/brevo/early/seed0

- AdamW with linear warmup and cosine decay to ``min_lr_ratio``; CUDA with bf16 autocast when
  present, CPU otherwise.
- Batches are a pure function of ``(seed, step)`` (one seeded permutation per epoch, after an
  optional size curriculum: ``task.scales.<scale>.curriculum``, see :class:`Curriculum`), and the
  checkpoint holds model, optimizer, scheduler, torch RNG and the metric accumulators, so an
  interrupted run resumed from ``last.pt`` ends with the same weights on CPU as one that never
  stopped.
- ``last.pt`` is written atomically every ``checkpoint_every`` steps; when training ends the
  outputs ``model.pt``, ``metrics.jsonl`` and ``config.yaml`` are written atomically with a
  checksum ``manifest.json``, and ``last.pt`` is removed.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from anira.batches import PaddedSplit, autocast, select_device, set_threads
from anira.cli import anira_main
from anira.data import SPLITS, load_split, load_vocab
from anira.io import (
    AniraInputError,
    atomic_path,
    atomic_write_text,
    write_manifest,
)
from anira.model import AniraModel, ModelConfig

CHECKPOINT = "model.pt"
RESUME = "last.pt"
METRICS = "metrics.jsonl"
CONFIG = "config.yaml"
# Keys that may differ between an interrupted run and its resumption.
RUN_LOCAL_KEYS = ("device", "threads", "stop_after_steps", "data_dir", "out_dir")


def task_scale(cfg: DictConfig) -> DictConfig:
    scales = cfg.task.scales
    if cfg.scale.name not in scales:
        raise AniraInputError(f"task {cfg.task.name} defines no sizes for scale {cfg.scale.name!r}")
    return scales[cfg.scale.name]


def training_config(cfg: DictConfig) -> DictConfig:
    """The scale's training settings with the task's adjustments at that scale
    (``task.scales.<scale>.training``): ``steps_factor`` multiplies the scale's steps (so an
    override of ``scale.train.steps`` still shrinks every task), other keys replace the scale's.
    Example: MANO's one-token answers need more steps and a lower lr than BREVO at ``mini``."""
    adjust = dict(task_scale(cfg).get("training") or {})
    factor = adjust.pop("steps_factor", 1)
    if isinstance(factor, bool) or not isinstance(factor, int | float) or factor <= 0:
        raise AniraInputError(f"training.steps_factor must be a positive number, got {factor!r}")
    merged = OmegaConf.merge(cfg.scale.train, adjust)
    merged.steps = round(merged.steps * factor)
    return merged


def model_config(cfg: DictConfig, vocab_size: int, max_seq_len: int) -> ModelConfig:
    max_depth = int(task_scale(cfg).max_depth)
    if max_depth < 1:
        raise AniraInputError(f"max_depth must be at least 1, got {max_depth}")
    router = cfg.router
    return ModelConfig(
        vocab_size=vocab_size,
        max_seq_len=max_seq_len,
        d_model=cfg.scale.model.d_model,
        n_heads=cfg.scale.model.n_heads,
        mlp_ratio=cfg.scale.model.mlp_ratio,
        max_depth=max_depth,
        router=router.name,
        online_rule=router.get("inference_rule", "median"),
        gamma=router.gamma,
        prior_base=router.prior_base,
        gumbel_tau=router.get("gumbel_tau", 1.0),
        execution=cfg.scale.model.execution,
    )


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


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in RUN_LOCAL_KEYS}


def max_sequence_length(data_dir: Path) -> int:
    """Longest sequence over every split: positions must cover the extrapolation sizes too."""
    lengths = [load_split(data_dir, split)["tokens"].map(len) for split in SPLITS]
    return max(int(split.max()) for split in lengths if len(split))  # a split may have no sizes


def train(cfg: DictConfig) -> Path:
    data_dir, out_dir = Path(cfg.data_dir), Path(cfg.out_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    train_cfg = training_config(cfg)
    total_steps = int(train_cfg.steps)
    if total_steps < 1:
        raise AniraInputError(f"train.steps must be positive, got {total_steps}")
    # Everything that can fail on bad input happens before the model is built.
    vocab = load_vocab(data_dir)
    frame = load_split(data_dir, "train")
    if set(frame["task"]) != {cfg.task.name}:
        raise AniraInputError(
            f"{data_dir} holds task {sorted(set(frame['task']))}, not {cfg.task.name}"
        )
    mcfg = model_config(cfg, len(vocab.tokens), max_sequence_length(data_dir))
    device = select_device(cfg.device)
    set_threads(cfg.threads)

    resume_path = out_dir / RESUME
    state = torch.load(resume_path, weights_only=True) if resume_path.is_file() else None
    if state is not None and comparable(state["config"]) != comparable(resolved):
        raise AniraInputError(f"{resume_path} is from another configuration; delete it to restart")

    curriculum = Curriculum(
        frame["size"].to_numpy(), float(task_scale(cfg).get("curriculum", 0.0)), total_steps
    )

    torch.manual_seed(cfg.seed)
    data = PaddedSplit.from_frame(frame)
    model = AniraModel(mcfg).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, train_cfg.warmup_steps, total_steps, train_cfg.min_lr_ratio),
    )
    start, metrics, meter = 0, [], Meter()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"])
        start, metrics, meter = state["step"], state["metrics"], Meter(state["meter"])
        print(f"resuming {out_dir} at step {start}/{total_steps}", flush=True)

    def checkpoint(step: int) -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None,
            },
            "step": step,
            "metrics": metrics,
            "meter": meter.sums,
            "config": resolved,
            "model_config": mcfg.__dict__,
            "vocab_hash": vocab.hash,
        }

    def save(path: Path, step: int) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint(step), tmp)

    print(
        f"train {cfg.task.name}/{cfg.router.name} seed={cfg.seed} scale={cfg.scale.name}: "
        f"{model.num_params():,} parameters, D={mcfg.max_depth}, {len(data)} examples, "
        f"{total_steps} steps on {device}",
        flush=True,
    )
    model.train()
    run_start = window_start = time.perf_counter()
    for steps_this_run, step in enumerate(range(start, total_steps), start=1):
        idx = curriculum.batch(step, train_cfg.batch_size, cfg.seed)
        tokens, answer_mask = (t.to(device) for t in data.batch(idx))
        with autocast(device):
            out = model(tokens)
            loss, parts = model.loss(out, tokens, answer_mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        optimizer.step()
        scheduler.step()

        with torch.no_grad():
            targets = answer_mask[:, 1:]
            hits = out.logits[:, :-1].argmax(-1) == tokens[:, 1:]
            meter.add(
                loss=float(loss),
                ce=float(parts.get("ce", loss)),
                kl=float(parts.get("kl", 0.0)),
                correct=float(hits[targets].sum()),
                answers=float(targets.sum()),
                depth_sum=float(out.depth[:, :-1][targets].sum()),
                tokens=float((tokens != 0).sum()),
                steps=1.0,
            )
        done = step + 1
        if done % train_cfg.log_every == 0 or done == total_steps:
            elapsed = time.perf_counter() - window_start
            row = {"step": done, "lr": scheduler.get_last_lr()[0], **meter.row()}
            row["tokens_per_s"] = meter.sums["tokens"] / max(elapsed, 1e-9)
            metrics.append(row)
            rate = steps_this_run / (time.perf_counter() - run_start)
            print(
                f"step {done}/{total_steps} loss {row['loss']:.3f} "
                f"acc {row['answer_accuracy']:.3f} "
                f"depth {row['mean_depth']:.2f} | {row['tokens_per_s']:.0f} tok/s "
                f"{rate:.2f} step/s | ETA {format_duration((total_steps - done) / rate)}",
                flush=True,
            )
            meter, window_start = Meter(), time.perf_counter()
        if done % train_cfg.checkpoint_every == 0 and done < total_steps:
            save(resume_path, done)
        if cfg.stop_after_steps and steps_this_run >= cfg.stop_after_steps and done < total_steps:
            save(resume_path, done)
            print(f"stopped after {steps_this_run} steps; rerun to resume from {resume_path}")
            sys.exit(0)

    save(out_dir / CHECKPOINT, total_steps)
    atomic_write_text(out_dir / METRICS, "".join(json.dumps(r) + "\n" for r in metrics))
    atomic_write_text(out_dir / CONFIG, OmegaConf.to_yaml(cfg, resolve=True))
    write_manifest(out_dir, [CHECKPOINT, METRICS, CONFIG])
    resume_path.unlink(missing_ok=True)
    print(f"wrote {out_dir / CHECKPOINT} in {format_duration(time.perf_counter() - run_start)}")
    return out_dir / CHECKPOINT


@anira_main("train")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
