"""Evaluate a trained checkpoint on every split: per-token and per-example Parquet records.

    python -m anira.evaluate checkpoint=results/mini/checkpoints/brevo/early/seed0 \\
        data_dir=results/mini/data/brevo out_dir=results/mini/eval/brevo/early/seed0

Two views of each example:
- **teacher-forced** (per-token records): one forward pass over the gold sequence. The record of
  token t carries the prediction made at position t-1 (the position whose output emits t): its
  correctness as the task scores it (``Task.token_correct``: equal to the gold token by default;
  LANO: the prefix stays in the language), executed depth and expected depth E_q[d]. Position 0
  is predicted by nothing and has no record.
- **generated** (per-example ``correct``): greedy decoding from the prompt (through ``<ans>``) until
  ``<eos>``, scored by the task (BREVO accepts any valid order). The model is causal and each
  token's depth depends only on its prefix, so one forward pass over a prefix gives exactly the
  incremental decoding semantics of docs/study.md (a query at iteration r reads a past token's
  state at iteration min(r, d_past)). ``decode=cached`` (default) decodes with a per-iteration
  key/value cache (``anira.model.decode.generate``); ``decode=reference`` re-runs the prefix for
  every token, the definition the cache is tested against (same tokens and depths, much slower).

``mean_depth`` is the mean executed depth over the generated answer tokens (what the model spends
when it solves the example); ``tf_mean_depth`` and ``mean_expected_depth`` are over the gold answer.

A third table, ``<split>.generated.parquet``, follows the **generated** answers the task scores
correct: one row per token of each such answer (``step`` 0, 1, … after ``<ans>``, ``<eos>``
included) with the executed depth that emitted it and every task feature recomputed along the
order the model actually produced (``Task.answer_features``: for BREVO the frontier, newly enabled
nodes and DFS depth of that order, not of the gold one). Decision-timing analyses run on these
correctly solved samples, in their own order.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from anira.batches import PaddedSplit, autocast, select_device, set_threads
from anira.checkpoint import read_state
from anira.cli import anira_main
from anira.data import Vocabulary, load_split, load_task, load_vocab
from anira.io import (
    AniraInputError,
    atomic_write_text,
    atomic_write_with,
    ensure_writable,
    verify_manifest,
    write_manifest,
)
from anira.layout import MODEL, RECORD_KINDS, RUN_CONFIG, SPLITS, record_file
from anira.model import AniraModel, ModelConfig
from anira.model.decode import generate, generate_reference
from anira.model.model import ONLINE_RULES
from anira.spec import choice, integer
from anira.tasks import Example, Task

EXTRA_ANSWER_TOKENS = 4  # generation may run this far past the gold answer before it is cut off


def load_checkpoint(
    directory: Path, vocab: Vocabulary, rule: str | None
) -> tuple[AniraModel, dict]:
    verify_manifest(directory, [MODEL])
    state = read_state(directory / MODEL)
    if state["vocab_hash"] != vocab.hash:
        raise AniraInputError(
            f"checkpoint {directory} was trained on another vocabulary than the data's vocab.json"
        )
    model_cfg = dict(state["model_config"])
    if rule is not None:
        model_cfg["online_rule"] = rule
    model = AniraModel(ModelConfig(**model_cfg))
    model.load_state_dict(state["model"])
    return model.eval(), state


def inference_rule(model_cfg: ModelConfig) -> str:
    return {"fixed": "fixed", "early": "mode"}.get(model_cfg.router, model_cfg.online_rule)


def batches_by_length(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def teacher_forced(model, data: PaddedSplit, batch_size: int, device) -> dict[str, np.ndarray]:
    """Per position t ≥ 1 of every example: the predicted token, executed and expected depth."""
    n, width = data.tokens.shape
    predicted = np.zeros((n, width), dtype=np.int64)
    depth = np.zeros((n, width), dtype=np.int16)
    expected = np.zeros((n, width), dtype=np.float32)
    for idx in batches_by_length(data.lengths.numpy(), batch_size):
        tokens, _ = data.batch(idx)
        tokens = tokens.to(device)
        with autocast(device):
            out = model(tokens)
        t = tokens.shape[1]
        predicted[idx, 1:t] = out.logits[:, :-1].argmax(-1).cpu().numpy()
        depth[idx, 1:t] = out.depth[:, :-1].cpu().numpy()
        expected[idx, 1:t] = out.expected_depth[:, :-1].float().cpu().numpy()
    return {"predicted": predicted, "depth": depth, "expected": expected}


@torch.no_grad()
def greedy_generate(
    model, data: PaddedSplit, vocab: Vocabulary, batch_size: int, device, cached: bool = True
) -> tuple[list[list[int]], list[np.ndarray]]:
    """Greedy answers (token ids after ``<ans>``) and the executed depth that emitted each token:
    with the key/value cache, or (``cached=False``) by re-running the prefix (the reference)."""
    decode = generate if cached else generate_reference
    answers: list[list[int]] = [[] for _ in range(len(data))]
    depths: list[np.ndarray] = [np.zeros(0, dtype=np.int16)] * len(data)
    tokens_all = data.tokens.numpy()
    prompt_len = np.array(
        [int(np.flatnonzero(row == vocab.ans_id)[0]) + 1 for row in tokens_all], dtype=np.int64
    )
    # Positions beyond the model's context are never generated (RoPE or not, the model asserts it).
    limit = np.minimum(data.lengths.numpy() + EXTRA_ANSWER_TOKENS, model.cfg.max_seq_len)
    for idx in batches_by_length(limit, batch_size):
        width = int(limit[idx].max())
        buffer = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            buffer[row, : prompt_len[i]] = data.tokens[i, : prompt_len[i]]
        cur = torch.as_tensor(prompt_len[idx], device=device)
        stop = torch.as_tensor(limit[idx], device=device)
        with autocast(device):
            buffer, cur, executed = decode(model, buffer.to(device), cur, stop, vocab.eos_id)
        cur, executed = cur.cpu(), executed.cpu().numpy()
        out = buffer.cpu().numpy()
        for row, i in enumerate(idx):
            start, end = prompt_len[i], int(cur[row])
            answers[i] = out[row, start:end].tolist()
            depths[i] = executed[row, start - 1 : end - 1]
    return answers, depths


GENERATED_COLUMNS = ("example_id", "size", "step", "token", "executed_depth")


def generated_records(
    task: Task,
    frame: pd.DataFrame,
    generated: list[list[str]],
    depths: list[np.ndarray],
    correct: list[bool],
) -> pd.DataFrame:
    """Per token of every correct generated answer: its executed depth and the task's features
    along the generated order (``f_<feature>``, NaN where undefined)."""
    columns = [*GENERATED_COLUMNS, *(f"f_{name}" for name in task.features)]
    parts = []
    for row, record in enumerate(frame.itertuples(index=False)):
        if not correct[row]:
            continue
        answer = generated[row]
        features = task.answer_features(json.loads(record.instance), answer)
        part = {
            "example_id": record.id,
            "size": int(record.size),
            "step": np.arange(len(answer)),
            "token": np.asarray(answer, dtype=object),
            "executed_depth": depths[row],
        }
        for name in task.features:
            part[f"f_{name}"] = np.array(
                [np.nan if v is None else v for v in features[name]], dtype=float
            )
        parts.append(pd.DataFrame(part))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    return pd.concat(parts, ignore_index=True)[columns]


def evaluate_split(
    model: AniraModel,
    task: Task,
    vocab: Vocabulary,
    frame: pd.DataFrame,
    meta: dict,
    batch_size: int,
    device,
    cached: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    data = PaddedSplit.from_frame(frame)
    tf = teacher_forced(model, data, batch_size, device)
    answers, gen_depths = greedy_generate(model, data, vocab, batch_size, device, cached)
    feature_cols = [c for c in frame.columns if c.startswith("f_")]
    token_parts, example_rows, generated_all, correct_all = [], [], [], []
    for row, record in enumerate(frame.itertuples(index=False)):
        n = len(record.tokens)
        mask = np.asarray(record.answer_mask, dtype=bool)
        example = Example(
            token_str=list(record.token_str),
            answer_mask=list(mask),
            size=int(record.size),
            features={},
            instance=json.loads(record.instance),
        )
        # Position 0 is predicted by nothing; its placeholder is never scored (a prompt token).
        predicted = [record.token_str[0], *vocab.decode(tf["predicted"][row, 1:n].tolist())]
        correct = pd.array(task.token_correct(example, predicted)[1:], dtype="boolean")
        part = {
            "example_id": record.id,
            "size": record.size,
            "position": np.arange(1, n),
            "token": np.asarray(record.token_str, dtype=object)[1:],
            "is_answer": mask[1:],
            "correct": correct,
            "executed_depth": tf["depth"][row, 1:n],
            "expected_depth": tf["expected"][row, 1:n],
        }
        for col in feature_cols:
            part[col] = np.asarray(getattr(record, col), dtype=float)[1:]
        token_parts.append(pd.DataFrame(part))

        generated = vocab.decode(answers[row])
        generated_all.append(generated)
        correct_all.append(bool(task.is_correct(example, generated)))
        answer_positions = mask[1:]
        example_rows.append(
            {
                "example_id": record.id,
                "size": int(record.size),
                "correct": correct_all[-1],
                "tf_correct": bool(correct[answer_positions].fillna(True).all()),
                "mean_depth": float(gen_depths[row].mean()) if len(gen_depths[row]) else np.nan,
                "tf_mean_depth": float(tf["depth"][row, 1:n][answer_positions].mean()),
                "mean_expected_depth": float(tf["expected"][row, 1:n][answer_positions].mean()),
                "n_answer_tokens": int(mask.sum()),
                "generated": " ".join(generated),
            }
        )
    tokens = pd.concat(token_parts, ignore_index=True)
    examples = pd.DataFrame(example_rows)
    generated_tokens = generated_records(task, frame, generated_all, gen_depths, correct_all)
    for table in (tokens, examples, generated_tokens):
        for key, value in meta.items():
            table.insert(0, key, value)
    return tokens, examples, generated_tokens


def evaluation_settings(cfg: DictConfig) -> dict:
    """The command's own settings, validated before any input is read."""
    unknown = sorted(set(cfg.splits) - set(SPLITS))
    if unknown:
        raise AniraInputError(f"unknown splits {unknown}; choose from {list(SPLITS)}")
    rule = cfg.get("inference_rule")
    return {
        "batch_size": None if cfg.batch_size is None else integer(cfg.batch_size, "batch_size", 1),
        "max_train_examples": integer(cfg.max_train_examples, "max_train_examples", 0),
        "threads": integer(cfg.threads, "threads", 0),
        "inference_rule": None if rule is None else choice(rule, "inference_rule", ONLINE_RULES),
        "decode": choice(cfg.decode, "decode", ("cached", "reference")),
    }


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
    train_cfg = state["config"]
    task = load_task(data_dir)  # the dataset's effective parameters score its examples
    ensure_writable(out_dir)
    device = select_device(cfg.device)
    set_threads(settings["threads"])
    model.to(device)
    batch_size = settings["batch_size"] or int(train_cfg["scale"]["eval"]["batch_size"])
    meta = {
        "task": train_cfg["task"]["name"],
        "router": train_cfg["router"]["name"],
        "seed": int(train_cfg["seed"]),
        "inference_rule": inference_rule(model.cfg),
    }
    tables: dict[str, tuple[pd.DataFrame, ...]] = {}
    for split, frame in frames.items():
        if frame.empty:
            continue
        limit = settings["max_train_examples"]
        if split == "train" and len(frame) > limit:
            keep = np.random.default_rng(0).choice(len(frame), limit, replace=False)
            frame = frame.iloc[np.sort(keep)].reset_index(drop=True)
        started = time.perf_counter()
        tables[split] = evaluate_split(
            model,
            task,
            vocab,
            frame,
            meta | {"split": split},
            batch_size,
            device,
            cached=settings["decode"] == "cached",
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
    atomic_write_text(out_dir / RUN_CONFIG, OmegaConf.to_yaml(cfg, resolve=True))
    write_manifest(out_dir, [*written, RUN_CONFIG])
    return out_dir


@anira_main("evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
