"""The CLRS-Text layout (``format: clrs_text``): DeepMind's text, scored via the compact answer."""

from __future__ import annotations

import re

import numpy as np
import pytest

import anira.tasks.clrs  # noqa: F401  (registers the tasks)
from anira.io import AniraInputError
from anira.tasks import TASKS, get_task
from anira.tasks.base import ANS, EOS
from tests.references import CLRS, KINDS, VALIDATORS, corrupt


def rendered(tokens: list[str]) -> str:
    """Tokens joined as CLRS-Text prints them: no space inside brackets or before commas."""
    text = " ".join(tokens)
    return re.sub(r"\[ ", "[", re.sub(r" \]", "]", re.sub(r" ,", ",", text)))


def deepmind(text: str) -> str:
    """A CLRS-Text question/answer with its newlines as spaces."""
    return " ".join(text.split())


# (task, input, CLRS-Text question, CLRS-Text answer), written from DeepMind's clrs_utils rules:
# ``{algo}:\n{name: value, …}\n{output names}:\n`` then the answer.
LAYOUT = [
    ("clrs_sort", {"keys": [5, 2, 9, 2]}, "insertion_sort:\nkey: [5 2 9 2]\npred:\n", "[2 2 5 9]"),
    ("clrs_minimum", {"keys": [5, 2, 9, 2]}, "minimum:\nkey: [5 2 9 2]\nmin:\n", "1"),
    (
        "clrs_binary_search",
        {"keys": [2, 5, 5, 9], "target": 5},
        "binary_search:\nkey: [2 5 5 9], target: 5\nreturn:\n",
        "1",
    ),
    (
        "clrs_max_subarray",
        {"keys": [2, -3, 4, -1, 2, -9]},
        "find_maximum_subarray_kadane:\nkey: [2 -3 4 -1 2 -9]\nstart, end:\n",
        "2, 4",
    ),
    (
        "clrs_bfs",
        {"n": 4, "edges": [[0, 1], [0, 2], [1, 2]], "source": 1},
        "bfs:\ns: 1, A: [[0 1 1 0], [1 0 1 0], [1 1 0 0], [0 0 0 0]]\npi:\n",
        "[1 1 1 3]",
    ),
    (
        "clrs_articulation_points",
        {"n": 4, "edges": [[0, 1], [1, 2], [1, 3]]},
        "articulation_points:\nA: [[0 1 0 0], [1 0 1 1], [0 1 0 0], [0 1 0 0]]\nis_cut:\n",
        "[0 1 0 0]",
    ),
    (
        "clrs_floyd_warshall",
        {"n": 3, "edges": [[0, 1, 5], [0, 2, 1], [2, 1, 1]]},
        "floyd_warshall:\nA: [[0 5 1], [0 0 0], [0 1 0]]\nPi:\n",
        "[[0 2 0], [0 1 2], [0 2 2]]",
    ),
    (
        "clrs_activity_selector",
        {"activities": [[1, 4], [3, 5], [0, 6], [5, 7]]},
        "activity_selector:\ns: [1 3 0 5], f: [4 5 6 7]\nselected:\n",
        "[1 0 0 1]",
    ),
    (
        "clrs_lcs_length",
        {"x": list("abcb"), "y": list("bdcb")},
        "lcs_length:\nstring: [0 0 0 0 1 1 1 1], key: [a b c b b d c b]\nb:\n",
        "[b c b]",
    ),
    (
        "clrs_convex_hull",
        {"points": [[0, 0], [3, 0], [2, 1], [3, 3], [0, 3]]},
        "graham_scan:\nx: [0 3 2 3 0], y: [0 0 1 3 3]\nin_hull:\n",
        "[1 1 0 1 1]",
    ),
]


@pytest.mark.parametrize(("name", "inp", "question", "answer"), LAYOUT, ids=[x[0] for x in LAYOUT])
def test_layout_matches_deepmind_text(name, inp, question, answer):
    task = get_task(name, format="clrs_text")
    ex = task.make_example(inp, size=1)
    i = ex.token_str.index(ANS)
    assert rendered(ex.token_str[:i]) == deepmind(question)
    assert rendered(ex.token_str[i + 1 : -1]) == deepmind(answer)
    assert task.is_correct(ex, ex.answer_str)


@pytest.mark.parametrize("name", CLRS)
def test_text_layout_scores_and_features_through_the_compact_answer(name):
    """Per task: the text answer carries the compact answer's tokens and features (syntax tokens
    null), its vocabulary is closed, and the scorer agrees with the independent validity check on
    corrupted answers written in the text layout."""
    compact_task, task = TASKS[name](), TASKS[name](format="clrs_text")
    vocab = set(task.vocab_tokens(16))
    rng = np.random.default_rng(2)
    for size in [compact_task.min_size + i % 5 for i in range(30)]:
        state = rng.bit_generator.state
        ex = task.sample(size, rng)
        rng.bit_generator.state = state
        cx = compact_task.sample(size, rng)
        assert ex.instance == cx.instance
        assert set(ex.token_str) <= vocab
        assert ex.token_str[0] == f"{task.text_name}:"
        body, origin = task.write(ex.instance["input"], cx.answer_str[:-1])
        assert ex.answer_str == [*body, EOS]
        n_prompt = len(ex.token_str) - len(ex.answer_str)
        n_compact = len(cx.token_str) - len(cx.answer_str)
        gold_compact = {k: v[n_compact:] for k, v in cx.features.items()}
        for key, values in ex.features.items():
            expected = [None if o is None else gold_compact[key][o] for o in origin]
            assert values[n_prompt:] == [*expected, None]
        assert task.answer_features(ex.instance, ex.answer_str) == {
            k: v[n_prompt:] for k, v in ex.features.items()
        }
        assert task.is_correct(ex, ex.answer_str)
        assert not task.is_correct(ex, ex.answer_str[:-1])
        if task.text_answer != "bare":
            assert not task.is_correct(ex, cx.answer_str), "the compact answer is not text"
        alphabet = sorted({str(i) for i in range(size + 1)} | set(cx.answer_str[:-1]))
        for kind in KINDS:
            wrong = corrupt(cx.answer_str[:-1], kind, alphabet, rng)
            if wrong is None:
                continue
            if task.text_answer == "mask" and not all(
                t.isdigit() and int(t) < task.mask_count(ex.instance["input"]) for t in wrong
            ):
                continue  # a mask cannot name a missing item
            written, _ = task.write(ex.instance["input"], wrong)
            expected = VALIDATORS[name](ex.instance["input"], wrong)
            if task.text_answer == "mask":  # a mask has no order nor duplicates
                expected = compact_task.valid_answer(
                    ex.instance, [*task.read(ex.instance["input"], written), EOS]
                )
            assert task.is_correct(ex, [*written, EOS]) == expected, (kind, wrong, written)


def test_malformed_text_answers_rejected():
    task = get_task("clrs_floyd_warshall", format="clrs_text")
    ex = task.make_example({"n": 2, "edges": [[0, 1, 3]]}, 2)
    assert rendered(ex.answer_str[:-1]) == "[[0 0], [0 1]]"
    for bad in ("[[0 0], [0 1]", "[[0 0] [0 1]]", "[[0 0], [0 1],]", "[0 0, 0 1]", "[[0 0]]"):
        tokens = bad.replace("[", " [ ").replace("]", " ] ").replace(",", " , ").split()
        assert not task.is_correct(ex, [*tokens, EOS]), bad
    sort = get_task("clrs_sort", format="clrs_text")
    ex = sort.make_example({"keys": [2, 1]}, 2)
    assert sort.is_correct(ex, ["[", "1", "2", "]", EOS])
    for bad in (["[", "1", ",", "2", "]"], ["1", "2"], ["[", "1", "2"], ["[", "[", "1", "2", "]"]):
        assert not sort.is_correct(ex, [*bad, EOS]), bad
        along = sort.answer_features(ex.instance, [*bad, EOS])
        assert all(v is None for v in along["bubble_pass"]), "a malformed answer has no features"
    mask = get_task("clrs_articulation_points", format="clrs_text")
    ex = mask.make_example({"n": 3, "edges": [[0, 1], [1, 2]]}, 3)
    assert ex.answer_str == ["[", "0", "1", "0", "]", EOS]
    assert not mask.is_correct(ex, ["[", "0", "1", "]", EOS])
    assert not mask.is_correct(ex, ["[", "0", "2", "0", "]", EOS])
    assert all(v is None for v in mask.answer_features(ex.instance, ["[", "1", EOS])["marked_at"])


def test_unknown_format_rejected():
    with pytest.raises(AniraInputError, match="format"):
        get_task("clrs_sort", format="json")
