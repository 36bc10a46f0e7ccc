"""Running a trained model: the inference library of the evaluation stage and of every analysis
that runs a model (probes, the accuracy-compute frontier, training dynamics).

- :func:`load_checkpoint`: a checkpoint's model, checked against its manifest and the data's
  vocabulary; :func:`inference_rule`: the rule that picks a router's executed depths.
- :func:`teacher_forced`: per-token records of one forward pass over gold sequences.
- :func:`greedy_generate`, :func:`sampled_generation`: decoding from the prompt (cached, or the
  prefix-rerun reference), greedy or at temperature 1 for tasks scored by sampling.
- :func:`evaluate_split`: both views of every example of a split, as :mod:`anira.evaluate` writes
  them (its docstring describes the records).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from anira.batches import PaddedSplit, autocast
from anira.checkpoint import read_state
from anira.dataset import (
    Vocabulary,
    row_to_example,
)
from anira.io import (
    AniraInputError,
    verify_manifest,
)
from anira.layout import MODEL
from anira.model import AniraModel, ModelConfig
from anira.model.decode import generate, generate_reference
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
