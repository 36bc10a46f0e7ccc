"""Evaluation: Parquet contract, batched greedy decoding against a one-example-at-a-time loop,
teacher-forced records against the model's own forward pass, and bad checkpoints rejected."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from anira.batches import PaddedSplit
from anira.data import generate_dataset, load_split, load_task, load_vocab, row_to_example
from anira.evaluate import evaluate, generated_records, greedy_generate, load_checkpoint
from anira.io import AniraInputError, verify_manifest
from anira.train import train
from tests.configs import TINY_SCALE, compose_config, tiny_task


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    checkpoints = {}
    for router in ("early", "online"):
        out = tmp_path_factory.mktemp(f"ckpt_{router}")
        overrides = [*tiny_task("brevo"), *TINY_SCALE, f"router={router}"]
        train(
            compose_config(
                "train", [*overrides, f"data_dir={tiny_dataset['brevo']}", f"out_dir={out}"]
            )
        )
        checkpoints[router] = out
    return checkpoints


def eval_cfg(checkpoint, data_dir, out_dir, extra=()):
    return compose_config(
        "evaluate",
        [f"checkpoint={checkpoint}", f"data_dir={data_dir}", f"out_dir={out_dir}", *extra],
    )


def test_outputs_follow_the_contract(trained, tiny_dataset, tmp_path):
    evaluate(eval_cfg(trained["online"], tiny_dataset["brevo"], tmp_path))
    for split in ("train", "test", "interp", "extrap"):
        tokens = pd.read_parquet(tmp_path / f"{split}.tokens.parquet")
        examples = pd.read_parquet(tmp_path / f"{split}.examples.parquet")
        frame = load_split(tiny_dataset["brevo"], split)
        assert len(examples) == min(len(frame), 1000)
        assert {
            "example_id",
            "position",
            "is_answer",
            "correct",
            "executed_depth",
            "expected_depth",
            "f_frontier",
            "inference_rule",
        } <= set(tokens.columns)
        assert {"correct", "tf_correct", "mean_depth", "size", "split"} <= set(examples.columns)
        assert set(tokens["inference_rule"]) == {"median"}
        assert tokens["executed_depth"].between(1, 6).all()
        assert len(tokens) == sum(len(t) - 1 for t in frame["tokens"])


def naive_greedy(model, prompt, eos_id, limit):
    sequence = list(prompt)
    while len(sequence) < limit:
        logits = model(torch.tensor([sequence])).logits
        sequence.append(int(logits[0, -1].argmax()))
        if sequence[-1] == eos_id:
            break
    return sequence[len(prompt) :]


@pytest.mark.parametrize("router", ["early", "online"])
def test_batched_greedy_matches_one_example_at_a_time(trained, tiny_dataset, router):
    vocab = load_vocab(tiny_dataset["brevo"])
    model, _ = load_checkpoint(trained[router], vocab, None)
    frame = load_split(tiny_dataset["brevo"], "extrap")
    data = PaddedSplit.from_frame(frame)
    answers, depths = greedy_generate(model, data, vocab, batch_size=5, device=torch.device("cpu"))
    with torch.no_grad():
        for i, tokens in enumerate(frame["tokens"]):
            prompt = list(tokens[: list(tokens).index(vocab.ans_id) + 1])
            limit = min(len(tokens) + 4, model.cfg.max_seq_len)
            expected = naive_greedy(model, prompt, vocab.eos_id, limit)
            assert answers[i] == expected
            full = torch.tensor([prompt + expected])
            assert depths[i].tolist() == model(full).depth[0, len(prompt) - 1 : -1].tolist()


def test_wrong_vocabulary_and_truncated_checkpoint_are_rejected(trained, tiny_dataset, tmp_path):
    with pytest.raises(AniraInputError, match="vocabulary"):
        evaluate(eval_cfg(trained["early"], tiny_dataset["mano"], tmp_path / "a"))
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.pt", "manifest.json", "metrics.jsonl", "config.yaml"):
        (broken / name).write_bytes((trained["early"] / name).read_bytes())
    data = (broken / "model.pt").read_bytes()
    (broken / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(AniraInputError, match="checksum"):
        evaluate(eval_cfg(broken, tiny_dataset["brevo"], tmp_path / "b"))
    with pytest.raises(AniraInputError, match="not found"):
        evaluate(eval_cfg(tmp_path / "missing", tiny_dataset["brevo"], tmp_path / "c"))
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_scale_without_held_out_sizes_trains_and_evaluates(tmp_path):
    """A scale with no interp/extrap sizes and a train_only size: empty splits are skipped."""
    sizes = [
        "task.scales.mini.train=[2,3]",
        "++task.scales.mini.train_only=[1]",
        "task.scales.mini.interp=[]",
        "task.scales.mini.extrap=[]",
        "++task.scales.mini.curriculum=0.5",
    ]
    overrides = [*tiny_task("mano"), *sizes]
    generate_cfg = compose_config("generate", [*overrides, "seed=0", "out_dir=unused"])
    generate_dataset(generate_cfg.task, "mini", 0, tmp_path / "data")
    assert set(load_split(tmp_path / "data", "test")["size"]) == {2, 3}
    assert set(load_split(tmp_path / "data", "train")["size"]) == {1, 2, 3}
    train_overrides = [*overrides, *TINY_SCALE, "router=early"]
    paths = [f"data_dir={tmp_path / 'data'}", f"out_dir={tmp_path / 'ckpt'}"]
    train(compose_config("train", [*train_overrides, *paths]))
    evaluate(eval_cfg(tmp_path / "ckpt", tmp_path / "data", tmp_path / "eval"))
    written = sorted(p.name for p in (tmp_path / "eval").glob("*.examples.parquet"))
    assert written == ["test.examples.parquet", "train.examples.parquet"]
    verify_manifest(tmp_path / "eval", ["test.tokens.parquet", "config.yaml"])


def random_valid_order(instance, rng):
    """A uniformly random available node at each step (Kahn's algorithm): another valid order."""
    parents = {}
    for p, c in instance["edges"]:
        parents.setdefault(c, set()).add(p)
    needed, order = set(instance["answer"]), []
    while len(order) < len(needed):
        ready = sorted(u for u in needed - set(order) if parents.get(u, set()) <= set(order))
        order.append(ready[rng.integers(len(ready))])
    return order, parents


def test_generated_records_follow_the_generated_order(tiny_dataset):
    """Rows only for correct answers, one per token, with BREVO's frontier recomputed by brute
    force along the order produced (not the gold one) and the depth that emitted each token."""
    task = load_task(tiny_dataset["brevo"])
    frame = load_split(tiny_dataset["brevo"], "extrap")
    rng = np.random.default_rng(0)
    generated, depths, correct, expected = [], [], [], {}
    for record in frame.itertuples():
        instance = json.loads(record.instance)
        order, parents = random_valid_order(instance, rng)
        answer = order + ["<eos>"] if record.Index % 3 else order[::-1] + ["<eos>"]
        example = row_to_example(frame.iloc[record.Index], task.features)
        generated.append(answer)
        depths.append(rng.integers(1, 7, size=len(answer)))
        correct.append(task.is_correct(example, answer))
        needed = set(order)
        expected[record.id] = [
            sum(1 for u in needed - set(answer[:i]) if parents.get(u, set()) <= set(answer[:i]))
            for i in range(len(order))
        ]
    assert 0 < sum(correct) < len(correct)
    table = generated_records(task, frame, generated, depths, correct)
    assert set(table["example_id"]) == {i for i, ok in zip(frame["id"], correct, strict=True) if ok}
    for i, record in enumerate(frame.itertuples()):
        if not correct[i]:
            continue
        rows = table[table["example_id"] == record.id]
        assert rows["step"].tolist() == list(range(len(generated[i])))
        assert rows["token"].tolist() == generated[i]
        assert rows["executed_depth"].tolist() == depths[i].tolist()
        assert rows["f_frontier"].tolist()[:-1] == expected[record.id]
        assert np.isnan(rows["f_frontier"].iloc[-1])
    assert generated_records(task, frame, generated, depths, [False] * len(frame)).empty


def test_generated_records_are_written_for_every_split(trained, tiny_dataset, tmp_path):
    evaluate(eval_cfg(trained["early"], tiny_dataset["brevo"], tmp_path))
    for split in ("train", "test", "interp", "extrap"):
        verify_manifest(tmp_path, [f"{split}.generated.parquet"])
        table = pd.read_parquet(tmp_path / f"{split}.generated.parquet")
        assert {"example_id", "step", "executed_depth", "f_frontier", "router"} <= set(
            table.columns
        )
