"""MANO: evaluate a modular-arithmetic expression in prefix notation (Physics of LMs, part 4.1).

Size ``L`` is the number of operations of the expression.

Token layout (``length_token=True``, the paper's layout)::

    <mano> <len_L> op ... operands ... <ans> r <eos>

The expression is written in prefix (Polish) notation with the operators ``+ - *`` and the numbers
``0`` .. ``modulus-1`` (one token each); ``r`` is its value modulo ``modulus`` (23 by default), a
number token too. With ``length_token=False`` the ``<len_L>`` marker is left out: ``<len_L>`` tokens
for sizes beyond the training range never occur in training, which on its own can break
extrapolation, so the choice is a parameter.

Generation (**ours**): a random binary expression tree with ``L`` operator nodes, built recursively:
the left subtree gets ``k`` uniform in ``0..L-1`` operators and the right one the other
``L - 1 - k``; operators and leaves are uniform.

Per-token features, defined on the result token ``r`` only (``None`` on every other token):

- ``num_ops``: ``L``;
- ``tree_depth`` (**ours**): the number of operators on the longest root-to-leaf path of the tree.

Worked example (``modulus=23``)::

    <mano> <len_3> - 7 * + 3 4 5 <ans> 18 <eos>

is ``7 - ((3 + 4) * 5) = 7 - 35 = -28 = 18 (mod 23)``; ``num_ops`` is 3 and ``tree_depth`` is 3
(``-`` above ``*`` above ``+``). ``+ * 3 4 5`` has ``num_ops`` 2, ``tree_depth`` 2, value 17;
``* + 1 2 + 3 4`` has ``num_ops`` 3 but ``tree_depth`` 2.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from anira.io import AniraInputError
from anira.tasks.base import ANS, EOS, Example, Task
from anira.tasks.registry import register

BOS = "<mano>"
OPS = ("+", "-", "*")


def length_token(num_ops: int) -> str:
    return f"<len_{num_ops}>"


def evaluate_prefix(expression: list[str], modulus: int) -> tuple[int, int]:
    """Value (mod ``modulus``) and tree depth of a prefix expression, by a right-to-left stack pass.

    Each stack entry is ``(value, depth)``; an operator pops its two operands (left on top).
    """
    stack: list[tuple[int, int]] = []
    for token in reversed(expression):
        if token in OPS:
            (a, da), (b, db) = stack.pop(), stack.pop()
            value = a + b if token == "+" else a - b if token == "-" else a * b
            stack.append((value % modulus, 1 + max(da, db)))
        else:
            stack.append((int(token) % modulus, 0))
    if len(stack) != 1:
        raise ValueError(f"malformed prefix expression: {' '.join(expression)}")
    return stack[0]


@register
class ManoTask(Task):
    """MANO (see the module docstring for the layout and the features)."""

    name: ClassVar[str] = "mano"
    features: ClassVar[tuple[str, ...]] = ("num_ops", "tree_depth")
    min_size: ClassVar[int] = 1

    def __init__(self, modulus: int = 23, length_token: bool = True):
        if int(modulus) != modulus or modulus < 2:
            raise AniraInputError(f"mano: modulus must be an integer >= 2, got {modulus}")
        self.modulus = int(modulus)
        self.length_token = bool(length_token)

    def vocab_tokens(self, max_size: int) -> list[str]:
        lengths = [length_token(n) for n in range(1, max_size + 1)] if self.length_token else []
        numbers = [str(i) for i in range(self.modulus)]
        return [BOS, *lengths, *OPS, *numbers, ANS, EOS]

    def space_size(self, size: int) -> int:
        """Distinct expressions with ``size`` operators: Catalan(L) shapes x 3^L x modulus^(L+1)."""
        catalan = math.comb(2 * size, size) // (size + 1)
        return catalan * len(OPS) ** size * self.modulus ** (size + 1)

    def _expression(self, num_ops: int, rng: np.random.Generator) -> list[str]:
        if num_ops == 0:
            return [str(int(rng.integers(self.modulus)))]
        left = int(rng.integers(num_ops))
        op = OPS[int(rng.integers(len(OPS)))]
        return [op, *self._expression(left, rng), *self._expression(num_ops - 1 - left, rng)]

    def sample(self, size: int, rng: np.random.Generator) -> Example:
        self.check_size(size)
        expression = self._expression(int(size), rng)
        value, depth = evaluate_prefix(expression, self.modulus)
        prompt = [BOS] + ([length_token(size)] if self.length_token else []) + expression + [ANS]
        answer = [str(value), EOS]
        n_prompt = len(prompt)
        features: dict[str, list[float | None]] = {
            "num_ops": [None] * n_prompt + [float(size), None],
            "tree_depth": [None] * n_prompt + [float(depth), None],
        }
        return Example(
            token_str=prompt + answer,
            answer_mask=[False] * n_prompt + [True, True],
            size=int(size),
            features=features,
            instance={
                "expression": expression,
                "result": value,
                "num_ops": int(size),
                "tree_depth": depth,
            },
        )

    def answer_features(
        self, instance: dict[str, Any], answer: list[str]
    ) -> dict[str, list[float | None]]:
        rest: list[float | None] = [None] * max(len(answer) - 1, 0)
        head = answer[:1]
        return {
            "num_ops": [float(instance["num_ops"]) for _ in head] + rest,
            "tree_depth": [float(instance["tree_depth"]) for _ in head] + rest,
        }
