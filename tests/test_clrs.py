"""CLRS-Text: every task against an independent reference, hand-written cases, bad sizes."""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import yaml
from scipy.optimize import linear_sum_assignment
from scipy.spatial import ConvexHull as ScipyHull

import anira.tasks.clrs  # noqa: F401  (registers the tasks)
from anira.io import AniraInputError
from anira.tasks import TASKS, get_task
from anira.tasks.base import ANS, EOS
from tests.references import CLRS, exact_intersect, feature, graph, is_subsequence

N_RANDOM = 200


def parents_from_tree_edges(n: int, tree_edges) -> list[int]:
    pi = list(range(n))
    for u, v in tree_edges:
        pi[v] = u
    return pi


def check_predecessors(g: nx.DiGraph, source: int, pi: list[int]) -> None:
    dist = nx.single_source_dijkstra_path_length(g, source)
    assert pi[source] == source
    for v in range(g.number_of_nodes()):
        if v == source:
            continue
        if v not in dist:
            assert pi[v] == v
        else:
            assert g.has_edge(pi[v], v) and dist[pi[v]] + g[pi[v]][v]["weight"] == dist[v]


# --- independent references: (input, structured output, example) → assertions ---------------


def ref_sort(inp, out, ex):
    keys = inp["keys"]
    assert out == sorted(keys)
    # Insertion sort is stable: the key at output position p is the input key of rank p.
    order = sorted(range(len(keys)), key=lambda i: (keys[i], i))
    expected = []
    for o in order:
        greater = sum(keys[i] > keys[o] for i in range(o))
        expected.append(greater + (1 if greater < o else 0))
    assert feature(ex, "insertion_comparisons") == expected


def ref_minimum(inp, out, ex):
    keys = inp["keys"]
    assert out == int(np.argmin(keys))
    prefix_minima = sum(keys[i] < min(keys[:i]) for i in range(1, len(keys)))
    assert feature(ex, "updates") == [prefix_minima]


def ref_binary_search(inp, out, ex):
    assert out == int(np.searchsorted(inp["keys"], inp["target"], side="left"))
    assert feature(ex, "probes")[0] <= int(np.ceil(np.log2(len(inp["keys"]) + 1)))


def ref_quickselect(inp, out, ex):
    assert out == sorted(inp["keys"])[(len(inp["keys"]) - 1) // 2]


def ref_max_subarray(inp, out, ex):
    a = inp["keys"]
    best = max(sum(a[s : e + 1]) for s in range(len(a)) for e in range(s, len(a)))
    first = min(
        (e, s) for s in range(len(a)) for e in range(s, len(a)) if sum(a[s : e + 1]) == best
    )
    assert out == [first[1], first[0]]


def ref_dfs(inp, out, ex):
    g = graph(inp, directed=True)
    assert out == parents_from_tree_edges(inp["n"], nx.dfs_edges(g))
    discovery = feature(ex, "discovery_time")
    assert sorted(range(inp["n"]), key=lambda v: discovery[v]) == list(nx.dfs_preorder_nodes(g))


def ref_bfs(inp, out, ex):
    g, s = graph(inp, directed=False), inp["source"]
    assert out == parents_from_tree_edges(inp["n"], nx.bfs_edges(g, s))
    layer = nx.single_source_shortest_path_length(g, s)
    assert feature(ex, "bfs_layer") == [layer.get(v) for v in range(inp["n"])]


def ref_topological_sort(inp, out, ex):
    g = graph(inp, directed=True)
    assert nx.is_directed_acyclic_graph(g)
    assert out == list(reversed(list(nx.dfs_postorder_nodes(g))))


def ref_articulation_points(inp, out, ex):
    assert out == sorted(nx.articulation_points(graph(inp, directed=False)))


def ref_bridges(inp, out, ex):
    assert out == sorted(sorted(e) for e in nx.bridges(graph(inp, directed=False)))


def ref_scc(inp, out, ex):
    label = [0] * inp["n"]
    for comp in nx.strongly_connected_components(graph(inp, directed=True)):
        for v in comp:
            label[v] = min(comp)
    assert out == label


def ref_mst(inp, out, ex):
    g = graph(inp, directed=False)
    assert nx.is_connected(g)
    kruskal = nx.minimum_spanning_edges(g, algorithm="kruskal", data=False)
    assert out == sorted(sorted(e) for e in kruskal)


def ref_shortest_paths(inp, out, ex):
    g = graph(inp, directed=True)
    dist = nx.single_source_bellman_ford_path_length(g, inp["source"])
    assert out["dist"] == [dist.get(v) for v in range(inp["n"])]
    check_predecessors(g, inp["source"], out["pi"])


def ref_dag_shortest_paths(inp, out, ex):
    assert nx.is_directed_acyclic_graph(graph(inp, directed=True))
    ref_shortest_paths(inp, out, ex)


def ref_floyd_warshall(inp, out, ex):
    g = graph(inp, directed=True)
    dist = dict(nx.all_pairs_dijkstra_path_length(g))
    for i in range(inp["n"]):
        assert out["dist"][i] == [dist[i].get(j) for j in range(inp["n"])]
        check_predecessors(g, i, out["pi"][i])


def ref_matrix_chain_order(inp, out, ex):
    p = inp["dims"]

    @functools.cache
    def best(i, j):  # brute-force recursion: (cost, smallest optimal split)
        if i == j:
            return 0, None
        return min(
            (best(i, k)[0] + best(k + 1, j)[0] + p[i] * p[k + 1] * p[j + 1], k) for k in range(i, j)
        )

    def expected(i, j):
        if i == j:
            return []
        k = best(i, j)[1]
        return [k, *expected(i, k), *expected(k + 1, j)]

    n = len(p) - 1
    assert out["cost"] == best(0, n - 1)[0]
    assert out["splits"] == expected(0, n - 1)


def ref_optimal_bst(inp, out, ex):
    p, q = inp["p"], inp["q"]

    @functools.cache
    def best(i, j):  # keys i..j (1-based); cost = sum over nodes of weight x (depth + 1)
        if j < i:
            return q[i - 1], None
        weight = sum(p[i - 1 : j]) + sum(q[i - 1 : j + 1])
        return min((best(i, r - 1)[0] + best(r + 1, j)[0] + weight, r) for r in range(i, j + 1))

    def expected(i, j):
        if j < i:
            return []
        r = best(i, j)[1]
        return [r, *expected(i, r - 1), *expected(r + 1, j)]

    n = len(p)
    assert out["cost"] == best(1, n)[0]
    assert out["preorder"] == expected(1, n)


def ref_lcs_length(inp, out, ex):
    x, y = inp["x"], inp["y"]

    @functools.cache
    def length(i, j):
        if i == len(x) or j == len(y):
            return 0
        if x[i] == y[j]:
            return 1 + length(i + 1, j + 1)
        return max(length(i + 1, j), length(i, j + 1))

    assert len(out) == length(0, 0)
    assert is_subsequence(out, x) and is_subsequence(out, y)


def ref_string_matcher(inp, out, ex):
    t, pat = "".join(inp["text"]), "".join(inp["pattern"])
    assert out == [s for s in range(len(t) - len(pat) + 1) if t[s : s + len(pat)] == pat]
    assert out  # the pattern is planted


def ref_activity_selector(inp, out, ex):
    acts = inp["activities"]
    chosen = sorted(acts[i] for i in out)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(chosen))
    by_start = sorted(acts)

    @functools.cache
    def most(i):  # most compatible activities among by_start[i:]
        if i == len(by_start):
            return 0
        nxt = next(
            (j for j in range(i + 1, len(by_start)) if by_start[j][0] >= by_start[i][1]), None
        )
        return max(most(i + 1), 1 + (most(nxt) if nxt is not None else 0))

    assert len(out) == most(0)


def ref_task_scheduling(inp, out, ex):
    tasks, n = inp["tasks"], len(inp["tasks"])
    early = sorted(tasks[i][0] for i in out)
    assert all(d >= t for t, d in enumerate(early, start=1))  # all can be on time
    gain = np.array([[w if t <= d else 0 for t in range(1, n + 1)] for d, w in tasks])
    rows, cols = linear_sum_assignment(gain, maximize=True)
    assert sum(tasks[i][1] for i in out) == gain[rows, cols].sum()


def ref_segments_intersect(inp, out, ex):
    expected = [
        int(exact_intersect(*(row[i : i + 2] for i in range(0, 8, 2)))) for row in inp["pairs"]
    ]
    assert out == expected


def ref_convex_hull(inp, out, ex):
    pts = [tuple(p) for p in inp["points"]]

    def turn(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def chain(order):  # Andrew's monotone chain, strict corners only
        hull = []
        for i in order:
            while len(hull) >= 2 and turn(pts[hull[-2]], pts[hull[-1]], pts[i]) <= 0:
                hull.pop()
            hull.append(i)
        return hull[:-1]

    order = sorted(range(len(pts)), key=lambda i: pts[i])
    hull = chain(order) + chain(order[::-1])
    start = hull.index(min(hull, key=lambda i: (pts[i][1], pts[i][0])))
    assert out == hull[start:] + hull[:start]
    if any(turn(pts[0], pts[1], p) for p in pts[2:]):  # not all collinear: Qhull agrees
        assert sorted(out) == sorted(ScipyHull(np.array(pts)).vertices.tolist())


REFERENCES = {
    "clrs_sort": ref_sort,
    "clrs_minimum": ref_minimum,
    "clrs_binary_search": ref_binary_search,
    "clrs_quickselect": ref_quickselect,
    "clrs_max_subarray": ref_max_subarray,
    "clrs_dfs": ref_dfs,
    "clrs_bfs": ref_bfs,
    "clrs_topological_sort": ref_topological_sort,
    "clrs_articulation_points": ref_articulation_points,
    "clrs_bridges": ref_bridges,
    "clrs_scc": ref_scc,
    "clrs_mst": ref_mst,
    "clrs_shortest_paths": ref_shortest_paths,
    "clrs_dag_shortest_paths": ref_dag_shortest_paths,
    "clrs_floyd_warshall": ref_floyd_warshall,
    "clrs_matrix_chain_order": ref_matrix_chain_order,
    "clrs_optimal_bst": ref_optimal_bst,
    "clrs_lcs_length": ref_lcs_length,
    "clrs_string_matcher": ref_string_matcher,
    "clrs_activity_selector": ref_activity_selector,
    "clrs_task_scheduling": ref_task_scheduling,
    "clrs_segments_intersect": ref_segments_intersect,
    "clrs_convex_hull": ref_convex_hull,
}


def reordered(answer: list[str], align: str) -> list[str]:
    """The answer's items in reverse order (pairs kept together), ``<eos>`` last."""
    body = answer[:-1]
    width = 2 if align == "pair" else 1
    items = [body[i : i + width] for i in range(0, len(body), width)]
    return [t for item in reversed(items) for t in item] + answer[-1:]


def expected_along(ex, answer: list[str], align: str) -> dict[str, list]:
    """Features along an emitted answer, by each alignment rule's definition, from the gold
    example's recorded features: by position (up to the first differing token for "prefix"), or by
    the item (token / pair) each token belongs to."""
    gold = ex.answer_str
    n_prompt = len(ex.token_str) - len(gold)
    values = {k: v[n_prompt:] for k, v in ex.features.items()}
    if align in ("position", "prefix"):
        agree = len(answer)
        if align == "prefix":
            agree = next(
                (i for i, (a, b) in enumerate(zip(answer, gold, strict=False)) if a != b),
                len(answer),
            )
        index = [i if i < min(agree, len(gold)) else None for i in range(len(answer))]
    else:
        width = 2 if align == "pair" else 1
        items = [tuple(gold[i - i % width : i - i % width + width]) for i in range(len(gold) - 1)]
        index = []
        for i in range(len(answer)):
            item = tuple(answer[i - i % width : i - i % width + width])
            index.append(items.index(item) if item in items and answer[i] != EOS else None)
    return {
        k: [v[j] if j is not None and answer[i] != EOS else None for i, j in enumerate(index)]
        for k, v in values.items()
    }


def random_sizes(task) -> list[int]:
    """N_RANDOM sizes cycling from the task's minimum to 16, every tenth at 24, the last at 64."""
    small = list(range(task.min_size, 17))
    sizes = [24 if i % 10 == 9 else small[i % len(small)] for i in range(N_RANDOM)]
    return [*sizes[:-1], 64]


def test_registry_has_every_reference():
    assert sorted(REFERENCES) == CLRS


@pytest.mark.parametrize("name", CLRS)
def test_against_independent_reference(name):
    task = TASKS[name]()
    rng = np.random.default_rng(0)
    vocab = set(task.vocab_tokens(64))
    for size in random_sizes(task):
        ex = task.sample(size, rng)
        inp, out = ex.instance["input"], ex.instance["output"]
        REFERENCES[name](inp, out, ex)
        assert json.loads(json.dumps(ex.instance)) == ex.instance
        # layout: prompt <ans> answer <eos>; features null off the answer and on <eos>
        i = ex.token_str.index(ANS)
        assert ex.token_str[-1] == EOS and ex.answer_mask == [False] * (i + 1) + [True] * (
            len(ex.token_str) - i - 1
        )
        assert set(ex.token_str) <= vocab
        for values in ex.features.values():
            assert all(v is None for v in values[: i + 1]) and values[-1] is None
        assert task.is_correct(ex, ex.answer_str)
        assert not task.is_correct(ex, ex.answer_str[:-1])
        # interval-DP trees: along other trees in tests/test_clrs_scoring.py
        others = [reordered(ex.answer_str, task.align), ex.answer_str[1:]]
        for answer in [ex.answer_str, *(others if task.align != "tree" else [])]:
            assert task.answer_features(ex.instance, answer) == expected_along(
                ex, answer, task.align
            )


@pytest.mark.parametrize("name", CLRS)
def test_sizes_below_minimum_rejected(name):
    task = TASKS[name]()
    with pytest.raises(AniraInputError, match="below its minimum"):
        task.sample(task.min_size - 1, np.random.default_rng(0))


# --- hand-written instances with exact outputs and features -----------------------------------

HAND = [
    (
        "clrs_sort",
        {"keys": [5, 2, 9, 2]},
        "2 2 5 9",
        {
            "insertion_comparisons": [1, 3, 0, 1],
            "bubble_pass": [1, 2, 2, 1],
            "heapsort_comparisons": [6, 6, 5, 3],
            "quicksort_comparisons": [3, 3, 4, 4],
            "quicksort_depth": [1, 0, 1, 2],
        },
    ),
    ("clrs_minimum", {"keys": [5, 2, 9, 2]}, "1", {"updates": [1]}),
    ("clrs_binary_search", {"keys": [2, 5, 5, 9], "target": 5}, "1", {"probes": [3]}),
    ("clrs_binary_search", {"keys": [2, 5, 5, 9], "target": 10}, "4", {"probes": [2]}),
    ("clrs_quickselect", {"keys": [5, 2, 9, 2]}, "2", {"partitions": [1], "comparisons": [3]}),
    (
        "clrs_max_subarray",
        {"keys": [2, -3, 4, -1, 2, -9]},
        "2 4",
        {"overwrites": [2, 3], "fixed_at": [2, 4]},
    ),
    (
        "clrs_dfs",
        {"n": 3, "edges": [[0, 1], [1, 2], [2, 0]]},
        "0 0 1",
        {"discovery_time": [1, 2, 3], "dfs_depth": [0, 1, 2]},
    ),
    (
        "clrs_bfs",
        {"n": 4, "edges": [[0, 1], [0, 2], [1, 2]], "source": 1},
        "1 1 1 3",
        {
            "bfs_layer": [1, 0, 1, None],
            "discovery_order": [1, 0, 2, None],
            "queue_length": [0, 0, 1, None],
        },
    ),
    (
        "clrs_topological_sort",
        {"n": 3, "edges": [[0, 2], [1, 0]]},
        "1 0 2",
        {"finish_time": [6, 4, 3], "dfs_depth": [0, 0, 1]},
    ),
    (
        "clrs_articulation_points",
        {"n": 4, "edges": [[0, 1], [1, 2], [1, 3]]},
        "1",
        {"marked_at": [4], "discovery_time": [2], "dfs_depth": [1]},
    ),
    (
        "clrs_bridges",
        {"n": 4, "edges": [[0, 1], [0, 2], [1, 2], [2, 3]]},
        "2 3",
        {"marked_at": [5, 5], "subtree_size": [1, 1]},
    ),
    (
        "clrs_scc",
        {"n": 4, "edges": [[0, 1], [1, 0], [1, 2], [2, 3], [3, 2]]},
        "0 0 2 2",
        {
            "first_finish": [8, 7, 6, 5],
            "component_order": [0, 0, 1, 1],
            "component_size": [2, 2, 2, 2],
        },
    ),
    (
        "clrs_mst",
        {"n": 3, "edges": [[0, 1, 4], [0, 2, 1], [1, 2, 2]]},
        "0 2 1 2",
        {"kruskal_examined": [1, 1, 2, 2], "prim_step": [1, 1, 2, 2]},
    ),
    (
        "clrs_shortest_paths",
        {"n": 3, "edges": [[0, 1, 5], [0, 2, 1], [2, 1, 1]], "source": 0},
        "0 2 0",
        {
            "dijkstra_relaxations": [0, 2, 1],
            "extract_order": [0, 2, 1],
            "bellman_ford_round": [0, 1, 1],
        },
    ),
    (
        "clrs_dag_shortest_paths",
        {"n": 3, "edges": [[1, 0, 2], [1, 2, 3], [0, 2, 9]], "source": 1},
        "1 1 1",
        {"relaxations": [1, 0, 1], "topo_position": [1, 0, 2]},
    ),
    (
        "clrs_floyd_warshall",
        {"n": 3, "edges": [[0, 1, 5], [0, 2, 1], [2, 1, 1]]},
        "0 2 0 | 0 1 2 | 0 2 2",
        {
            "updates": [0, 1, 0, None, None, 0, None, None, None, 0, 0],
            "last_k": [0, 3, 0, None, None, 0, None, None, None, 0, 0],
        },
    ),
    (
        "clrs_matrix_chain_order",
        {"dims": [2, 5, 1, 3]},
        "1 0",
        {"depth": [0, 1], "span": [3, 2], "improvements": [2, 1]},
    ),
    (
        "clrs_optimal_bst",
        {"p": [5, 1], "q": [1, 1, 1]},
        "1 2",
        {"depth": [0, 1], "span": [2, 1], "improvements": [1, 1]},
    ),
    (
        "clrs_lcs_length",
        {"x": list("abcb"), "y": list("bdcb")},
        "b c b",
        {"fill_step": [5, 11, 16], "traceback_step": [3, 1, 0], "skips": [1, 0, 0]},
    ),
    (
        "clrs_string_matcher",
        {"text": list("ababa"), "pattern": list("aba")},
        "0 2",
        {"naive_comparisons": [3, 7], "kmp_comparisons": [7, 11]},
    ),
    (
        "clrs_activity_selector",
        {"activities": [[1, 4], [3, 5], [0, 6], [5, 7]]},
        "0 3",
        {"scan_step": [1, 4], "rejected_before": [0, 2]},
    ),
    (
        "clrs_task_scheduling",
        {"tasks": [[1, 5], [1, 7], [2, 3]]},
        "1 2",
        {"scan_step": [1, 3], "rejected_before": [0, 1], "free_slots": [1, 1]},
    ),
    (
        "clrs_segments_intersect",
        {"pairs": [[0, 0, 2, 2, 0, 2, 2, 0], [0, 0, 1, 0, 2, 0, 3, 0], [0, 0, 1, 0, 1, 0, 1, 5]]},
        "1 0 1",
        {"tests": [4, 8, 5], "on_segment_checks": [0, 4, 1]},
    ),
    (
        "clrs_convex_hull",
        {"points": [[0, 0], [3, 0], [2, 1], [3, 3], [0, 3]]},
        "0 1 3 4",
        {"graham_pops": [0, 0, 1, 1], "jarvis_tests": [0, 3, 6, 9]},
    ),
    (
        "clrs_convex_hull",
        {"points": [[0, 0], [2, 2], [1, 1], [3, 3]]},
        "0 3",
        {"graham_pops": [0, 0], "jarvis_tests": [0, 2]},
    ),
]


@pytest.mark.parametrize(("name", "inp", "answer", "features"), HAND, ids=[h[0] for h in HAND])
def test_hand_written(name, inp, answer, features):
    task = TASKS[name]()
    ex = task.make_example(inp, size=1)
    assert ex.answer_str == [*answer.split(), EOS]
    assert {k: feature(ex, k) for k in ex.features} == features


def test_docstrings_show_a_hand_checked_example():
    """Each task's worked example (its docstring) is one of the hand-written cases, verbatim."""
    shown = set()
    for name, inp, _, _ in HAND:
        task = TASKS[name]()
        text = " ".join(task.make_example(inp, size=1).token_str)
        if text in " ".join((type(task).__doc__ or "").split()):
            shown.add(name)
    assert shown == set(CLRS)


def test_alternative_valid_answers():
    """Tasks with several valid answers accept any of them and reject invalid ones."""
    topo = TASKS["clrs_topological_sort"]()
    ex = topo.make_example({"n": 3, "edges": [[0, 2]]}, 3)  # gold: 1 0 2
    assert topo.is_correct(ex, ["0", "1", "2", EOS]) and topo.is_correct(ex, ["0", "2", "1", EOS])
    assert not topo.is_correct(ex, ["2", "0", "1", EOS])
    assert topo.answer_features(ex.instance, ["0", "1", "2", EOS])["finish_time"] == [4, 6, 3, None]
    sp = TASKS["clrs_shortest_paths"]()
    ex = sp.make_example({"n": 3, "edges": [[0, 1, 1], [0, 2, 2], [1, 2, 1]], "source": 0}, 3)
    assert ex.answer_str == ["0", "0", "0", EOS]
    assert sp.is_correct(ex, ["0", "0", "1", EOS])  # 0 → 1 → 2 also costs 2
    assert not sp.is_correct(ex, ["0", "2", "0", EOS])
    mst = TASKS["clrs_mst"]()
    ex = mst.make_example({"n": 3, "edges": [[0, 1, 1], [0, 2, 1], [1, 2, 1]]}, 3)
    assert mst.is_correct(ex, ["2", "1", "0", "2", EOS])
    assert not mst.is_correct(ex, ["0", "1", "1", "0", EOS])


def test_twenty_three_tasks():
    assert len(CLRS) == 23


CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "task"


@pytest.mark.parametrize("name", CLRS)
def test_config(name):
    """Each task has a config whose sizes are valid, disjoint per split, and sample quickly."""
    cfg = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    assert cfg["name"] == name
    task = get_task(name, **cfg["params"])
    for scale in ("mini", "paper"):
        s = cfg["scales"][scale]
        train, interp, extrap = set(s["train"]), set(s["interp"]), set(s["extrap"])
        assert not (train & interp or train & extrap or interp & extrap)
        assert min(train) < min(interp) <= max(interp) < max(train) < min(extrap)
        for size in train | interp | extrap:
            task.check_size(size)
        assert s["max_depth"] == 6
    assert cfg["scales"]["paper"]["extrap"] == [64] and max(cfg["scales"]["paper"]["train"]) == 16
    mini = cfg["scales"]["mini"]
    rng = np.random.default_rng(0)
    longest = max(len(task.sample(max(mini["extrap"]), rng).token_str) for _ in range(20))
    assert longest <= 100, f"{name}: mini sequences up to {longest} tokens"


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("clrs_bfs", {"mean_degree": 0}),
        ("clrs_mst", {"max_weight": 1}),
        ("clrs_sort", {"max_value": 1.5}),
        ("clrs_lcs_length", {"alphabet_size": 30}),
        ("clrs_string_matcher", {"alphabet_size": 1}),
        ("clrs_convex_hull", {"coord_range": 0}),
    ],
)
def test_bad_parameters_rejected(name, params):
    with pytest.raises(AniraInputError, match="parameter"):
        get_task(name, **params)


def test_convex_hull_rejects_more_points_than_the_grid_holds():
    with pytest.raises(AniraInputError, match="exceeds"):
        get_task("clrs_convex_hull", coord_range=3).sample(10, np.random.default_rng(0))
