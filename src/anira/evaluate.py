"""Evaluate a trained checkpoint on every split: per-token and per-example Parquet records.

    python -m anira.evaluate checkpoint=results/mini/checkpoints/brevo/early/seed0 \\
        data_dir=results/mini/data/brevo out_dir=results/mini/eval/brevo/early/seed0

Two views of each example:
- **teacher-forced** (per-token records): one forward pass over the gold sequence. The record of
  token t carries the prediction made at position t-1 (the position whose output emits t): its
  correctness as the task scores it (``Task.token_correct``: equal to the gold token by default;
  LANO: the prefix stays in the language), executed depth and expected depth E_q[d]. Position 0
  is predicted by nothing and has no record. That pairing (token t with the depth at t − 1, the
  computation that produced it) is the one every table uses; ``executed_depth_at_t`` and
  ``expected_depth_at_t`` hold the other one (the depth spent at position t, reading token t).
  Where the task knows the exact next-token distribution (LANO), ``best_match`` (the prediction is
  the unique most likely token) and ``kl_bits`` (KL(task ‖ model) in bits) are added.
- **generated** (per-example ``correct``): greedy decoding from the prompt (through ``<ans>``) until
  ``<eos>``, scored by the task (BREVO accepts any valid order). The model is causal and each
  token's depth depends only on its prefix, so one forward pass over a prefix gives exactly the
  incremental decoding semantics of docs/study.md (a query at iteration r reads a past token's
  state at iteration min(r, d_past)). ``decode=cached`` (default) decodes with a per-iteration
  key/value cache (``anira.model.decode.generate``); ``decode=reference`` re-runs the prefix for
  every token, the definition the cache is tested against (same tokens and depths, much slower).
  Tasks scored by **sampling** (``Task.sampling_length``; LANO, whose prompt is the same for every
  example, so greedy decoding would write one string per model) instead draw one answer per
  example at temperature 1 (``sample_seed``), up to the longest valid answer, plus completions of
  the gold answer cut at ¼ and ½; see :func:`sampled_generation` for the columns.

``mean_depth`` is the mean executed depth over the generated answer tokens (what the model spends
when it solves the example); ``tf_mean_depth`` and ``mean_expected_depth`` are over the gold answer.

A third table, ``<split>.generated.parquet``, follows the **generated** answers the task scores
correct: one row per token of each such answer (``step`` 0, 1, … after ``<ans>``, ``<eos>``
included) with the executed depth that emitted it and every task feature recomputed along the
order the model actually produced (``Task.answer_features``: for BREVO the frontier, newly enabled
nodes and DFS depth of that order, not of the gold one). Decision-timing analyses run on these
correctly solved samples, in their own order.

Provenance: a model is evaluated on the dataset it was trained on (the digest its checkpoint
records); another dataset is refused in one line naming both digests, unless
``allow_other_data=true`` (a transfer experiment). A sequence longer than the model's context is
refused before any split is evaluated. The output's ``config.yaml`` records the digests of the
dataset and of the checkpoint's manifest.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from anira.batches import select_device, set_threads
from anira.cli import anira_main
from anira.dataset import (
    dataset_provenance,
    load_split,
    load_task,
    load_vocab,
    other_dataset,
)
from anira.inference import evaluate_split, inference_rule, load_checkpoint
from anira.io import (
    AniraInputError,
    atomic_write_text,
    atomic_write_with,
    ensure_writable,
    sha256_file,
    write_manifest,
)
from anira.layout import MANIFEST, RECORD_KINDS, RUN_CONFIG, SPLITS, TRAIN, record_file
from anira.model import AniraModel
from anira.model.config import ONLINE_RULES
from anira.spec import RunSpec, choice, evaluation_caps, flag, integer


def evaluation_settings(cfg: DictConfig) -> dict:
    """The command's own settings, validated before any input is read."""
    unknown = sorted(set(cfg.splits) - set(SPLITS))
    if unknown:
        raise AniraInputError(f"unknown splits {unknown}; choose from {list(SPLITS)}")
    rule = cfg.get("inference_rule")
    max_train, max_eval = evaluation_caps(cfg)
    return {
        "batch_size": None if cfg.batch_size is None else integer(cfg.batch_size, "batch_size", 1),
        "max_train_examples": max_train,
        "max_eval_examples": max_eval,
        "threads": integer(cfg.threads, "threads", 0),
        "inference_rule": None if rule is None else choice(rule, "inference_rule", ONLINE_RULES),
        "decode": choice(cfg.decode, "decode", ("cached", "reference")),
        "sample_seed": integer(cfg.sample_seed, "sample_seed", 0),
        "allow_other_data": flag(cfg.allow_other_data, "allow_other_data"),
    }


def spread_by_length(frame: pd.DataFrame, limit: int) -> pd.DataFrame:
    """At most ``limit`` examples of ``frame`` at evenly spaced ranks of sequence length, the
    longest always among them (from two on, the shortest too), in the split's order: a capped
    evaluation still decodes at the split's longest shape, which is what a smoke run checks."""
    if len(frame) <= limit:
        return frame
    order = np.argsort(frame["tokens"].map(len).to_numpy(), kind="stable")
    ranks = np.unique(np.linspace(len(frame) - 1, 0, limit).round().astype(int))
    return frame.iloc[np.sort(order[ranks])].reset_index(drop=True)


def check_inputs(
    ckpt_dir: Path, data_dir: Path, state: dict, frames: dict, model: AniraModel, allow: bool
) -> dict:
    """What the evaluation was made from (recorded in its ``config.yaml``: the dataset's
    :func:`~anira.dataset.dataset_provenance` and the checkpoint's manifest digest; with
    ``allow_other_data``, the model's own dataset is in the checkpoint), after refusing a
    dataset other than the model's own (unless ``allow``: a deliberate transfer experiment) and a
    sequence longer than the model's context, before any work."""
    data = dataset_provenance(data_dir)
    trained = state["config"].get("data")
    if trained != data and not allow:
        raise AniraInputError(
            f"{other_dataset(ckpt_dir, trained, data_dir, data)}; evaluate it on its own "
            "dataset, or pass allow_other_data=true for a transfer experiment"
        )
    for split, frame in frames.items():
        longest = int(frame["tokens"].map(len).max()) if len(frame) else 0
        if longest > model.cfg.max_seq_len:
            raise AniraInputError(
                f"{data_dir} {split} has a sequence of {longest} tokens, longer than the context "
                f"of {ckpt_dir} ({model.cfg.max_seq_len}); evaluate it on data it can read"
            )
    return {"data": data, "checkpoint": {"manifest_sha256": sha256_file(ckpt_dir / MANIFEST)}}


def evaluate(cfg: DictConfig) -> Path:
    """Write the records of every requested split. A split without examples (the scale defines no
    sizes for it, e.g. no interp sizes) gets tables with no rows, so every evaluation directory
    has the same files."""
    settings = evaluation_settings(cfg)
    ckpt_dir, data_dir, out_dir = Path(cfg.checkpoint), Path(cfg.data_dir), Path(cfg.out_dir)
    vocab = load_vocab(data_dir)
    frames = {split: load_split(data_dir, split) for split in cfg.splits}
    if all(frame.empty for frame in frames.values()):
        raise AniraInputError(f"splits {list(cfg.splits)} of {data_dir} hold no examples")
    model, state = load_checkpoint(ckpt_dir, vocab, settings["inference_rule"])
    inputs = check_inputs(ckpt_dir, data_dir, state, frames, model, settings["allow_other_data"])
    run = RunSpec.from_saved(state["config"])
    task = load_task(data_dir)  # the dataset's effective parameters score its examples
    ensure_writable(out_dir)
    device = select_device(cfg.device)
    set_threads(settings["threads"])
    model.to(device)
    batch_size = settings["batch_size"] or run.eval_batch_size
    meta = {
        "task": run.task,
        "router": run.router,
        "seed": run.seed,
        "inference_rule": inference_rule(model.cfg),
    }
    tables: dict[str, tuple[pd.DataFrame, ...]] = {}
    for split, frame in frames.items():
        if frame.empty:
            continue
        limit = settings["max_train_examples"]
        if split == TRAIN and len(frame) > limit:
            keep = np.random.default_rng(0).choice(len(frame), limit, replace=False)
            frame = frame.iloc[np.sort(keep)].reset_index(drop=True)
        elif split != TRAIN and settings["max_eval_examples"] is not None:
            frame = spread_by_length(frame, settings["max_eval_examples"])
        started = time.perf_counter()
        # Each split samples from its own stream: adding a split never changes another's samples.
        split_seed = [settings["sample_seed"], SPLITS.index(split)]
        tables[split] = evaluate_split(
            model,
            task,
            vocab,
            frame,
            meta | {"split": split},
            batch_size,
            device,
            cached=settings["decode"] == "cached",
            sample_seed=split_seed,
        )
        examples = tables[split][1]
        print(
            f"{split}: {len(examples)} examples, accuracy {examples['correct'].mean():.3f}, "
            f"mean depth {examples['mean_depth'].mean():.2f} "
            f"({len(examples) / (time.perf_counter() - started):.0f} examples/s)",
            flush=True,
        )
    template = next(iter(tables.values()))
    written = []
    for split in frames:
        if split not in tables:
            print(f"{split}: no examples, empty tables", flush=True)
        for kind, table in zip(RECORD_KINDS, tables.get(split, template), strict=True):
            rows = table if split in tables else table.iloc[:0]
            name = record_file(split, kind)
            atomic_write_with(out_dir / name, lambda p, t=rows: t.to_parquet(p, index=False))
            written.append(name)
    record = OmegaConf.to_container(cfg, resolve=True) | inputs
    atomic_write_text(out_dir / RUN_CONFIG, OmegaConf.to_yaml(OmegaConf.create(record)))
    write_manifest(out_dir, [*written, RUN_CONFIG])
    return out_dir


@anira_main("evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
