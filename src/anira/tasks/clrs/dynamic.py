"""Dynamic-programming tasks of CLRS-Text: matrix-chain order, optimal BST, LCS.

The two interval DPs (matrix chain, optimal BST) answer with their optimal tree written in
preorder — the split or root chosen for the whole range, then recursively for the left and right
parts — which determines the tree uniquely. Both share three features, recorded as the DP fills
its table and as the tree is read back from it:

- ``depth``: the node's depth in the optimal tree (0 = root);
- ``span``: matrices (keys) in the subproblem the node splits (roots);
- ``improvements``: how many times the DP lowered that subproblem's best cost while trying split
  points (1 when the first candidate was already optimal).

Ties go to the smallest split point or root (CLRS's strict ``<``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from anira.tasks import register
from anira.tasks.base import ANS, EOS
from anira.tasks.clrs.common import SEP, ClrsTask, Run, alphabet, nums, positive_int, toks

Table = list[list[int]]


def read_tree(
    choice: Table,
    improvements: Table,
    root: tuple[int, int],
    children: Callable[[int, int, int], tuple[tuple[int, int], tuple[int, int]]],
    min_span: int,
) -> tuple[list[int], dict[str, list[int]]]:
    """Preorder of an interval-DP tree; subproblems ``(i, j)`` of fewer than ``min_span`` items
    (``j - i + 1``) are leaves and emit nothing."""
    out: list[int] = []
    features: dict[str, list[int]] = {"depth": [], "span": [], "improvements": []}

    def walk(i: int, j: int, depth: int) -> None:
        if j - i + 1 < min_span:
            return
        k = choice[i][j]
        out.append(k)
        features["depth"].append(depth)
        features["span"].append(j - i + 1)
        features["improvements"].append(improvements[i][j])
        for a, b in children(i, j, k):
            walk(a, b, depth + 1)

    walk(*root, 0)
    return out, features


@register
class MatrixChainOrder(ClrsTask):
    """The optimal parenthesisation of a matrix chain (CLRS MATRIX-CHAIN-ORDER).

    Input: the ``n + 1`` dimensions ``p0 … pn`` (matrix ``i`` is ``p_i × p_{i+1}``), in
    ``1 … max_dim - 1``. Output: the split points in preorder, ``k`` meaning
    ``(A_i … A_k)(A_{k+1} … A_j)``. ``2 5 1 3 <ans> 1 0 <eos>``: ``((A0 A1) A2)`` costs
    2·5·1 + 2·1·3 = 16 < 30. Features (module docstring): depth ``0 1``, span ``3 2``,
    improvements ``2 1`` (for A0..A2, split 0 costs 30, then split 1 costs 16). ``size`` = ``n``.
    """

    name = "clrs_matrix_chain_order"
    features = ("depth", "span", "improvements")
    min_size = 2

    def __init__(self, max_dim: int = 10) -> None:
        self.max_dim = positive_int("max_dim", max_dim, 2)

    def vocab_tokens(self, max_size: int) -> list[str]:
        return [ANS, EOS, *nums(max(self.max_dim, max_size))]

    def sample_input(self, size: int, rng: np.random.Generator) -> dict[str, Any]:
        return {"dims": [int(d) for d in rng.integers(1, self.max_dim, size=size + 1)]}

    def encode_input(self, inp: dict[str, Any]) -> list[str]:
        return toks(inp["dims"])

    def solve(self, inp: dict[str, Any]) -> Run:
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
        out, features = read_tree(
            split, improvements, (0, n - 1), lambda i, j, k: ((i, k), (k + 1, j)), 2
        )
        return Run({"splits": out, "cost": cost[0][n - 1]}, toks(out), features)


@register
class OptimalBst(ClrsTask):
    """The optimal binary search tree (CLRS OPTIMAL-BST), as its keys in preorder.

    Input: integer weights (unnormalised probabilities, ``1 … max_weight - 1``) of keys
    ``p1 … pn`` then of the gaps ``q0 … qn``: ``p1 … pn | q0 … qn``. Keys are numbered 1 … n.
    ``5 1 | 1 1 1 <ans> 1 2 <eos>`` (key 1 at the root, key 2 its right child; expected cost 15).
    Features (module docstring): depth ``0 1``, span ``2 1``, improvements ``1 1``.
    ``size`` = ``n``.
    """

    name = "clrs_optimal_bst"
    features = ("depth", "span", "improvements")

    def __init__(self, max_weight: int = 10) -> None:
        self.max_weight = positive_int("max_weight", max_weight, 2)

    def vocab_tokens(self, max_size: int) -> list[str]:
        return [ANS, EOS, SEP, *nums(max(self.max_weight, max_size + 1))]

    def sample_input(self, size: int, rng: np.random.Generator) -> dict[str, Any]:
        w = [int(x) for x in rng.integers(1, self.max_weight, size=2 * size + 1)]
        return {"p": w[:size], "q": w[size:]}

    def encode_input(self, inp: dict[str, Any]) -> list[str]:
        return [*toks(inp["p"]), SEP, *toks(inp["q"])]

    def solve(self, inp: dict[str, Any]) -> Run:
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
        out, features = read_tree(
            root, improvements, (1, n), lambda i, j, r: ((i, r - 1), (r + 1, j)), 1
        )
        return Run({"preorder": out, "cost": e[1][n]}, toks(out), features)


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
    """

    name = "clrs_lcs_length"
    features = ("fill_step", "traceback_step", "skips")

    def __init__(self, alphabet_size: int = 4) -> None:
        self.letters = alphabet(alphabet_size)

    def vocab_tokens(self, max_size: int) -> list[str]:
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
