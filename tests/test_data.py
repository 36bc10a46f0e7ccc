"""Datasets: size validation, determinism, disjoint splits, manifests, rejected bad files."""

from __future__ import annotations

import json
import logging
import shutil

import networkx as nx
import pytest

from anira.dataset import Vocabulary, load_split, load_task, load_vocab, row_to_example
from anira.generate import generate_dataset
from anira.io import AniraInputError
from anira.layout import SPLITS
from anira.spec import DatasetSpec, plan_splits
from anira.tasks import get_task
from tests.references import recursive_eval
from tests.references import reference_features as brevo_features


def task_cfg(name: str, **sizes):
    scale = {"train": [3, 4, 6], "interp": [5], "extrap": [7], "n_train": 300}
    scale |= {"n_eval_per_size": 40} | sizes
    params = {"modulus": 23} if name == "mano" else {"max_parents": 4, "hub_degree": 4}
    return {"name": name, "params": params, "scales": {"tiny": scale}}


@pytest.fixture(scope="module")
def brevo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("brevo")
    generate_dataset(DatasetSpec.resolve(task_cfg("brevo"), "tiny", 0), out)
    return out


def test_vocabulary_round_trip(tmp_path):
    vocab = Vocabulary(["<pad>", "a", "<ans>", "<eos>"])
    assert (vocab.pad_id, vocab.ans_id, vocab.eos_id, len(vocab)) == (0, 2, 3, 4)
    assert vocab.decode(vocab.encode(["a", "<eos>"])) == ["a", "<eos>"]
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == vocab
    assert Vocabulary.load(tmp_path / "v.json").hash == vocab.hash
    assert Vocabulary(["<pad>", "b", "<ans>", "<eos>"]).hash != vocab.hash
    with pytest.raises(AniraInputError):
        vocab.encode(["zzz"])
    for bad in (["a", "<pad>", "<ans>", "<eos>"], ["<pad>", "a", "a", "<ans>", "<eos>"]):
        with pytest.raises(AniraInputError):
            Vocabulary(bad)
    payload = json.loads((tmp_path / "v.json").read_text())
    payload["tokens"][1] = "b"
    (tmp_path / "v.json").write_text(json.dumps(payload))
    with pytest.raises(AniraInputError, match="hash"):
        Vocabulary.load(tmp_path / "v.json")


def test_plan_counts():
    plan = plan_splits(get_task("mano"), task_cfg("mano", n_train=301)["scales"]["tiny"])
    assert plan == [
        ("train", 3, 101),
        ("train", 4, 100),
        ("train", 6, 100),
        ("test", 3, 40),
        ("test", 4, 40),
        ("test", 6, 40),
        ("interp", 5, 40),
        ("extrap", 7, 40),
        ("val", 3, 40),
        ("val", 4, 40),
        ("val", 6, 40),
    ]


def test_train_only_sizes_are_trained_not_tested():
    # MANO L=1 has 1587 expressions: with 20000 training examples it cannot have a disjoint test
    # split, but as a train_only size it is trained on and shares n_train with the tested sizes.
    sizes = task_cfg("mano", train_only=[1], n_train=20000)["scales"]["tiny"]
    plan = plan_splits(get_task("mano"), sizes)
    assert [p for p in plan if p[0] == "train"] == [
        ("train", 1, 5000),
        ("train", 3, 5000),
        ("train", 4, 5000),
        ("train", 6, 5000),
    ]
    assert [p[1] for p in plan if p[0] == "test"] == [3, 4, 6]
    assert ("interp", 5, 40) in plan and ("extrap", 7, 40) in plan


def test_size_ranges_and_weighted_training_shares(tmp_path):
    """``"a..b"`` covers every producible size no split names; LANO shares n_train in proportion
    to its grammar's length distribution (largest remainders, at least one per size)."""
    grammar = tmp_path / "g.pcfg"  # lengths 2, 3, 4 and 6 with probabilities .4, .3, .2, .1
    rules = ["S -> A A [0.4]", "S -> A A A [0.3]", "S -> A A A A [0.2]", "S -> A A A A A A [0.1]"]
    rules += [f"A -> '{t}' [{p}]" for t, p in (("a", 0.3), ("b", 0.3), ("c", 0.4))]
    grammar.write_text("\n".join(rules) + "\n")
    sizes = {"train": ["1..4"], "interp": [3], "extrap": ["5..9"], "n_train": 9}
    sizes["n_eval_per_size"] = 1
    plan = plan_splits(get_task("lano", grammar_file=str(grammar)), sizes)
    # 1 and 5 are not producible; 3 is named by interp
    assert plan == [
        ("train", 2, 6),
        ("train", 4, 3),
        ("test", 2, 1),
        ("test", 4, 1),
        ("interp", 3, 1),
        ("extrap", 6, 1),
        ("val", 2, 1),
        ("val", 4, 1),
    ]
    uniform = get_task("lano", grammar_file=str(grammar), length_mix="uniform")
    assert [n for split, _, n in plan_splits(uniform, sizes) if split == "train"] == [5, 4]
    rare = get_task("lano", grammar_file=str(grammar))
    sizes |= {"train": [2, 4, 6], "interp": [3], "extrap": [], "n_train": 5}
    assert [n for split, _, n in plan_splits(rare, sizes) if split == "train"] == [3, 1, 1]


@pytest.mark.parametrize(
    "sizes, message",
    [
        ({"train": ["3..x"]}, "ranges"),
        ({"train_only": [3]}, "both train and train_only"),
        ({"train_only": [7]}, "extrap size 7"),  # moves the training range past extrap
        ({"train_only": [5]}, "interp size 5"),
        ({"train_only": [0]}, "minimum"),
        ({"interp": [3]}, "interp size 3"),  # a training size
        ({"interp": [6]}, "interp size 6"),  # the edge of the range
        ({"interp": [2]}, "interp size 2"),  # below the range
        ({"extrap": [6]}, "extrap size 6"),
        ({"extrap": [5]}, "extrap size 5"),
        ({"interp": [5], "extrap": [5]}, "extrap size 5"),
        ({"train": [3, 3, 6]}, "repeats"),
        ({"train": []}, "must not be empty"),
        ({"train": [3, 4.5, 6]}, "integers"),
        ({"n_train": 0}, "n_train"),
        ({"n_train": 2}, "fewer than"),
        ({"n_eval_per_size": -1}, "n_eval_per_size"),
    ],
)
def test_bad_sizes_rejected(sizes, message):
    with pytest.raises(AniraInputError, match=message):
        plan_splits(get_task("mano"), task_cfg("mano", **sizes)["scales"]["tiny"])


def test_size_below_minimum_and_too_small_space(tmp_path):
    with pytest.raises(AniraInputError, match="minimum"):
        generate_dataset(
            DatasetSpec.resolve(task_cfg("brevo", train=[2, 4, 6]), "tiny", 0), tmp_path / "a"
        )
    # MANO L=1 has 1587 expressions: a disjoint test split cannot exist next to 20000 train ones.
    cfg = task_cfg("mano", train=[1, 2, 4], interp=[3], extrap=[5], n_train=20000)
    with pytest.raises(AniraInputError, match="only 1587 distinct"):
        generate_dataset(DatasetSpec.resolve(cfg, "tiny", 0), tmp_path / "b")
    # 1520 train + 40 test examples of L=1 fit in 1587, the 40 val ones on top do not.
    cfg = task_cfg("mano", train=[1, 2, 4], interp=[3], extrap=[5], n_train=3 * 1520)
    with pytest.raises(AniraInputError, match="only 1587 distinct.*40 val examples"):
        generate_dataset(DatasetSpec.resolve(cfg, "tiny", 0), tmp_path / "b")
    # BREVO N=3 with 3 labels: the space is found too small while drawing; nothing is left.
    cfg = task_cfg("brevo", train=[3], interp=[], extrap=[], n_train=3000, n_eval_per_size=2000)
    cfg["params"]["num_labels"] = 3
    with pytest.raises(AniraInputError, match="too small"):
        generate_dataset(DatasetSpec.resolve(cfg, "tiny", 0), tmp_path / "c")
    assert not any(tmp_path.iterdir())
    with pytest.raises(AniraInputError, match="no scale"):
        generate_dataset(DatasetSpec.resolve(task_cfg("brevo"), "paper", 0), tmp_path / "d")
    with pytest.raises(AniraInputError, match="seed"):
        generate_dataset(DatasetSpec.resolve(task_cfg("brevo"), "tiny", -1), tmp_path / "d")
    assert not any(tmp_path.iterdir())


def test_same_seed_gives_identical_files(tmp_path, brevo_dir):
    generate_dataset(DatasetSpec.resolve(task_cfg("brevo"), "tiny", 0), tmp_path / "again")
    generate_dataset(DatasetSpec.resolve(task_cfg("brevo"), "tiny", 1), tmp_path / "other")
    names = sorted(p.name for p in brevo_dir.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "again").iterdir())
    for name in names:
        assert (brevo_dir / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    assert (brevo_dir / "train.parquet").read_bytes() != (
        tmp_path / "other" / "train.parquet"
    ).read_bytes()
    # Adding a size leaves the examples of the other sizes unchanged (BREVO's label count would
    # change with the largest size, so MANO shows it).
    generate_dataset(DatasetSpec.resolve(task_cfg("mano"), "tiny", 0), tmp_path / "m")
    generate_dataset(
        DatasetSpec.resolve(task_cfg("mano", extrap=[7, 8]), "tiny", 0), tmp_path / "more"
    )
    a, b = load_split(tmp_path / "m", "extrap"), load_split(tmp_path / "more", "extrap")
    assert list(a["token_str"].map(list)) == list(b[b["size"] == 7]["token_str"].map(list))


def reference_features(name: str, task, tokens: list[str], instance: dict) -> dict:
    """Every feature of a stored example recomputed from its tokens alone, without the task's code:
    MANO by recursive evaluation of the expression (the answer must be its value), BREVO with
    networkx on the edges of the prompt (the answer must be a prerequisite-respecting order of the
    query's dependency set, query last)."""
    answer_start = tokens.index("<ans>") + 1
    n_prompt, answer = answer_start, tokens[answer_start:-1]
    assert tokens[-1] == "<eos>"
    if name == "mano":
        value, depth, ops = recursive_eval(tokens[2 : answer_start - 1], task.modulus)
        assert answer == [str(value)] and tokens[1] == f"<len_{ops}>"
        values = {"num_ops": [float(ops)], "tree_depth": [float(depth)]}
    else:
        edges = [tuple(tokens[i : i + 2]) for i in range(1, answer_start - 3, 2)]
        query = tokens[answer_start - 2]
        assert [list(e) for e in edges] == instance["edges"] and query == instance["query"]
        graph = nx.DiGraph(edges)
        assert set(answer) == nx.ancestors(graph, query) | {query} and answer[-1] == query
        assert len(answer) == len(set(answer))
        assert all(answer.index(p) < answer.index(c) for p, c in edges if c in answer)
        values = brevo_features({"edges": edges, "query": query}, answer, task.hub_degree)
    return {k: [None] * n_prompt + [float(v) for v in values[k]] + [None] for k in task.features}


@pytest.mark.parametrize("name", ["brevo", "mano"])
def test_splits_content_and_disjointness(tmp_path, name):
    out = tmp_path / name
    summary = generate_dataset(DatasetSpec.resolve(task_cfg(name), "tiny", 3), out)
    task, vocab = load_task(out), load_vocab(out)
    assert vocab.tokens[0] == "<pad>" and vocab.tokens[1:] == task.vocab_tokens(7)
    frames = {split: load_split(out, split) for split in SPLITS}
    expected_sizes = {
        "train": [3, 4, 6],
        "val": [3, 4, 6],
        "test": [3, 4, 6],
        "interp": [5],
        "extrap": [7],
    }
    train_keys = {tuple(t) for t in frames["train"]["token_str"]}
    seen_eval: set[tuple] = set()
    for split, df in frames.items():
        counts = df["size"].value_counts().sort_index()
        assert list(counts.index) == expected_sizes[split]
        assert (counts == (100 if split == "train" else 40)).all()
        assert df["id"].is_unique and (df["split"] == split).all() and (df["task"] == name).all()
        for _, row in df.iterrows():
            tokens = [str(t) for t in row["token_str"]]
            assert vocab.decode(row["tokens"]) == tokens
            example = row_to_example(row, task.features)
            assert task.is_correct(example, example.answer_str)
            assert example.features == reference_features(name, task, tokens, example.instance)
            if split != "train":
                assert tuple(tokens) not in train_keys and tuple(tokens) not in seen_eval
                seen_eval.add(tuple(tokens))
        assert set(summary["splits"][split]) == {str(s) for s in expected_sizes[split]}
    # Rebuilding an example from its instance reproduces the stored features.
    row = frames["test"].iloc[0]
    example = row_to_example(row, task.features)
    answer_start = example.answer_mask.index(True)
    assert task.answer_features(example.instance, example.answer_str) == {
        k: v[answer_start:] for k, v in example.features.items()
    }


def test_rejections_counted(tmp_path):
    # N=3 over 7 labels is a small space: test examples repeat train ones and are redrawn.
    summary = generate_dataset(
        DatasetSpec.resolve(task_cfg("brevo", n_train=3000), "tiny", 0), tmp_path
    )
    stats = summary["splits"]["test"]["3"]
    assert stats["count"] == 40 and stats["rejected_train_overlap"] > 0
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_progress_is_logged(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="anira.generate"):
        generate_dataset(
            DatasetSpec.resolve(task_cfg("mano"), "tiny", 0), tmp_path, progress_every=100
        )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train:")]
    assert lines[0].startswith("train: 100/300 examples (") and "/s" in lines[0]


def test_bad_files_rejected(tmp_path, brevo_dir):
    data = tmp_path / "data"
    shutil.copytree(brevo_dir, data)
    assert len(load_split(data, "train")) == 300
    with pytest.raises(AniraInputError, match="unknown split"):
        load_split(data, "valid")
    with pytest.raises(AniraInputError, match="not found"):
        load_split(tmp_path / "missing", "train")
    # Truncated.
    raw = (data / "test.parquet").read_bytes()
    (data / "test.parquet").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(AniraInputError, match="checksum"):
        load_split(data, "test")
    # Foreign: another dataset's file in its place.
    mano = tmp_path / "mano"
    generate_dataset(DatasetSpec.resolve(task_cfg("mano"), "tiny", 0), mano)
    shutil.copy(mano / "train.parquet", data / "train.parquet")
    with pytest.raises(AniraInputError, match="checksum"):
        load_split(data, "train")
    # No manifest.
    (data / "manifest.json").unlink()
    with pytest.raises(AniraInputError, match="manifest"):
        load_split(data, "interp")
    with pytest.raises(AniraInputError):
        load_vocab(data)


def test_regenerating_replaces_a_stale_dataset(tmp_path):
    generate_dataset(DatasetSpec.resolve(task_cfg("mano"), "tiny", 0), tmp_path / "d")
    generate_dataset(DatasetSpec.resolve(task_cfg("mano"), "tiny", 5), tmp_path / "d")
    generate_dataset(DatasetSpec.resolve(task_cfg("mano"), "tiny", 5), tmp_path / "fresh")
    for name in ("train.parquet", "manifest.json", "summary.json"):
        assert (tmp_path / "d" / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes()
    assert len(load_split(tmp_path / "d", "train")) == 300
    assert not [p for p in (tmp_path / "d").iterdir() if p.name.endswith(".tmp")]


def test_scale_overrides_task_parameters(tmp_path):
    """``scales.<scale>.params`` replaces task parameters at that scale (MANO mod 7 at mini); the
    dataset records the effective value and its examples are scored with it."""
    generate_dataset(
        DatasetSpec.resolve(task_cfg("mano", params={"modulus": 7}), "tiny", 0), tmp_path
    )
    task = load_task(tmp_path)
    assert task.modulus == 7
    frame = load_split(tmp_path, "test")
    numbers = {int(t) for tokens in frame["token_str"] for t in tokens if t.isdigit()}
    assert numbers <= set(range(7)) and len(numbers) == 7
    for row in frame.itertuples():
        expression = list(row.token_str)[2 : list(row.token_str).index("<ans>")]
        assert int(row.token_str[-2]) == recursive_eval(expression, 7)[0]
