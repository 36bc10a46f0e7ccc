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
from anira.data import (
    Vocabulary,
    dataset_provenance,
    load_split,
    load_task,
    load_vocab,
    other_dataset,
    row_to_example,
)
from anira.io import (
    AniraInputError,
    atomic_write_text,
    atomic_write_with,
    ensure_writable,
    sha256_file,
    verify_manifest,
    write_manifest,
)
from anira.layout import MANIFEST, MODEL, RECORD_KINDS, RUN_CONFIG, SPLITS, TRAIN, record_file
from anira.model import AniraModel, ModelConfig
from anira.model.config import ONLINE_RULES
from anira.model.decode import generate, generate_reference
from anira.spec import RunSpec, choice, flag, integer
from anira.tasks import Example, Task

EXTRA_ANSWER_TOKENS = 4  # generation may run this far past the gold answer before it is cut off


def load_checkpoint(
    directory: Path, vocab: Vocabulary, rule: str | None, name: str = MODEL
) -> tuple[AniraModel, dict]:
    """The model saved as ``name`` in a checkpoint directory (``model.pt``, or the weights at a
    training-dynamics step), checked against the manifest and the data's vocabulary; ``rule``
    replaces an online router's inference rule."""
    verify_manifest(directory, [name])
    state = read_state(directory / name)
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
    """The rule that picked the executed depths (an online router's is configurable). act halts
    where Σ h ≥ 1 − ε; expert_choice infers with its causal predictor of the top-k choice; random
    draws from its histogram."""
    rules = {
        "fixed": "fixed",
        "early": "mode",
        "act": "threshold",
        "expert_choice": "predictor",
        "random": "random",
    }
    return rules.get(model_cfg.router, model_cfg.online_rule)


def batches_by_length(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def teacher_forced(
    model, data: PaddedSplit, batch_size: int, device, log_probs: bool = False
) -> dict[str, np.ndarray]:
    """Per position t ≥ 1 of every example, from the output at t − 1 (the position that predicts
    token t): the predicted token, executed and expected depth, and with ``log_probs`` the model's
    log next-token distribution. ``depth_at_t`` / ``expected_at_t``: the same at position t itself
    (the depth spent on reading token t), the other pairing of token and depth."""
    n, width = data.tokens.shape
    out_arrays = {
        "predicted": np.zeros((n, width), dtype=np.int64),
        "depth": np.zeros((n, width), dtype=np.int16),
        "expected": np.zeros((n, width), dtype=np.float32),
        "depth_at_t": np.zeros((n, width), dtype=np.int16),
        "expected_at_t": np.zeros((n, width), dtype=np.float32),
    }
    if log_probs:
        out_arrays["log_probs"] = np.zeros((n, width, model.cfg.vocab_size), dtype=np.float32)
    for idx in batches_by_length(data.lengths.numpy(), batch_size):
        tokens, _ = data.batch(idx)
        tokens = tokens.to(device)
        with autocast(device):
            out = model(tokens)
        t = tokens.shape[1]
        out_arrays["predicted"][idx, 1:t] = out.logits[:, :-1].argmax(-1).cpu().numpy()
        out_arrays["depth"][idx, 1:t] = out.depth[:, :-1].cpu().numpy()
        out_arrays["expected"][idx, 1:t] = out.expected_depth[:, :-1].float().cpu().numpy()
        out_arrays["depth_at_t"][idx, 1:t] = out.depth[:, 1:].cpu().numpy()
        out_arrays["expected_at_t"][idx, 1:t] = out.expected_depth[:, 1:].float().cpu().numpy()
        if log_probs:
            logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
            out_arrays["log_probs"][idx, 1:t] = logp.cpu().numpy()
    return out_arrays


class TemperatureSampler:
    """Draws each next token from softmax(logits / temperature) with its own seeded generator, so
    a seed and a batch size give the same samples on every run (CPU)."""

    def __init__(self, temperature: float, seed: int) -> None:
        if not temperature > 0:
            raise AniraInputError(f"sampling temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.float().cpu() / self.temperature, dim=-1)
        draws = torch.multinomial(probs, 1, generator=self.generator)[:, 0]
        return draws.to(logits.device)


def prompt_lengths(data: PaddedSplit, vocab: Vocabulary) -> np.ndarray:
    """Per example: the number of tokens up to and including ``<ans>``."""
    return np.array(
        [int(np.flatnonzero(row == vocab.ans_id)[0]) + 1 for row in data.tokens.numpy()],
        dtype=np.int64,
    )


@torch.no_grad()
def continue_prompts(
    model,
    prompts: list[np.ndarray],
    limit: np.ndarray,
    eos_id: int,
    batch_size: int,
    device,
    cached: bool = True,
    choose=None,
) -> tuple[list[list[int]], list[np.ndarray]]:
    """Continue each prompt (token ids) until ``<eos>`` or ``limit[i]`` tokens in all, picking
    each token with ``choose(logits)`` (``None``: greedy); with the key/value cache, or
    (``cached=False``) by re-running the prefix (the reference). Returns the continuations and
    the executed depth that emitted each of their tokens."""
    decode = generate if cached else generate_reference
    answers: list[list[int]] = [[] for _ in prompts]
    depths: list[np.ndarray] = [np.zeros(0, dtype=np.int16)] * len(prompts)
    prompt_len = np.array([len(p) for p in prompts], dtype=np.int64)
    # Positions beyond the model's context are never generated (RoPE or not, the model asserts it).
    limit = np.minimum(limit, model.cfg.max_seq_len)
    for idx in batches_by_length(limit, batch_size):
        width = int(limit[idx].max())
        buffer = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            buffer[row, : prompt_len[i]] = torch.as_tensor(prompts[i])
        cur = torch.as_tensor(prompt_len[idx], device=device)
        stop = torch.as_tensor(limit[idx], device=device)
        with autocast(device):
            buffer, cur, executed = decode(model, buffer.to(device), cur, stop, eos_id, choose)
        cur, executed = cur.cpu(), executed.cpu().numpy()
        out = buffer.cpu().numpy()
        for row, i in enumerate(idx):
            start, end = prompt_len[i], int(cur[row])
            answers[i] = out[row, start:end].tolist()
            depths[i] = executed[row, start - 1 : end - 1]
    return answers, depths


def greedy_generate(
    model, data: PaddedSplit, vocab: Vocabulary, batch_size: int, device, cached: bool = True
) -> tuple[list[list[int]], list[np.ndarray]]:
    """Greedy answers (token ids after ``<ans>``) and the executed depth that emitted each token;
    an answer may run ``EXTRA_ANSWER_TOKENS`` past the gold one."""
    prompt_len = prompt_lengths(data, vocab)
    prompts = [data.tokens[i, : prompt_len[i]].numpy() for i in range(len(data))]
    limit = data.lengths.numpy() + EXTRA_ANSWER_TOKENS
    return continue_prompts(model, prompts, limit, vocab.eos_id, batch_size, device, cached)


COMPLETION_CUTS = {"completion_quarter": 0.25, "completion_half": 0.5}


def sampled_generation(
    model,
    task: Task,
    data: PaddedSplit,
    examples: list[Example],
    vocab: Vocabulary,
    batch_size: int,
    device,
    seed: int | list[int],
    cached: bool = True,
) -> tuple[list[list[int]], list[np.ndarray], dict[str, np.ndarray]]:
    """Generative evaluation of a task scored by sampling (temperature 1, up to
    ``task.sampling_length()`` answer tokens, so no cut-off below the longest valid answer).

    Returns one sample per example from its prompt (with the executed depths that emitted it)
    and per-example columns: ``ended`` (the sample stopped with ``<eos>``), ``sample_length``
    (its tokens before ``<eos>``), ``length_prob`` (the task's probability of that length; 0 for
    a sample that never ended) and, for each cut in :data:`COMPLETION_CUTS`, whether the gold
    answer's first ⌊cut·n⌋ tokens continued by a sample make a correct answer.
    """
    prompt_len = prompt_lengths(data, vocab)
    tokens = [data.tokens[i, : data.lengths[i]].numpy() for i in range(len(data))]
    budget = task.sampling_length()
    streams = np.random.SeedSequence(seed).spawn(1 + len(COMPLETION_CUTS))

    def sample(prompts: list[np.ndarray], stream: np.random.SeedSequence):
        limit = prompt_len + budget
        sampler = TemperatureSampler(1.0, int(stream.generate_state(1)[0]))
        return continue_prompts(
            model, prompts, limit, vocab.eos_id, batch_size, device, cached, sampler
        )

    prompts = [t[:p] for t, p in zip(tokens, prompt_len, strict=True)]
    answers, depths = sample(prompts, streams[0])
    columns: dict[str, np.ndarray] = {}
    ended = np.array([bool(a) and a[-1] == vocab.eos_id for a in answers])
    columns["ended"] = ended
    columns["sample_length"] = np.array(
        [len(a) - 1 if e else len(a) for a, e in zip(answers, ended, strict=True)]
    )
    columns["length_prob"] = np.array(
        [
            task.length_probability(int(m)) if e else 0.0
            for m, e in zip(columns["sample_length"], ended, strict=True)
        ]
    )
    for (name, cut), stream in zip(COMPLETION_CUTS.items(), streams[1:], strict=True):
        keep = [
            int(np.floor(cut * (len(t) - p - 1))) for t, p in zip(tokens, prompt_len, strict=True)
        ]
        prefixes = [t[: p + k] for t, p, k in zip(tokens, prompt_len, keep, strict=True)]
        continued, _ = sample(prefixes, stream)
        columns[name] = np.array(
            [
                task.is_correct(ex, vocab.decode([*t[p : p + k], *c]))
                for ex, t, p, k, c in zip(
                    examples, tokens, prompt_len, keep, continued, strict=True
                )
            ]
        )
    return answers, depths, columns


def answer_kl_bits(
    task: Task, example: Example, log_probs: np.ndarray, vocab: Vocabulary
) -> np.ndarray | None:
    """Per position t of the example (NaN off the answer): KL(p ‖ q) in bits between the task's
    exact distribution p of token t given the gold prefix and the model's q (``log_probs[t]``, the
    output at t − 1); ``None`` when the task has no exact distribution."""
    exact = task.answer_distributions(example)
    if exact is None:
        return None
    kl = np.full(len(example.token_str), np.nan)
    first = example.answer_mask.index(True)
    for k, dist in enumerate(exact):
        ids = vocab.encode(list(dist))
        p = np.array(list(dist.values()))
        kl[first + k] = float(np.sum(p * (np.log(p) - log_probs[first + k, ids])) / np.log(2))
    return kl


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
    sample_seed: int | list[int] = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    data = PaddedSplit.from_frame(frame)
    examples_in = [row_to_example(record._asdict(), ()) for record in frame.itertuples(index=False)]
    sampled = task.sampling_length() is not None
    tf = teacher_forced(model, data, batch_size, device, log_probs=sampled)
    generative: dict[str, np.ndarray] = {}
    if sampled:
        answers, gen_depths, generative = sampled_generation(
            model, task, data, examples_in, vocab, batch_size, device, sample_seed, cached
        )
    else:
        answers, gen_depths = greedy_generate(model, data, vocab, batch_size, device, cached)
    feature_cols = [c for c in frame.columns if c.startswith("f_")]
    token_parts, example_rows, generated_all, correct_all = [], [], [], []
    for row, record in enumerate(frame.itertuples(index=False)):
        n = len(record.tokens)
        mask = np.asarray(record.answer_mask, dtype=bool)
        example = examples_in[row]
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
            "executed_depth_at_t": tf["depth_at_t"][row, 1:n],
            "expected_depth_at_t": tf["expected_at_t"][row, 1:n],
        }
        scores: dict[str, float] = {}
        best = task.token_best_match(example, predicted)
        if best is not None:
            part["best_match"] = pd.array(best[1:], dtype="boolean")
            scores["token_best_match"] = float(part["best_match"][mask[1:]].mean())
        if sampled:
            kl = answer_kl_bits(task, example, tf["log_probs"][row], vocab)
            if kl is not None:
                part["kl_bits"] = kl[1:]
                scores["mean_kl_bits"] = float(np.nanmean(kl))
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
                **{name: values[row].item() for name, values in generative.items()},
                **scores,
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
        "sample_seed": integer(cfg.sample_seed, "sample_seed", 0),
        "allow_other_data": flag(cfg.allow_other_data, "allow_other_data"),
    }


def check_inputs(
    ckpt_dir: Path, data_dir: Path, state: dict, frames: dict, model: AniraModel, allow: bool
) -> dict:
    """What the evaluation was made from (recorded in its ``config.yaml``: the dataset's
    :func:`~anira.data.dataset_provenance` and the checkpoint's manifest digest; with
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
