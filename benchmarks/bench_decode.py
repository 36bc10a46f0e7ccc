"""Greedy decoding speed: the key/value cache against the prefix-rerun reference.

    python benchmarks/bench_decode.py [--models mini,paper] [--contexts 64,256,1024,4096]
                                      [--tasks brevo,mano,...] [--new-tokens 32] [--out FILE]

Freshly initialised models (the speed does not depend on the weights; the fixed router, so every
token runs all D iterations: the most expensive case), batch of one example, float32 on the CPU.
Two sections:

- ``context``: for each model and context length T, a random prompt of T tokens, then
  ``--new-tokens`` generated tokens. Cached: the time per generated token after the prefill
  (``IncrementalDecoder`` steps); reference: the time of one forward over the T-token prefix,
  which is what the reference pays for every generated token. ``flops_per_token`` is the model's
  FLOP count of the new token at position T (``AniraModel.flops``: matmuls, constant, plus
  attention over the T past positions); ``us_per_mflop`` (time ÷ FLOPs) staying flat or falling
  with T means the cached cost grows no faster than the attention over the context.
- ``tasks``: one example per task at the paper's largest test size (``--tasks``), the paper-size
  model with the task's D: prompt and answer lengths, the cached time to decode the whole answer
  (prefill included), and the reference's time for the same answer *estimated* from two timed
  prefix forwards (at the prompt length and the final length; forward time a·T + b·T² fitted
  through them and summed over the answer's positions) — re-running thousands of long prefixes is
  what the cache avoids, and would take hours here. A reference forward longer than
  ``--max-reference-len`` tokens is not timed (the row says so). Answers longer than
  ``--max-answer`` tokens (Floyd–Warshall: ≈4,500) are decoded for their first ``--max-answer``
  tokens only (``timed_answer_tokens``), to keep the CPU run short.

Results go to ``benchmarks/results/decode.json`` with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from anira.io import atomic_write_json, measured_on
from anira.model import AniraModel, ModelConfig, ModelOutput
from anira.model.decode import IncrementalDecoder
from anira.spec import DatasetSpec

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 64
MODELS = {  # the scales' model sizes (config/scale/*.yaml), D = 6
    "mini": {"d_model": 64, "n_heads": 4},
    "paper": {"d_model": 384, "n_heads": 6},
}
TASK_TESTS = ("brevo", "mano", "lano", "clrs_sort", "clrs_bfs", "clrs_floyd_warshall")


def fresh_model(name: str, max_len: int, max_depth: int = 6) -> AniraModel:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=VOCAB, max_seq_len=max_len, max_depth=max_depth, **MODELS[name])
    return AniraModel(cfg).eval()


@torch.no_grad()
def cached_seconds(model: AniraModel, prompt: torch.Tensor, new_tokens: int) -> tuple[float, float]:
    """(prefill seconds, seconds per generated token) for one example, greedy, no <eos>."""
    decoder = IncrementalDecoder(model, 1, prompt.shape[1] + new_tokens)
    start = time.perf_counter()
    logits, _ = decoder.forward(prompt, torch.zeros(1, dtype=torch.long))
    prefill = time.perf_counter() - start
    nxt, pos = logits[:, -1].argmax(-1), torch.tensor([prompt.shape[1]])
    start = time.perf_counter()
    for _ in range(new_tokens):
        logits, _ = decoder.forward(nxt.view(1, 1), pos)
        nxt, pos = logits[:, 0].argmax(-1), pos + 1
    return prefill, (time.perf_counter() - start) / new_tokens


@torch.no_grad()
def forward_seconds(model: AniraModel, length: int, repeats: int) -> float:
    tokens = torch.randint(1, VOCAB, (1, length))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(tokens)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def token_flops(model: AniraModel, position: int) -> float:
    """FLOPs of the one token at ``position`` running all D iterations (``AniraModel.flops``)."""
    valid = torch.zeros((1, position + 1), dtype=torch.bool)
    valid[0, position] = True
    depth = torch.full(valid.shape, model.cfg.max_depth)
    out = ModelOutput(logits=None, depth=depth, expected_depth=None, q=None, kl=None, valid=valid)
    return model.flops(out)["flops"]


def context_rows(models: list[str], contexts: list[int], new_tokens: int) -> list[dict]:
    rows = []
    for name in models:
        model = fresh_model(name, max(contexts) + new_tokens)
        for length in contexts:
            prompt = torch.randint(1, VOCAB, (1, length))
            prefill, cached = cached_seconds(model, prompt, new_tokens)
            reference = forward_seconds(model, length, repeats=1 if length >= 2048 else 3)
            flops = token_flops(model, length)
            row = {
                "model": name,
                "context": length,
                "cached_tokens_per_s": 1.0 / cached,
                "reference_tokens_per_s": 1.0 / reference,
                "speedup": reference / cached,
                "prefill_s": prefill,
                "flops_per_token": flops,
                "us_per_mflop": cached * 1e6 / (flops / 1e6),
            }
            rows.append(row)
            print(
                f"{name:5} T={length:5}  cached {row['cached_tokens_per_s']:8.1f} tok/s  "
                f"reference {row['reference_tokens_per_s']:8.2f} tok/s  speed-up "
                f"{row['speedup']:7.1f}x  {row['us_per_mflop']:.2f} µs/MFLOP",
                flush=True,
            )
    return rows


def task_example_lengths(name: str) -> tuple[int, int, int, int]:
    """(largest paper test size, D, prompt length through <ans>, answer length) of one example."""
    task_cfg = OmegaConf.load(ROOT / "config/task" / f"{name}.yaml")
    spec = DatasetSpec.resolve(task_cfg, "paper")
    task, plan = spec.task, spec.plan
    size = max(size for _, size, _ in plan)
    example = task.sample(size, np.random.default_rng(0))
    answer = int(np.sum(example.answer_mask))
    depth = int(task_cfg.scales.paper.max_depth)
    return size, depth, len(example.token_str) - answer, answer


def task_rows(tasks: list[str], max_reference_len: int, max_answer: int) -> list[dict]:
    rows = []
    for name in tasks:
        size, depth, prompt_len, full_answer = task_example_lengths(name)
        answer = min(full_answer, max_answer)
        total = prompt_len + answer
        model = fresh_model("paper", total, depth)
        prompt = torch.randint(1, VOCAB, (1, prompt_len))
        prefill, per_token = cached_seconds(model, prompt, answer)
        cached = prefill + per_token * answer
        row = {
            "task": name,
            "size": size,
            "max_depth": depth,
            "prompt_tokens": prompt_len,
            "answer_tokens": full_answer,
            "timed_answer_tokens": answer,
            "cached_s": cached,
            "cached_tokens_per_s": answer / cached,
            "reference_s_estimate": None,
        }
        if total <= max_reference_len:
            short, long = forward_seconds(model, prompt_len, 1), forward_seconds(model, total, 1)
            # a·T + b·T² through the two timed points, summed over the answer's prefixes
            lengths = np.arange(prompt_len, total, dtype=float)
            b = (long / total - short / prompt_len) / (total - prompt_len)
            a = short / prompt_len - b * prompt_len
            reference = float(np.sum(a * lengths + b * lengths**2))
            row.update(reference_s_estimate=reference, speedup_estimate=reference / cached)
        rows.append(row)
        ref = row["reference_s_estimate"]
        print(
            f"{name:20} size {size:3} D={depth:2} prompt {prompt_len:5} "
            f"answer {answer:5}/{full_answer}  "
            f"cached {cached:7.1f}s ({row['cached_tokens_per_s']:.1f} tok/s)  reference "
            + (f"≈{ref:9.0f}s (×{ref / cached:.0f})" if ref else "not timed (too long)"),
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="mini,paper")
    parser.add_argument("--contexts", default="64,256,1024,4096")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--tasks", default=",".join(TASK_TESTS))
    parser.add_argument("--max-reference-len", type=int, default=4096)
    parser.add_argument("--max-answer", type=int, default=512)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/decode.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    contexts = [int(c) for c in args.contexts.split(",")]
    result = {
        **measured_on(["config/task/*.yaml", "config/scale/*.yaml", "config/grammars/*"]),
        "new_tokens": args.new_tokens,
        "context": context_rows(args.models.split(","), contexts, args.new_tokens),
        "tasks": task_rows(
            [t for t in args.tasks.split(",") if t], args.max_reference_len, args.max_answer
        ),
    }
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
