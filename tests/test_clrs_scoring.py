"""CLRS-Text scorers against independent validity checks (networkx, brute force, scipy).

Every task's ``is_correct`` is compared, on small random instances, with a validity check written
here from the problem's definition, on the gold answer, on wrong answers of every kind (truncated,
duplicated, extra, changed value, wrong order) and on other valid answers. Hand-made instances
with several valid answers check that each one is accepted.
"""

from __future__ import annotations

import functools
import itertools

import networkx as nx
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import anira.tasks.clrs  # noqa: F401  (registers the tasks)
from anira.tasks import TASKS
from anira.tasks.base import EOS
from tests.test_clrs import CLRS, exact_intersect, feature, graph, is_subsequence

# --- validity from the problem's definition: (input, answer tokens without <eos>) → bool ------


def ints(tokens: list[str]) -> list[int] | None:
    try:
        return [int(t) for t in tokens]
    except ValueError:
        return None


def single(tokens) -> int | None:
    values = ints(tokens)
    return values[0] if values is not None and len(values) == 1 else None


def pairs(values: list[int]) -> list[tuple[int, int]]:
    return [(values[i], values[i + 1]) for i in range(0, len(values), 2)]


def valid_sort(inp, tokens):
    return ints(tokens) == sorted(inp["keys"])


def valid_minimum(inp, tokens):
    i = single(tokens)
    return i is not None and 0 <= i < len(inp["keys"]) and inp["keys"][i] == min(inp["keys"])


def valid_binary_search(inp, tokens):
    return single(tokens) == int(np.searchsorted(inp["keys"], inp["target"], side="left"))


def valid_quickselect(inp, tokens):
    return single(tokens) == int(np.sort(inp["keys"])[(len(inp["keys"]) - 1) // 2])


def valid_max_subarray(inp, tokens):
    a, span = inp["keys"], ints(tokens)
    best = max(sum(a[s : e + 1]) for s in range(len(a)) for e in range(s, len(a)))
    if span is None or len(span) != 2 or not 0 <= span[0] <= span[1] < len(a):
        return False
    return sum(a[span[0] : span[1] + 1]) == best


def valid_dfs(inp, tokens):
    pi = list(range(inp["n"]))
    for u, v in nx.dfs_edges(graph(inp, directed=True)):
        pi[v] = u
    return ints(tokens) == pi


def valid_bfs(inp, tokens):
    g, s, pi = graph(inp, directed=False), inp["source"], ints(tokens)
    dist = nx.single_source_shortest_path_length(g, s)
    if pi is None or len(pi) != inp["n"]:
        return False
    return all(
        pi[v] == v
        if v == s or v not in dist
        else g.has_edge(pi[v], v) and dist.get(pi[v]) == dist[v] - 1
        for v in range(inp["n"])
    )


def valid_topological_sort(inp, tokens):
    order = ints(tokens)
    if order is None or sorted(order) != list(range(inp["n"])):
        return False
    return all(order.index(u) < order.index(v) for u, v in inp["edges"])


def valid_articulation_points(inp, tokens):
    return ints(tokens) == sorted(nx.articulation_points(graph(inp, directed=False)))


def valid_bridges(inp, tokens):
    values = ints(tokens)
    expected = sorted(tuple(sorted(e)) for e in nx.bridges(graph(inp, directed=False)))
    return values is not None and len(values) % 2 == 0 and pairs(values) == expected


def valid_scc(inp, tokens):
    label = ints(tokens)
    if label is None or len(label) != inp["n"]:
        return False
    for comp in nx.strongly_connected_components(graph(inp, directed=True)):
        names = {label[v] for v in comp}
        if len(names) != 1 or names.pop() not in comp:
            return False
    return len(set(label)) == nx.number_strongly_connected_components(graph(inp, directed=True))


def valid_mst(inp, tokens):
    g, values = graph(inp, directed=False), ints(tokens)
    if values is None or len(values) % 2:
        return False
    chosen = pairs(values)
    if any(not g.has_edge(u, v) for u, v in chosen) or len(set(map(frozenset, chosen))) < len(
        chosen
    ):
        return False
    tree = nx.Graph(chosen)
    tree.add_nodes_from(g)
    best = nx.minimum_spanning_tree(g).size(weight="weight")
    return nx.is_tree(tree) and sum(g[u][v]["weight"] for u, v in chosen) == best


def valid_tree_row(g, source, pi, unreached_to_source=False):
    dist = nx.single_source_dijkstra_path_length(g, source)
    if pi is None or len(pi) != g.number_of_nodes() or pi[source] != source:
        return False
    for v in range(len(pi)):
        if v == source:
            continue
        if v not in dist:
            if pi[v] != v and not (unreached_to_source and pi[v] == source):
                return False
        elif not g.has_edge(pi[v], v) or dist.get(pi[v], -1) + g[pi[v]][v]["weight"] != dist[v]:
            return False
    return True


def valid_shortest_paths(inp, tokens):
    return valid_tree_row(graph(inp, directed=True), inp["source"], ints(tokens))


def valid_floyd_warshall(inp, tokens):
    g = graph(inp, directed=True)
    rows = [list(group) for sep, group in itertools.groupby(tokens, key=lambda t: t == "|")]
    rows = [r for r in rows if r != ["|"]]
    if tokens.count("|") != inp["n"] - 1 or len(rows) != inp["n"]:
        return False
    return all(valid_tree_row(g, i, ints(row), True) for i, row in enumerate(rows))


def tree_from_preorder(values, i, j, split_range, parts, min_span):
    """Consume a preorder for the range ``i … j``; the nodes read, or None when invalid."""
    if j - i + 1 < min_span:
        return []
    if not values or values[0] not in split_range(i, j):
        return None
    k = values.pop(0)
    nodes = [(i, j, k)]
    for a, b in parts(i, j, k):
        sub = tree_from_preorder(values, a, b, split_range, parts, min_span)
        if sub is None:
            return None
        nodes += sub
    return nodes


def chain_cost(p, nodes):
    return sum(p[i] * p[k + 1] * p[j + 1] for i, j, k in nodes)


@functools.cache
def best_chain(p: tuple, i: int, j: int) -> int:
    if i == j:
        return 0
    return min(
        best_chain(p, i, k) + best_chain(p, k + 1, j) + p[i] * p[k + 1] * p[j + 1]
        for k in range(i, j)
    )


def valid_matrix_chain_order(inp, tokens):
    p, values = inp["dims"], ints(tokens)
    if values is None:
        return False
    n = len(p) - 1
    nodes = tree_from_preorder(
        values, 0, n - 1, lambda i, j: range(i, j), lambda i, j, k: ((i, k), (k + 1, j)), 2
    )
    return (
        nodes is not None and not values and chain_cost(p, nodes) == best_chain(tuple(p), 0, n - 1)
    )


def bst_cost(p, q, nodes, i, j, depth=0):
    """Sum over keys and gaps of weight × (depth + 1), walking the tree built from ``nodes``."""
    if j < i:
        return q[i - 1] * (depth + 1)
    r = next(k for a, b, k in nodes if (a, b) == (i, j))
    return (
        p[r - 1] * (depth + 1)
        + bst_cost(p, q, nodes, i, r - 1, depth + 1)
        + bst_cost(p, q, nodes, r + 1, j, depth + 1)
    )


def valid_optimal_bst(inp, tokens):
    p, q, values = inp["p"], inp["q"], ints(tokens)
    if values is None:
        return False
    n = len(p)
    nodes = tree_from_preorder(
        values, 1, n, lambda i, j: range(i, j + 1), lambda i, j, r: ((i, r - 1), (r + 1, j)), 1
    )
    if nodes is None or values:
        return False
    keys = list(range(1, n + 1))
    best = min(bst_cost(p, q, tree, 1, n) for tree in all_bsts(tuple(keys)))
    return bst_cost(p, q, nodes, 1, n) == best


@functools.cache
def all_bsts(keys: tuple) -> list[list[tuple[int, int, int]]]:
    """Every binary search tree on the keys, as ``(i, j, root)`` nodes (brute force)."""
    if not keys:
        return [[]]
    trees = []
    for r in keys:
        left, right = tuple(k for k in keys if k < r), tuple(k for k in keys if k > r)
        for a in all_bsts(left):
            for b in all_bsts(right):
                trees.append([(keys[0], keys[-1], r), *a, *b])
    return trees


def valid_lcs_length(inp, tokens):
    x, y = inp["x"], inp["y"]
    longest = max(
        (
            len(c)
            for r in range(len(x) + 1)
            for c in itertools.combinations(x, r)
            if is_subsequence(c, y)
        ),
        default=0,
    )
    return len(tokens) == longest and is_subsequence(tokens, x) and is_subsequence(tokens, y)


def valid_string_matcher(inp, tokens):
    t, pat = "".join(inp["text"]), "".join(inp["pattern"])
    return ints(tokens) == [s for s in range(len(t) - len(pat) + 1) if t.startswith(pat, s)]


def distinct_in_range(values, count):
    return (
        values is not None
        and len(set(values)) == len(values)
        and all(0 <= i < count for i in values)
    )


def valid_activity_selector(inp, tokens):
    acts, chosen = inp["activities"], ints(tokens)
    if not distinct_in_range(chosen, len(acts)):
        return False
    if chosen != sorted(chosen, key=lambda i: (acts[i][1], i)):
        return False
    if any(acts[a][1] > acts[b][0] for a, b in itertools.pairwise(chosen)):
        return False
    most = max(
        len(c)
        for r in range(len(acts) + 1)
        for c in itertools.combinations(sorted(acts, key=lambda a: a[1]), r)
        if all(a[1] <= b[0] for a, b in itertools.pairwise(c))
    )
    return len(chosen) == most


def valid_task_scheduling(inp, tokens):
    tasks, chosen = inp["tasks"], ints(tokens)
    n = len(tasks)
    if not distinct_in_range(chosen, n) or chosen != sorted(
        chosen, key=lambda i: (-tasks[i][1], i)
    ):
        return False
    gain = np.array([[w if t <= d else 0 for t in range(1, n + 1)] for d, w in tasks])
    rows, cols = linear_sum_assignment(gain, maximize=True)
    on_time = sorted(tasks[i][0] for i in chosen)
    feasible = all(d >= t for t, d in enumerate(on_time, start=1))
    return feasible and sum(tasks[i][1] for i in chosen) == gain[rows, cols].sum()


def valid_segments_intersect(inp, tokens):
    bits = [int(exact_intersect(*(row[i : i + 2] for i in range(0, 8, 2)))) for row in inp["pairs"]]
    return ints(tokens) == bits


def valid_convex_hull(inp, tokens):
    """Corners of the hull (no point inside an edge), counter-clockwise from the lowest point."""
    pts, order = inp["points"], ints(tokens)
    if order is None or len(order) < 2 or not distinct_in_range(order, len(pts)):
        return False
    corners = [pts[i] for i in order]

    def turn(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    m = len(corners)
    if m == 2:  # all points on one segment: its two ends
        strictly_left = any(turn(corners[0], corners[1], p) != 0 for p in pts)
        convex = not strictly_left
    else:
        convex = all(
            turn(corners[i], corners[(i + 1) % m], corners[(i + 2) % m]) > 0 for i in range(m)
        ) and all(turn(corners[i], corners[(i + 1) % m], p) >= 0 for i in range(m) for p in pts)
    lowest = min(range(len(pts)), key=lambda i: (pts[i][1], pts[i][0]))
    return convex and order[0] == lowest


VALIDATORS = {
    "clrs_sort": valid_sort,
    "clrs_minimum": valid_minimum,
    "clrs_binary_search": valid_binary_search,
    "clrs_quickselect": valid_quickselect,
    "clrs_max_subarray": valid_max_subarray,
    "clrs_dfs": valid_dfs,
    "clrs_bfs": valid_bfs,
    "clrs_topological_sort": valid_topological_sort,
    "clrs_articulation_points": valid_articulation_points,
    "clrs_bridges": valid_bridges,
    "clrs_scc": valid_scc,
    "clrs_mst": valid_mst,
    "clrs_shortest_paths": valid_shortest_paths,
    "clrs_dag_shortest_paths": valid_shortest_paths,
    "clrs_floyd_warshall": valid_floyd_warshall,
    "clrs_matrix_chain_order": valid_matrix_chain_order,
    "clrs_optimal_bst": valid_optimal_bst,
    "clrs_lcs_length": valid_lcs_length,
    "clrs_string_matcher": valid_string_matcher,
    "clrs_activity_selector": valid_activity_selector,
    "clrs_task_scheduling": valid_task_scheduling,
    "clrs_segments_intersect": valid_segments_intersect,
    "clrs_convex_hull": valid_convex_hull,
}

# --- wrong answers of every kind ----------------------------------------------------------------

KINDS = ("truncated", "duplicated", "extra", "changed", "wrong_order")


def corrupt(answer: list[str], kind: str, alphabet: list[str], rng) -> list[str] | None:
    """One corrupted copy of ``answer`` (tokens without ``<eos>``), None when the kind does not
    apply (e.g. reordering a one-token answer)."""
    a = list(answer)
    if kind == "truncated":
        return a[:-1] if a else None
    if kind == "duplicated":
        if not a:
            return None
        i = int(rng.integers(len(a)))
        return a[: i + 1] + a[i:]
    if kind == "extra":
        return [*a, alphabet[int(rng.integers(len(alphabet)))]]
    if kind == "changed":
        if not a:
            return None
        i = int(rng.integers(len(a)))
        options = [t for t in alphabet if t != a[i]]
        a[i] = options[int(rng.integers(len(options)))]
        return a
    swappable = [(i, j) for i in range(len(a)) for j in range(i + 1, len(a)) if a[i] != a[j]]
    if not swappable:
        return None
    i, j = swappable[int(rng.integers(len(swappable)))]
    a[i], a[j] = a[j], a[i]
    return a


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
