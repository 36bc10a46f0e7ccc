"""Independent reference implementations shared by test modules: each computes from the problem's
definition (brute force, networkx, recursion, exact arithmetic) what the package computes, so a
test compares the two; with them, the wrong CLRS answers the validity checks are run on.

What test modules share to build inputs (configs, models, records) is in factories.py."""

from __future__ import annotations

import functools
import itertools
import math
from collections import defaultdict
from fractions import Fraction

import networkx as nx
import numpy as np
from scipy.optimize import linear_sum_assignment

import anira.tasks.clrs  # noqa: F401  (registers the tasks)
from anira.tasks import TASKS
from anira.tasks.brevo import BrevoTask, label_number
from anira.tasks.grammar import END, PCFG

# --- LANO: the finite language enumerated --------------------------------------------------------


def brute_force(grammar: PCFG) -> dict[tuple[str, ...], list]:
    """string → [probability, number of derivations, best derivation probability], by enumerating
    every derivation of the (finite) language."""

    def derivations(sym: str) -> list[tuple[tuple[str, ...], float]]:
        if sym not in grammar.rules_of:
            return [((sym,), 1.0)]
        out = []
        for rule in grammar.rules_of[sym]:
            for parts in itertools.product(*(derivations(s) for s in rule.rhs)):
                string = sum((p[0] for p in parts), ())
                out.append((string, rule.prob * math.prod(p[1] for p in parts)))
        return out

    lang: dict[tuple[str, ...], list] = defaultdict(lambda: [0.0, 0, 0.0])
    for string, prob in derivations(grammar.start):
        entry = lang[string]
        entry[0] += prob
        entry[1] += 1
        entry[2] = max(entry[2], prob)
    return dict(lang)


def prefix_mass(lang) -> dict[tuple[str, ...], dict[str, float]]:
    """prefix → next symbol (or END) → probability mass of the strings continuing that way."""
    mass: dict[tuple[str, ...], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for string, (prob, _, _) in lang.items():
        for k in range(len(string) + 1):
            mass[string[:k]][END if k == len(string) else string[k]] += prob
    return mass


def brute_next(mass, prefix: tuple[str, ...]) -> dict[str, float]:
    """P(next symbol | prefix) from the enumerated language's prefix masses."""
    total = sum(mass[prefix].values())
    return {a: p / total for a, p in mass[prefix].items()}


# --- BREVO: features with networkx ---------------------------------------------------------------


def to_nx(instance) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_edges_from(tuple(e) for e in instance["edges"])
    graph.add_nodes_from(instance.get("isolated", []))  # nodes in no edge (physics_lm rule)
    return graph


def dfs_run(instance, key):
    """Post-order and first-visit depths of the DFS from the query over parent links that visits
    parents in increasing ``key`` (networkx)."""
    g = to_nx(instance).reverse(copy=True)
    q = instance["query"]

    def ordered(nodes):
        return sorted(nodes, key=key)

    tree = nx.dfs_tree(g, source=q, sort_neighbors=ordered)
    post = list(nx.dfs_postorder_nodes(g, q, sort_neighbors=ordered))
    return post, nx.shortest_path_length(tree, q)


def reference_features(instance, order, hub_degree, dfs_depth=None):
    """Every feature of the nodes of ``order``, computed with networkx; ``dfs_depth`` defaults to
    the gold DFS's (parents by label number), the one along the gold answer."""
    g = to_nx(instance)
    q = instance["query"]
    dep = nx.ancestors(g, q) | {q}
    dfs_depth = dfs_depth or dfs_run(instance, label_number)[1]
    out = {name: [] for name in BrevoTask.features}
    for i, v in enumerate(order):
        prefix, prefix_after = set(order[:i]), set(order[: i + 1])

        def ready(u, emitted):
            return u not in emitted and set(g.predecessors(u)) <= emitted

        before = {u for u in dep if ready(u, prefix)}
        after = {u for u in dep if ready(u, prefix_after)}
        height = nx.dag_longest_path_length(g.subgraph(nx.ancestors(g, v) | {v}))
        out["frontier"].append(len(before))
        out["newly_enabled"].append(len(after - before))
        out["dfs_depth"].append(dfs_depth[v])
        out["height"].append(height)
        out["dist_from_query"].append(nx.shortest_path_length(g, v, q))
        out["graph_size"].append(g.number_of_nodes())
        out["dep_set_size"].append(len(dep))
        out["in_degree"].append(g.in_degree(v))
        out["out_degree"].append(g.out_degree(v))
        out["is_hub"].append(int(g.degree(v) >= hub_degree))
        out["max_degree"].append(max(d for _, d in g.degree()))
    return out


# --- MANO: recursive evaluation ------------------------------------------------------------------


def recursive_eval(tokens: list[str], modulus: int) -> tuple[int, int, int]:
    """(value, tree depth, operator count) by recursive descent; exact integers, one final mod."""

    def parse(i: int) -> tuple[int, int, int, int]:
        token = tokens[i]
        if token in ("+", "-", "*"):
            left, dl, ol, i = parse(i + 1)
            right, dr, orr, i = parse(i)
            value = {"+": left + right, "-": left - right, "*": left * right}[token]
            return value, 1 + max(dl, dr), 1 + ol + orr, i
        return int(token), 0, 0, i + 1

    value, depth, ops, end = parse(0)
    assert end == len(tokens), "trailing tokens"
    return value % modulus, depth, ops


# --- CLRS: graphs, subsequences, exact segment geometry, features --------------------------------

CLRS = sorted(name for name in TASKS if name.startswith("clrs_"))


def graph(inp: dict, directed: bool) -> nx.Graph:
    g = nx.DiGraph() if directed else nx.Graph()
    g.add_nodes_from(range(inp["n"]))
    for u, v, *w in sorted(inp["edges"]):
        g.add_edge(u, v, weight=w[0] if w else 1)
    return g


def is_subsequence(sub, seq) -> bool:
    it = iter(seq)
    return all(c in it for c in sub)


def point_segment_dist2(p, a, b) -> Fraction:
    d = (b[0] - a[0], b[1] - a[1])
    length2 = d[0] ** 2 + d[1] ** 2
    t = (
        Fraction(0)
        if length2 == 0
        else Fraction((p[0] - a[0]) * d[0] + (p[1] - a[1]) * d[1], length2)
    )
    t = min(max(t, Fraction(0)), Fraction(1))
    return (a[0] + t * d[0] - p[0]) ** 2 + (a[1] + t * d[1] - p[1]) ** 2


def exact_intersect(p1, p2, p3, p4) -> bool:
    """Parametric crossing, else zero distance from an endpoint to the other segment."""
    r, s = (p2[0] - p1[0], p2[1] - p1[1]), (p4[0] - p3[0], p4[1] - p3[1])
    denom = r[0] * s[1] - r[1] * s[0]
    if denom != 0:
        qp = (p3[0] - p1[0], p3[1] - p1[1])
        t = Fraction(qp[0] * s[1] - qp[1] * s[0], denom)
        u = Fraction(qp[0] * r[1] - qp[1] * r[0], denom)
        if 0 <= t <= 1 and 0 <= u <= 1:
            return True
    return (
        min(
            point_segment_dist2(p1, p3, p4),
            point_segment_dist2(p2, p3, p4),
            point_segment_dist2(p3, p1, p2),
            point_segment_dist2(p4, p1, p2),
        )
        == 0
    )


def feature(ex, name: str) -> list:
    """A feature's values on the answer tokens, without the final ``<eos>``."""
    return [v for v, a in zip(ex.features[name], ex.answer_mask, strict=True) if a][:-1]


# --- CLRS validity from the problem's definition: (input, answer tokens without <eos>) → bool ----


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

# --- CLRS: wrong answers of every kind, for the validity checks ----------------------------------

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
