"""MANO: results and features against a plain recursive evaluation of the expression."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anira.io import AniraInputError
from anira.tasks import get_task
from anira.tasks.mano import evaluate_prefix
from tests.references import recursive_eval


@pytest.mark.parametrize(
    "expression, value, depth",
    [
        ("- 7 * + 3 4 5", 18, 3),  # 7 - (3 + 4) * 5 = -28 = 18 (mod 23)
        ("+ * 3 4 5", 17, 2),
        ("* + 1 2 + 3 4", 21, 2),
        ("- 0 22", 1, 1),
        ("* 22 22", 1, 1),
    ],
)
def test_hand_written_expressions(expression, value, depth):
    tokens = expression.split()
    assert evaluate_prefix(tokens, 23) == (value, depth)
    assert recursive_eval(tokens, 23)[:2] == (value, depth)


def test_random_instances_match_recursive_evaluation():
    rng = np.random.default_rng(0)
    task = get_task("mano")
    for i in range(1600):  # 100 per size, L = 1..16
        size = 1 + i % 16
        example = task.sample(size, rng)
        tokens = example.token_str
        assert tokens[:2] == ["<mano>", f"<len_{size}>"]
        assert tokens[-3:-1] == ["<ans>", example.answer_str[0]] and tokens[-1] == "<eos>"
        expression = tokens[2:-3]
        assert len(expression) == 2 * size + 1
        value, depth, ops = recursive_eval(expression, 23)
        assert ops == size and example.answer_str == [str(value), "<eos>"]
        assert example.instance == {
            "expression": expression,
            "result": value,
            "num_ops": size,
            "tree_depth": depth,
        }
        n = len(tokens)
        assert example.answer_mask == [False] * (n - 2) + [True, True]
        assert example.features["num_ops"] == [None] * (n - 2) + [size, None]
        assert example.features["tree_depth"] == [None] * (n - 2) + [depth, None]
        assert task.answer_features(example.instance, example.answer_str) == {
            "num_ops": [size, None],
            "tree_depth": [depth, None],
        }
        assert task.is_correct(example, example.answer_str)
        wrong = str((value + 1) % 23)
        assert not task.is_correct(example, [wrong, "<eos>"])
        assert not task.is_correct(example, [str(value)])


def test_without_length_token_and_other_modulus():
    task = get_task("mano", modulus=7, length_token=False)
    rng = np.random.default_rng(1)
    for size in range(1, 6):
        example = task.sample(size, rng)
        assert example.token_str[0] == "<mano>" and example.token_str[1] != f"<len_{size}>"
        value, _, _ = recursive_eval(example.token_str[1:-3], 7)
        assert example.answer_str[0] == str(value)
    assert "<len_1>" not in task.vocab_tokens(5)


def test_space_size_is_exact():
    task = get_task("mano", modulus=2, length_token=False)
    rng = np.random.default_rng(0)
    for size in (1, 2, 3):
        draws = 30 * task.space_size(size)  # a shape has probability >= 1/6: P(miss) < 1e-8
        seen = {tuple(task.sample(size, rng).token_str) for _ in range(draws)}
        assert len(seen) == task.space_size(size)  # the sampler reaches every expression
    assert get_task("mano").space_size(1) == 3 * 23 * 23
    assert get_task("mano").space_size(4) == math.comb(8, 4) // 5 * 3**4 * 23**5


def test_vocab_tokens():
    tokens = get_task("mano").vocab_tokens(3)
    assert tokens[:4] == ["<mano>", "<len_1>", "<len_2>", "<len_3>"]
    assert tokens[4:7] == ["+", "-", "*"]
    assert tokens[7:30] == [str(i) for i in range(23)] and tokens[30:] == ["<ans>", "<eos>"]


@pytest.mark.parametrize("params, size", [({"modulus": 1}, 2), ({}, 0), ({}, 2.5), ({}, -1)])
def test_bad_parameters_rejected(params, size):
    with pytest.raises(AniraInputError):
        get_task("mano", **params).sample(size, np.random.default_rng(0))
