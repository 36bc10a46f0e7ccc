"""CLRS-Text scorers against independent validity checks (networkx, brute force, scipy).

Every task's ``is_correct`` is compared, on small random instances, with a validity check written
from the problem's definition (``VALIDATORS`` in references.py), on the gold answer, on wrong
answers of every kind (truncated, duplicated, extra, changed value, wrong order) and on other valid
answers. Hand-made instances with several valid answers check that each one is accepted.
"""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

import anira.tasks.clrs  # noqa: F401  (registers the tasks)
from anira.tasks import TASKS
from anira.tasks.base import EOS
from tests.references import (
    CLRS,
    KINDS,
    VALIDATORS,
    best_chain,
    corrupt,
    feature,
    graph,
    tree_from_preorder,
    valid_convex_hull,
)


def small_sizes(task) -> list[int]:
    return [task.min_size + i % 6 for i in range(60)]


@pytest.mark.parametrize("name", CLRS)
def test_scorer_agrees_with_validity_check(name):
    """On the gold answer, on every kind of corruption and on other values, ``is_correct`` says
    what the independent check says; every kind that applies is rejected somewhere."""
    task, valid = TASKS[name](), VALIDATORS[name]
    rng = np.random.default_rng(1)
    rejected = dict.fromkeys(KINDS, 0)
    applicable = dict.fromkeys(KINDS, 0)
    for size in small_sizes(task):
        ex = task.sample(size, rng)
        inp, gold = ex.instance["input"], ex.answer_str[:-1]
        assert valid(inp, gold) and task.is_correct(ex, [*gold, EOS])
        alphabet = sorted(
            {t for t in ex.token_str if t not in (EOS, "<ans>")} | {str(i) for i in range(size + 1)}
        )
        for kind in KINDS:
            for _ in range(3):
                wrong = corrupt(gold, kind, alphabet, rng)
                if wrong is None:
                    continue
                applicable[kind] += 1
                expected = valid(inp, wrong)
                assert task.is_correct(ex, [*wrong, EOS]) == expected, (kind, inp, wrong)
                rejected[kind] += not expected
        assert not task.is_correct(ex, gold), "an answer without <eos> is incomplete"
    for kind in KINDS:
        assert rejected[kind] > 0 or applicable[kind] == 0, f"{name}: no {kind} answer rejected"


# --- hand-made instances with several valid answers ------------------------------------------

ALTERNATIVES = [
    # (task, input, valid answers (≥ 2 where the task has several), invalid answers)
    ("clrs_sort", {"keys": [3, 1, 2]}, ["1 2 3"], ["1 2", "1 2 3 3", "1 3 2", "1 2 4"]),
    ("clrs_minimum", {"keys": [4, 1, 7, 1]}, ["1", "3"], ["0", "2", "1 3", ""]),
    ("clrs_binary_search", {"keys": [1, 3, 3], "target": 9}, ["3"], ["2", "3 3", ""]),
    ("clrs_quickselect", {"keys": [4, 1, 7, 2]}, ["2"], ["4", "1", "2 2"]),
    (
        "clrs_max_subarray",
        {"keys": [3, -3, 3, 0]},
        ["0 0", "0 2", "2 2", "2 3", "0 3"],
        ["0 1", "2", "0 0 2", "3 2", "1 1"],
    ),
    ("clrs_dfs", {"n": 3, "edges": [[0, 1], [0, 2]]}, ["0 0 0"], ["0 0", "0 0 1", "0 0 0 0"]),
    (
        "clrs_bfs",
        {"n": 5, "edges": [[0, 1], [0, 2], [1, 3], [2, 3]], "source": 0},
        ["0 0 0 1 4", "0 0 0 2 4"],
        ["0 0 0 0 4", "0 0 0 1 0", "0 0 0 1", "0 0 0 1 4 4", "0 0 0 3 4", "1 0 0 1 4"],
    ),
    (
        "clrs_topological_sort",
        {"n": 3, "edges": [[0, 2]]},
        ["1 0 2", "0 1 2", "0 2 1"],
        ["2 0 1", "0 1", "0 1 2 2", "0 0 2"],
    ),
    (
        "clrs_articulation_points",
        {"n": 4, "edges": [[0, 1], [1, 2], [2, 3]]},
        ["1 2"],
        ["1", "2 1", "1 2 2", "1 2 3"],
    ),
    (
        "clrs_bridges",
        {"n": 3, "edges": [[0, 1], [1, 2]]},
        ["0 1 1 2"],
        ["1 2 0 1", "0 1", "0 1 1 2 1 2", "0 1 1"],
    ),
    (
        "clrs_scc",
        {"n": 4, "edges": [[0, 1], [1, 0], [2, 3], [3, 2], [1, 2]]},
        ["0 0 2 2", "1 1 3 3", "0 0 3 3"],
        ["0 0 0 0", "0 1 2 2", "2 2 0 0", "0 0 2", "5 5 2 2"],
    ),
    (
        "clrs_mst",
        {"n": 3, "edges": [[0, 1, 1], [0, 2, 1], [1, 2, 1]]},
        ["0 1 0 2", "0 1 1 2", "2 1 0 2", "1 0 2 0"],
        ["0 1", "0 1 0 1", "0 1 0 2 1 2", "0 1 2 2"],
    ),
    (
        "clrs_shortest_paths",
        {"n": 4, "edges": [[0, 1, 1], [0, 2, 2], [1, 2, 1]], "source": 0},
        ["0 0 0 3", "0 0 1 3"],
        ["0 0 0 0", "0 2 0 3", "0 0 0", "0 0 0 3 3", "1 0 0 3"],
    ),
    (
        "clrs_dag_shortest_paths",
        {"n": 3, "edges": [[0, 1, 1], [0, 2, 2], [1, 2, 1]], "source": 0},
        ["0 0 0", "0 0 1"],
        ["0 0 2", "0 0", "0 0 0 0", "0 1 0"],
    ),
    (
        "clrs_floyd_warshall",
        {"n": 2, "edges": [[0, 1, 3]]},
        ["0 0 | 0 1", "0 0 | 1 1"],
        ["0 1 | 0 1", "0 0 | 1 0", "0 0", "0 0 | 0 1 | 0 1", "0 0 0 1"],
    ),
    (
        "clrs_matrix_chain_order",
        {"dims": [1, 1, 1, 1]},
        ["0 1", "1 0"],
        ["0", "0 1 1", "2 0", "1 1", "0 0"],
    ),
    (
        "clrs_optimal_bst",
        {"p": [1, 1], "q": [1, 1, 1]},
        ["1 2", "2 1"],
        ["1", "1 2 2", "1 1", "2 3", "3 1"],
    ),
    (
        "clrs_lcs_length",
        {"x": list("ab"), "y": list("ba")},
        ["b", "a"],
        ["a b", "c", "", "b b"],
    ),
    (
        "clrs_string_matcher",
        {"text": list("aaa"), "pattern": list("aa")},
        ["0 1"],
        ["0", "1 0", "0 1 1", "0 1 2"],
    ),
    (
        "clrs_activity_selector",
        {"activities": [[1, 4], [3, 5], [0, 6], [5, 7]]},
        ["0 3", "1 3"],
        ["3 0", "0", "0 3 3", "0 1", "0 3 2", "2 3"],
    ),
    (
        "clrs_task_scheduling",
        {"tasks": [[1, 5], [1, 5], [2, 3]]},
        ["0 2", "1 2"],
        ["0 1", "2 0", "0", "0 2 2", "0 1 2"],
    ),
    (
        "clrs_segments_intersect",
        {"pairs": [[0, 0, 2, 2, 0, 2, 2, 0], [0, 0, 1, 0, 2, 0, 3, 0]]},
        ["1 0"],
        ["0 1", "1", "1 0 0", "1 1"],
    ),
    (
        "clrs_convex_hull",
        {"points": [[0, 0], [2, 0], [2, 2], [0, 2], [1, 0], [1, 1]]},
        ["0 1 2 3"],
        ["0 4 1 2 3", "1 2 3 0", "0 3 2 1", "0 1 2", "0 1 2 3 3"],
    ),
]


@pytest.mark.parametrize(
    ("name", "inp", "valid", "invalid"), ALTERNATIVES, ids=[a[0] for a in ALTERNATIVES]
)
def test_hand_made_alternatives(name, inp, valid, invalid):
    task = TASKS[name]()
    ex = task.make_example(inp, size=1)
    assert " ".join(ex.answer_str[:-1]) in valid
    for answer in valid:
        assert VALIDATORS[name](inp, answer.split()), answer
        assert task.is_correct(ex, [*answer.split(), EOS]), answer
    for answer in invalid:
        assert not VALIDATORS[name](inp, answer.split()), answer
        assert not task.is_correct(ex, [*answer.split(), EOS]), answer


def test_every_task_has_hand_made_alternatives():
    assert {a[0] for a in ALTERNATIVES} == set(CLRS)


# --- features along another valid answer, against independent references ----------------------


def test_bfs_features_follow_any_valid_tree():
    """Features are per node: along another valid tree they are the networkx hop distances."""
    task = TASKS["clrs_bfs"]()
    inp = {"n": 5, "edges": [[0, 1], [0, 2], [1, 3], [2, 3]], "source": 0}
    ex = task.make_example(inp, 5)
    other = ["0", "0", "0", "2", "4", EOS]
    assert task.is_correct(ex, other)
    hops = nx.single_source_shortest_path_length(graph(inp, directed=False), 0)
    layers = task.answer_features(ex.instance, other)["bfs_layer"]
    assert layers == [hops.get(v) for v in range(5)] + [None]


def test_topological_features_follow_the_emitted_order():
    task = TASKS["clrs_topological_sort"]()
    rng = np.random.default_rng(3)
    for _ in range(20):
        ex = task.sample(8, rng)
        g = graph(ex.instance["input"], directed=True)
        other = list(nx.lexicographical_topological_sort(g, key=lambda v: -v))
        assert task.is_correct(ex, [*map(str, other), EOS])
        gold = [int(t) for t in ex.answer_str[:-1]]
        finish = dict(zip(gold, feature(ex, "finish_time"), strict=True))
        along = task.answer_features(ex.instance, [*map(str, other), EOS])["finish_time"]
        assert along == [finish[v] for v in other] + [None]
        # finish times decrease along CLRS's order, the DFS's own postorder reversed
        assert [finish[v] for v in reversed(list(nx.dfs_postorder_nodes(g)))] == sorted(
            finish.values(), reverse=True
        )


def improvements_brute_force(p, i, j) -> int:
    """Strict improvements of the running best while trying splits i … j-1 in order."""
    best, count = None, 0
    for k in range(i, j):
        cost = (
            best_chain(tuple(p), i, k) + best_chain(tuple(p), k + 1, j) + p[i] * p[k + 1] * p[j + 1]
        )
        if best is None or cost < best:
            best, count = cost, count + 1
    return count


def test_matrix_chain_features_follow_the_emitted_tree():
    """Along another optimal tree, depth and span come from that tree, improvements from the DP of
    its subproblems (recounted by brute force)."""
    task = TASKS["clrs_matrix_chain_order"]()
    p = [2, 2, 2, 2, 2]
    ex = task.make_example({"dims": p}, 4)
    checked = 0
    for answer in itertools.permutations(["0", "1", "2"]):
        values = [int(t) for t in answer]
        nodes = tree_from_preorder(
            list(values), 0, 3, lambda i, j: range(i, j), lambda i, j, k: ((i, k), (k + 1, j)), 2
        )
        if nodes is None or len(nodes) != 3:
            assert not task.is_correct(ex, [*answer, EOS])
            continue
        assert task.is_correct(ex, [*answer, EOS])  # every tree costs 24 here
        along = task.answer_features(ex.instance, [*answer, EOS])
        assert along["span"] == [j - i + 1 for i, j, _ in nodes] + [None]
        assert along["improvements"] == [improvements_brute_force(p, i, j) for i, j, _ in nodes] + [
            None
        ]
        checked += 1
    assert checked >= 2
    assert task.answer_features(ex.instance, ["0", "x", EOS])["depth"] == [0, None, None]


def test_prefix_features_stop_at_the_first_difference():
    task = TASKS["clrs_max_subarray"]()
    ex = task.make_example({"keys": [3, -3, 3, 0]}, 4)
    assert ex.answer_str == ["0", "0", EOS]
    along = task.answer_features(ex.instance, ["0", "2", EOS])
    assert along["fixed_at"] == [feature(ex, "fixed_at")[0], None, None]


# --- convex hull: the collinear case is defined (corners only) and checked ---------------------


def test_convex_hull_with_collinear_points_against_qhull():
    """On a 4 × 4 grid most inputs have collinear points; the answer lists corners only, as
    Qhull does, and the validity check agrees."""
    from scipy.spatial import ConvexHull as ScipyHull

    task = TASKS["clrs_convex_hull"](coord_range=4)
    rng = np.random.default_rng(5)
    collinear = 0
    for _ in range(200):
        ex = task.sample(int(rng.integers(3, 10)), rng)
        pts = np.array(ex.instance["input"]["points"])
        out = ex.instance["output"]
        assert valid_convex_hull(ex.instance["input"], ex.answer_str[:-1])
        if np.linalg.matrix_rank(pts[1:] - pts[0]) == 2:
            assert sorted(out) == sorted(ScipyHull(pts).vertices.tolist())
        collinear += any(
            np.linalg.det(np.array([pts[b] - pts[a], pts[c] - pts[a]])) == 0
            for a, b, c in itertools.combinations(range(len(pts)), 3)
        )
    assert collinear > 100
