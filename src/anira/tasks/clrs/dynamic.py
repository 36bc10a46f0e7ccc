"""Dynamic-programming tasks of CLRS-Text: matrix-chain order, optimal BST, LCS.

The two interval DPs (matrix chain, optimal BST) answer with their optimal tree written in
preorder — the split or root chosen for the whole range, then recursively for the left and right
parts — which determines the tree uniquely. The gold tree breaks cost ties towards the smallest
split point or root (CLRS's strict ``<``); any tree of optimal cost is scored correct, since
integer inputs make equal-cost splits common. Both share three features, recorded as the DP fills
its table and looked up for the subproblem each emitted node splits — so they follow whichever
optimal tree was written:

- ``depth``: the node's depth in the tree (0 = root);
- ``span``: matrices (keys) in the subproblem the node splits (roots);
- ``improvements``: how many times the DP lowered that subproblem's best cost while trying split
  points (1 when the first candidate was already optimal).
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar, NamedTuple

import numpy as np

from anira.tasks.base import ANS, EOS
from anira.tasks.clrs import text
from anira.tasks.clrs.common import (
    SEP,
    ClrsTask,
    Feature,
    Run,
    alphabet,
    answer_ints,
    nums,
    positive_int,
    toks,
)
from anira.tasks.registry import register

Table = list[list[int]]


class Node(NamedTuple):
    """One node of an interval-DP tree: subproblem ``i … j``, its split or root ``k``, its depth."""

    i: int
    j: int
    k: int
    depth: int


class IntervalDp(NamedTuple):
    """A filled interval DP: the optimal choice per subproblem, the improvements counted while
    filling it, and the optimal cost."""

    choice: Table
    improvements: Table
    cost: int


class IntervalTask(ClrsTask):
    """An interval DP answering with its tree in preorder; subclasses fix the recurrence."""

    features = ("depth", "span", "improvements")
    align = "tree"  # features follow the emitted tree (answer_features below)
    min_span: ClassVar[int]  # subproblems with fewer items are leaves and emit nothing
    output_key: ClassVar[str]  # name of the preorder in the structured output

    @abc.abstractmethod
    def fill(self, inp: dict[str, Any]) -> IntervalDp:
        """Run the DP on an input."""

    @abc.abstractmethod
    def root(self, inp: dict[str, Any]) -> tuple[int, int]:
        """The whole range ``(i, j)``."""

    @abc.abstractmethod
    def choices(self, i: int, j: int) -> range:
        """The split points (roots) allowed for subproblem ``i … j``."""

    @abc.abstractmethod
    def children(self, i: int, j: int, k: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The two subproblems left by choosing ``k`` for ``i … j``."""

    @abc.abstractmethod
    def tree_cost(self, inp: dict[str, Any], nodes: list[Node]) -> int:
        """The cost of a complete tree."""

    def parse(self, inp: dict[str, Any], values: list[int]) -> tuple[list[Node], bool]:
        """Read ``values`` as a preorder: the nodes of its longest valid prefix, and whether the
        whole of it is one complete tree."""
        nodes: list[Node] = []
        pending = [(*self.root(inp), 0)]

        def drop_leaves() -> None:
            while pending and pending[-1][1] - pending[-1][0] + 1 < self.min_span:
                pending.pop()

        for k in values:
            drop_leaves()
            if not pending:
                break
            i, j, depth = pending.pop()
            if k not in self.choices(i, j):
                break
            nodes.append(Node(i, j, k, depth))
            left, right = self.children(i, j, k)
            pending += [(*right, depth + 1), (*left, depth + 1)]
        drop_leaves()
        return nodes, len(nodes) == len(values) and not pending

    def node_features(self, dp: IntervalDp, nodes: list[Node]) -> dict[str, Feature]:
        return {
            "depth": [node.depth for node in nodes],
            "span": [node.j - node.i + 1 for node in nodes],
            "improvements": [dp.improvements[node.i][node.j] for node in nodes],
        }

    def solve(self, inp: dict[str, Any]) -> Run:
        dp = self.fill(inp)
        nodes: list[Node] = []
        pending = [(*self.root(inp), 0)]
        while pending:
            i, j, depth = pending.pop()
            if j - i + 1 >= self.min_span:
                k = dp.choice[i][j]
                nodes.append(Node(i, j, k, depth))
                left, right = self.children(i, j, k)
                pending += [(*right, depth + 1), (*left, depth + 1)]
        out = [node.k for node in nodes]
        return Run(
            {self.output_key: out, "cost": dp.cost}, toks(out), self.node_features(dp, nodes)
        )

    def valid_answer(self, instance: dict[str, Any], generated: list[str]) -> bool:
        inp = instance["input"]
        values = answer_ints(generated)
        if values is None:
            return False
        nodes, complete = self.parse(inp, values)
        return complete and self.tree_cost(inp, nodes) == instance["output"]["cost"]

    def compact_features(self, instance: dict[str, Any], answer: list[str]) -> dict[str, Feature]:
        inp = instance["input"]
        values: list[int] = []
        for tok in answer:
            if not tok.lstrip("-").isdigit():
                break
            values.append(int(tok))
        nodes, _ = self.parse(inp, values)
        features = self.node_features(self.fill(inp), nodes)
        return {name: (v + [None] * len(answer))[: len(answer)] for name, v in features.items()}


@register
class MatrixChainOrder(IntervalTask):
    """The optimal parenthesisation of a matrix chain (CLRS MATRIX-CHAIN-ORDER).

    Input: the ``n + 1`` dimensions ``p0 … pn`` (matrix ``i`` is ``p_i × p_{i+1}``), in
    ``1 … max_dim - 1``. Output: the split points in preorder, ``k`` meaning
    ``(A_i … A_k)(A_{k+1} … A_j)``. ``2 5 1 3 <ans> 1 0 <eos>``: ``((A0 A1) A2)`` costs
    2·5·1 + 2·1·3 = 16 < 30. Features (module docstring): depth ``0 1``, span ``3 2``,
    improvements ``2 1`` (for A0..A2, split 0 costs 30, then split 1 costs 16). ``size`` = ``n``.
    Any split tree of minimum cost is scored correct.
    """

    name = "clrs_matrix_chain_order"
    min_size = 2
    min_span = 2
    output_key = "splits"

    text_name = "matrix_chain_order"
    text_inputs = ("p",)
    text_outputs = ("s",)

    def __init__(self, max_dim: int = 10, format: str = "compact") -> None:
        super().__init__(format)
        self.max_dim = positive_int("max_dim", max_dim, 2)

    def text_values(self, inp: dict[str, Any]) -> list[list[str]]:
        return [text.array(inp["dims"])]

    def compact_vocab(self, max_size: int) -> list[str]:
        return [ANS, EOS, *nums(max(self.max_dim, max_size))]

    def sample_input(self, size: int, rng: np.random.Generator) -> dict[str, Any]:
        return {"dims": [int(d) for d in rng.integers(1, self.max_dim, size=size + 1)]}

    def encode_input(self, inp: dict[str, Any]) -> list[str]:
        return toks(inp["dims"])

    def root(self, inp: dict[str, Any]) -> tuple[int, int]:
        return 0, len(inp["dims"]) - 2

    def choices(self, i: int, j: int) -> range:
        return range(i, j)

    def children(self, i: int, j: int, k: int) -> tuple[tuple[int, int], tuple[int, int]]:
        return (i, k), (k + 1, j)

    def tree_cost(self, inp: dict[str, Any], nodes: list[Node]) -> int:
        p = inp["dims"]
        return sum(p[i] * p[k + 1] * p[j + 1] for i, j, k, _ in nodes)

    def fill(self, inp: dict[str, Any]) -> IntervalDp:
        p = inp["dims"]
        n = len(p) - 1
        cost = [[0] * n for _ in range(n)]
        split = [[0] * n for _ in range(n)]
        improvements = [[0] * n for _ in range(n)]
        for length in range(2, n + 1):
            for i in range(n - length + 1):
                j, best = i + length - 1, math.inf
                for k in range(i, j):
                    q = cost[i][k] + cost[k + 1][j] + p[i] * p[k + 1] * p[j + 1]
                    if q < best:
                        best, split[i][j] = q, k
                        improvements[i][j] += 1
                cost[i][j] = best
        return IntervalDp(split, improvements, cost[0][n - 1])


@register
class OptimalBst(IntervalTask):
    """The optimal binary search tree (CLRS OPTIMAL-BST), as its keys in preorder.

    Input: integer weights (unnormalised probabilities, ``1 … max_weight - 1``) of keys
    ``p1 … pn`` then of the gaps ``q0 … qn``: ``p1 … pn | q0 … qn``. Keys are numbered 1 … n.
    ``5 1 | 1 1 1 <ans> 1 2 <eos>`` (key 1 at the root, key 2 its right child; expected cost 15).
    Features (module docstring): depth ``0 1``, span ``2 1``, improvements ``1 1``.
    ``size`` = ``n``. Any search tree of minimum expected cost is scored correct.
    """

    name = "clrs_optimal_bst"
    min_span = 1
    output_key = "preorder"

    text_name = "optimal_bst"
    text_inputs = ("p", "q")
    text_outputs = ("root",)

    def __init__(self, max_weight: int = 10, format: str = "compact") -> None:
        super().__init__(format)
        self.max_weight = positive_int("max_weight", max_weight, 2)

    def text_values(self, inp: dict[str, Any]) -> list[list[str]]:
        return [text.array(inp["p"]), text.array(inp["q"])]

    def compact_vocab(self, max_size: int) -> list[str]:
        return [ANS, EOS, SEP, *nums(max(self.max_weight, max_size + 1))]

    def sample_input(self, size: int, rng: np.random.Generator) -> dict[str, Any]:
        w = [int(x) for x in rng.integers(1, self.max_weight, size=2 * size + 1)]
        return {"p": w[:size], "q": w[size:]}

    def encode_input(self, inp: dict[str, Any]) -> list[str]:
        return [*toks(inp["p"]), SEP, *toks(inp["q"])]

    def root(self, inp: dict[str, Any]) -> tuple[int, int]:
        return 1, len(inp["p"])

    def choices(self, i: int, j: int) -> range:
        return range(i, j + 1)

    def children(self, i: int, j: int, k: int) -> tuple[tuple[int, int], tuple[int, int]]:
        return (i, k - 1), (k + 1, j)

    def tree_cost(self, inp: dict[str, Any], nodes: list[Node]) -> int:
        """Each key and gap weighs (its depth + 1): every subtree adds its total weight once."""
        p, q = inp["p"], inp["q"]
        return sum(q) + sum(sum(p[i - 1 : j]) + sum(q[i - 1 : j + 1]) for i, j, _, _ in nodes)

    def fill(self, inp: dict[str, Any]) -> IntervalDp:
        p, q = [0, *inp["p"]], inp["q"]  # p[1..n] as in CLRS
        n = len(inp["p"])
        # e[i][j], w[i][j] for 1 <= i <= n + 1, i - 1 <= j <= n (index j + 1 avoids negatives).
        e = [[0] * (n + 2) for _ in range(n + 2)]
        w = [[0] * (n + 2) for _ in range(n + 2)]
        root = [[0] * (n + 2) for _ in range(n + 2)]
        improvements = [[0] * (n + 2) for _ in range(n + 2)]
        for i in range(1, n + 2):
            e[i][i - 1] = w[i][i - 1] = q[i - 1]
        for length in range(1, n + 1):
            for i in range(1, n - length + 2):
                j = i + length - 1
                e[i][j], w[i][j] = math.inf, w[i][j - 1] + p[j] + q[j]
                for r in range(i, j + 1):
                    t = e[i][r - 1] + e[r + 1][j] + w[i][j]
                    if t < e[i][j]:
                        e[i][j], root[i][j] = t, r
                        improvements[i][j] += 1
        return IntervalDp(root, improvements, e[1][n])


@register
class LcsLength(ClrsTask):
    """A longest common subsequence of two strings (CLRS LCS-LENGTH + PRINT-LCS).

    Input ``x | y``, both of length ``size`` over the first ``alphabet_size`` letters. Output: the
    LCS read back along CLRS's arrows (ties ``c[i-1][j] >= c[i][j-1]`` go up).
    ``a b c b | b d c b <ans> b c b <eos>``. Features per letter — the traceback runs from the end,
    so it finds the last letter first:

    - ``fill_step``: when the table cell ``(i, j)`` whose match emits the letter was filled
      (row-major, 1-based); example ``5 11 16``;
    - ``traceback_step``: moves the traceback had made when it reached that cell; example
      ``3 1 0`` (from (4, 4) diagonally to (3, 3), diagonally to (2, 2), left to (2, 1));
    - ``skips``: non-diagonal moves made since the previous match; example ``1 0 0``.

    Any longest common subsequence is scored correct (for ``a b | b a`` both ``b`` and ``a``). The
    features describe the traceback's own letters, so they are null from the first letter that
    differs from it.
    """

    name = "clrs_lcs_length"
    features = ("fill_step", "traceback_step", "skips")
    align = "prefix"

    text_name = "lcs_length"
    text_inputs = ("string", "key")
    text_outputs = ("b",)

    def __init__(self, alphabet_size: int = 4, format: str = "compact") -> None:
        super().__init__(format)
        self.letters = alphabet(alphabet_size)

    def text_values(self, inp: dict[str, Any]) -> list[list[str]]:
        x, y = inp["x"], inp["y"]
        return [text.array([0] * len(x) + [1] * len(y)), text.array([*x, *y])]

    def compact_vocab(self, max_size: int) -> list[str]:
        return [ANS, EOS, SEP, *self.letters]

    def sample_input(self, size: int, rng: np.random.Generator) -> dict[str, Any]:
        x, y = (rng.integers(len(self.letters), size=(2, size))).tolist()
        return {"x": [self.letters[c] for c in x], "y": [self.letters[c] for c in y]}

    def encode_input(self, inp: dict[str, Any]) -> list[str]:
        return [*inp["x"], SEP, *inp["y"]]

    def solve(self, inp: dict[str, Any]) -> Run:
        x, y = inp["x"], inp["y"]
        m, n = len(x), len(y)
        c = [[0] * (n + 1) for _ in range(m + 1)]
        fill = [[0] * (n + 1) for _ in range(m + 1)]
        step = 0
        for i in range(1, m + 1):
            for j in range(1, n + 1):
                step += 1
                fill[i][j] = step
                if x[i - 1] == y[j - 1]:
                    c[i][j] = c[i - 1][j - 1] + 1
                else:
                    c[i][j] = max(c[i - 1][j], c[i][j - 1])
        out: list[str] = []
        features: dict[str, list[int]] = {name: [] for name in self.features}
        i, j, moves, skips = m, n, 0, 0
        while i > 0 and j > 0:
            if x[i - 1] == y[j - 1]:
                out.append(x[i - 1])
                features["fill_step"].append(fill[i][j])
                features["traceback_step"].append(moves)
                features["skips"].append(skips)
                i, j, skips = i - 1, j - 1, 0
            elif c[i - 1][j] >= c[i][j - 1]:
                i, skips = i - 1, skips + 1
            else:
                j, skips = j - 1, skips + 1
            moves += 1
        out.reverse()
        for values in features.values():
            values.reverse()
        return Run(out, out, features)

    def valid_answer(self, instance: dict[str, Any], generated: list[str]) -> bool:
        inp = instance["input"]
        if generated[-1:] != [EOS] or len(generated) - 1 != len(instance["output"]):
            return False
        return all(is_subsequence(generated[:-1], inp[s]) for s in ("x", "y"))


def is_subsequence(sub: list[str], seq: list[str]) -> bool:
    rest = iter(seq)
    return all(letter in rest for letter in sub)
