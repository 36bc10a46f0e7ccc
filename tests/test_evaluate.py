"""Evaluation: Parquet contract, batched greedy decoding against a one-example-at-a-time loop,
teacher-forced records against the model's own forward pass, and bad checkpoints rejected."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from anira.batches import PaddedSplit
from anira.compose import compose
from anira.dataset import load_split, load_task, load_vocab, row_to_example
from anira.evaluate import evaluate, spread_by_length
from anira.generate import generate_dataset
from anira.inference import (
    TemperatureSampler,
    evaluate_split,
    generated_records,
    greedy_generate,
    inference_rule,
    load_checkpoint,
)
from anira.io import AniraInputError, verify_manifest
from anira.model import AniraModel, ModelConfig
from anira.spec import DatasetSpec
from anira.tasks.base import EOS
from anira.tasks.grammar import END
from anira.train import train
from tests.factories import TINY_SCALE, tiny_task
from tests.references import brute_force, brute_next, prefix_mass


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    checkpoints = {}
    for router in ("early", "online"):
        out = tmp_path_factory.mktemp(f"ckpt_{router}")
        overrides = [*tiny_task("brevo"), *TINY_SCALE, f"router={router}"]
        train(compose("train", [*overrides, f"data_dir={tiny_dataset['brevo']}", f"out_dir={out}"]))
        checkpoints[router] = out
    return checkpoints


def eval_cfg(checkpoint, data_dir, out_dir, extra=()):
    return compose(
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


def test_spread_by_length_keeps_evenly_spaced_lengths_and_the_longest():
    frame = pd.DataFrame({"tokens": [[0] * n for n in (5, 1, 9, 3, 7)], "id": range(5)})
    assert list(spread_by_length(frame, 3)["id"]) == [0, 1, 2]  # lengths 5, 1, 9, in split order
    assert list(spread_by_length(frame, 1)["id"]) == [2]  # the longest alone
    assert spread_by_length(frame, 5).equals(frame)


def test_max_eval_examples_caps_each_held_out_split_at_its_real_shapes(
    trained, tiny_dataset, tmp_path
):
    """A capped evaluation (the paper-shape smoke study's) keeps each held-out split's longest and
    shortest example; the train split keeps its own cap."""
    evaluate(eval_cfg(trained["early"], tiny_dataset["brevo"], tmp_path, ["max_eval_examples=2"]))
    for split in ("train", "val", "test", "interp", "extrap"):
        frame = load_split(tiny_dataset["brevo"], split)
        lengths = frame.set_index("id")["tokens"].map(len)
        examples = pd.read_parquet(tmp_path / f"{split}.examples.parquet")
        if split == "train":
            assert len(examples) == min(len(frame), 1000)
            continue
        assert len(frame) > 2 and len(examples) == 2, split
        kept = lengths.loc[examples["example_id"]]
        assert (kept.max(), kept.min()) == (lengths.max(), lengths.min()), split
    zero = eval_cfg(trained["early"], tiny_dataset["brevo"], tmp_path, ["max_eval_examples=0"])
    with pytest.raises(AniraInputError, match="max_eval_examples must be a positive integer"):
        evaluate(zero)


def forward_pass_reference(model, frame, shift: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The teacher-forced records recomputed one example at a time, without padding: the record of
    token t carries the model's output at position t − 1 + ``shift`` (``shift=1`` is the planted
    off-by-one, used to prove the comparison can tell them apart). BREVO scores a token by exact
    match with the gold one."""
    token_rows, example_rows = [], []
    with torch.no_grad():
        for record in frame.itertuples(index=False):
            tokens = list(record.tokens)
            out = model(torch.tensor([tokens]))
            n = len(tokens)
            source = np.clip(np.arange(n - 1) + shift, 0, n - 1)  # output row of token t = 1..n-1
            predicted = out.logits[0].argmax(-1).numpy()[source]
            depth = out.depth[0].numpy()[source]
            expected = out.expected_depth[0].numpy()[source]
            answer = np.asarray(record.answer_mask, dtype=bool)[1:]
            hits = predicted == np.asarray(tokens[1:])
            for i in range(n - 1):
                token_rows.append(
                    {
                        "example_id": record.id,
                        "position": i + 1,
                        "correct": bool(hits[i]) if answer[i] else None,
                        "executed_depth": int(depth[i]),
                        "expected_depth": float(expected[i]),
                    }
                )
            example_rows.append(
                {
                    "example_id": record.id,
                    "tf_correct": bool(hits[answer].all()),
                    "tf_mean_depth": float(depth[answer].mean()),
                    "mean_expected_depth": float(expected[answer].mean()),
                }
            )
    return pd.DataFrame(token_rows), pd.DataFrame(example_rows)


def sorted_records(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return table.sort_values(keys, ignore_index=True)


def model_consistent_frame(model, frame: pd.DataFrame, vocab) -> pd.DataFrame:
    """``frame`` with each gold answer replaced by the model's own greedy answer of the same length,
    so that many answer tokens are predicted right; every third example has one answer token
    changed, so that the tokens after it are mostly predicted wrong."""
    rows = []
    with torch.no_grad():
        for i, record in enumerate(frame.itertuples(index=False)):
            tokens = list(record.tokens)
            start = tokens.index(vocab.ans_id) + 1
            for t in range(start, len(tokens)):
                tokens[t] = int(model(torch.tensor([tokens[:t]])).logits[0, -1].argmax())
            if i % 3 == 0:
                middle = (start + len(tokens)) // 2
                tokens[middle] = 1 + tokens[middle] % (len(vocab) - 1)
            rows.append(record._asdict() | {"tokens": tokens, "token_str": vocab.decode(tokens)})
    return pd.DataFrame(rows)


def random_model(vocab, router: str, rule: str) -> AniraModel:
    """An untrained model whose weights are large enough that its predictions and depths vary
    from token to token (a briefly trained tiny model predicts one token everywhere)."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=len(vocab),
        max_seq_len=64,
        d_model=32,
        n_heads=2,
        router=router,
        online_rule=rule,
    )
    model = AniraModel(cfg)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.3)
    return model.eval()


@pytest.mark.parametrize(
    ("router", "rule"), [("early", "median"), ("online", "median"), ("online", "mode")]
)
def test_teacher_forced_records_equal_the_models_own_forward_pass(tiny_dataset, router, rule):
    """Token by token: the record of token t holds correctness, executed and expected depth of the
    model's output at t − 1, as one unpadded forward pass of that example alone gives them."""
    vocab = load_vocab(tiny_dataset["brevo"])
    task = load_task(tiny_dataset["brevo"])
    model = random_model(vocab, router, rule)
    frame = model_consistent_frame(model, load_split(tiny_dataset["brevo"], "extrap"), vocab)
    tables = evaluate_split(model, task, vocab, frame, {}, 3, torch.device("cpu"))
    records = sorted_records(tables[0], ["example_id", "position"])
    examples = sorted_records(tables[1], ["example_id"])
    reference, reference_examples = forward_pass_reference(model, frame)
    reference = sorted_records(reference, ["example_id", "position"])
    reference_examples = sorted_records(reference_examples, ["example_id"])
    assert records["example_id"].tolist() == reference["example_id"].tolist()
    assert records["position"].tolist() == reference["position"].tolist()
    assert records["executed_depth"].tolist() == reference["executed_depth"].tolist()
    np.testing.assert_allclose(records["expected_depth"], reference["expected_depth"], atol=1e-5)
    correct = records["correct"].astype(object).where(records["correct"].notna(), None)
    assert correct.tolist() == reference["correct"].tolist()
    assert examples["example_id"].tolist() == reference_examples["example_id"].tolist()
    assert examples["tf_correct"].tolist() == reference_examples["tf_correct"].tolist()
    for column in ("tf_mean_depth", "mean_expected_depth"):
        np.testing.assert_allclose(examples[column], reference_examples[column], atol=1e-5)

    # The data tells the t − 1 pairing from an off-by-one: depths and hits vary along a sequence.
    shifted = forward_pass_reference(model, frame, shift=1)[0]
    shifted = sorted_records(shifted, ["example_id", "position"])
    assert shifted["executed_depth"].tolist() != reference["executed_depth"].tolist()
    assert not np.allclose(shifted["expected_depth"], reference["expected_depth"], atol=1e-5)
    assert shifted["correct"].tolist() != reference["correct"].tolist()
    # ... and the other pairing (depth at position t itself) is exactly the shifted one.
    assert records["executed_depth_at_t"].tolist() == shifted["executed_depth"].tolist()
    np.testing.assert_allclose(records["expected_depth_at_t"], shifted["expected_depth"], atol=1e-5)
    hits = reference["correct"].dropna()
    assert 0 < hits.mean() < 1


@pytest.mark.parametrize(
    ("router", "rule", "recorded"),
    [("fixed", "median", "fixed"), ("early", "median", "mode"), ("online", "mode", "mode")]
    + [("online", "median", "median"), ("act", "mode", "threshold")]
    + [("expert_choice", "median", "predictor")],
)
def test_records_name_the_rule_each_router_decides_by(router, rule, recorded):
    assert inference_rule(ModelConfig(router=router, online_rule=rule)) == recorded


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
    """A scale with no interp/extrap sizes and a train_only size: empty splits get tables with the
    same columns and no rows, so every evaluation directory has the same files."""
    sizes = [
        "task.scales.mini.train=[2,3]",
        "++task.scales.mini.train_only=[1]",
        "task.scales.mini.interp=[]",
        "task.scales.mini.extrap=[]",
        "++task.scales.mini.curriculum=0.5",
    ]
    overrides = [*tiny_task("mano"), *sizes]
    generate_cfg = compose("generate", [*overrides, "seed=0", "out_dir=unused"])
    generate_dataset(DatasetSpec.resolve(generate_cfg.task, "mini", 0), tmp_path / "data")
    assert set(load_split(tmp_path / "data", "test")["size"]) == {2, 3}
    assert set(load_split(tmp_path / "data", "train")["size"]) == {1, 2, 3}
    train_overrides = [*overrides, *TINY_SCALE, "router=early"]
    paths = [f"data_dir={tmp_path / 'data'}", f"out_dir={tmp_path / 'ckpt'}"]
    train(compose("train", [*train_overrides, *paths]))
    evaluate(eval_cfg(tmp_path / "ckpt", tmp_path / "data", tmp_path / "eval"))
    verify_manifest(tmp_path / "eval")
    for kind in ("tokens", "examples", "generated"):
        test = pd.read_parquet(tmp_path / "eval" / f"test.{kind}.parquet")
        for split in ("interp", "extrap"):
            empty = pd.read_parquet(tmp_path / "eval" / f"{split}.{kind}.parquet")
            assert empty.empty and list(empty.columns) == list(test.columns)
    for split in ("test", "val"):  # 4 examples per size of the tiny scale, sizes 2 and 3
        assert len(pd.read_parquet(tmp_path / "eval" / f"{split}.examples.parquet")) == 2 * 4


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


def test_temperature_sampler_follows_the_softmax_and_is_seeded():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).repeat(20000, 1)
    draws = TemperatureSampler(1.0, seed=7)(logits)
    freq = np.bincount(draws.numpy(), minlength=3) / len(draws)
    assert np.abs(freq - [0.5, 0.3, 0.2]).max() < 0.015
    assert torch.equal(draws, TemperatureSampler(1.0, seed=7)(logits))
    sharp = TemperatureSampler(0.05, seed=7)(logits)  # low temperature: nearly always the mode
    assert (sharp == 0).float().mean() > 0.99
    with pytest.raises(AniraInputError, match="temperature"):
        TemperatureSampler(0.0, seed=0)


LANO_TINY = [
    "task=lano",
    "task.scales.mini.params.start=13",  # strings of 12 to 18 terminals (12: only 8 strings)
    "task.scales.mini.train=[13,14,15,16]",
    "task.scales.mini.interp=[]",
    "task.scales.mini.extrap=[17,18]",
    "task.scales.mini.n_train=96",
    "task.scales.mini.n_eval_per_size=4",
]


@pytest.fixture(scope="module")
def lano_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lano")
    cfg = compose("generate", [*LANO_TINY, "seed=0", "out_dir=unused"])
    generate_dataset(DatasetSpec.resolve(cfg.task, "mini", 0), root / "data")
    paths = [f"data_dir={root / 'data'}", f"out_dir={root / 'ckpt'}"]
    train(compose("train", [*LANO_TINY, *TINY_SCALE, "router=early", *paths]))
    evaluate(eval_cfg(root / "ckpt", root / "data", root / "eval"))
    return root


def test_lano_is_scored_on_samples_with_exact_kl(lano_run):
    """One temperature-1 sample per example, scored by the parser; per-token KL equal to one
    recomputed from the model's own forward pass and the brute-force language."""

    task = load_task(lano_run / "data")
    vocab = load_vocab(lano_run / "data")
    model, _ = load_checkpoint(lano_run / "ckpt", vocab, None)
    mass = prefix_mass(brute_force(task.grammar))
    for split in ("test", "extrap"):
        examples = pd.read_parquet(lano_run / "eval" / f"{split}.examples.parquet")
        tokens = pd.read_parquet(lano_run / "eval" / f"{split}.tokens.parquet")
        assert len(examples) >= 8
        for row in examples.itertuples():
            sample = row.generated.split()
            assert row.correct == task.is_correct(None, sample)
            assert row.ended == (bool(sample) and sample[-1] == "<eos>")
            assert row.sample_length == len(sample) - row.ended
            assert row.sample_length <= task.sampling_length()
            expected_prob = task.length_probability(row.sample_length) if row.ended else 0.0
            assert row.length_prob == pytest.approx(expected_prob)
            assert isinstance(row.completion_half, bool | np.bool_)
        frame = load_split(lano_run / "data", split)
        for record in frame.head(3).itertuples():
            with torch.no_grad():
                logits = model(torch.tensor([list(record.tokens)])).logits[0]
            logp = torch.log_softmax(logits, -1).numpy()
            string = tuple(record.token_str[2:-1])
            mine = tokens[(tokens["example_id"] == record.id) & tokens["is_answer"]]
            assert len(mine) == len(string) + 1
            for k, row in enumerate(mine.itertuples()):
                dist = brute_next(mass, string[:k])
                kl = sum(
                    p * (np.log(p) - logp[row.position - 1, vocab.index[a if a != END else EOS]])
                    for a, p in dist.items()
                ) / np.log(2)
                assert row.kl_bits == pytest.approx(kl, rel=1e-4, abs=1e-5)
            mean_kl = examples.set_index("example_id").loc[record.id, "mean_kl_bits"]
            assert mean_kl == pytest.approx(mine["kl_bits"].mean(), rel=1e-5)


def test_lano_samples_are_deterministic_for_a_seed(lano_run, tmp_path):
    again = tmp_path / "again"
    evaluate(eval_cfg(lano_run / "ckpt", lano_run / "data", again))
    other = tmp_path / "other"
    evaluate(eval_cfg(lano_run / "ckpt", lano_run / "data", other, ["sample_seed=1"]))
    first = pd.read_parquet(lano_run / "eval" / "test.examples.parquet")
    assert first.equals(pd.read_parquet(again / "test.examples.parquet"))
    assert not first["generated"].equals(
        pd.read_parquet(other / "test.examples.parquet")["generated"]
    )
