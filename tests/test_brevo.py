"""BREVO: answers and every feature against networkx, hand-written graphs, scoring."""

from __future__ import annotations

import itertools
import math
import random

import networkx as nx
import numpy as np
import pytest

from anira.io import AniraInputError
from anira.tasks import get_task
from anira.tasks.brevo import BrevoGraph, BrevoTask, label_number
from tests.references import dfs_run, reference_features, to_nx

DOCSTRING_EDGES = [
    ("n3", "n1"),
    ("n0", "n1"),
    ("n1", "n4"),
    ("n0", "n4"),
    ("n2", "n3"),
    ("n4", "n5"),
]


def by_label(nodes):
    return sorted(nodes, key=label_number)


def node_features(example):
    """The features of the node tokens of the answer (drop prompt and ``<eos>``)."""
    n_nodes = len(example.instance["answer"])
    start = example.answer_mask.index(True)
    return {k: v[start : start + n_nodes] for k, v in example.features.items()}


def random_topological_order(instance, rng):
    g = to_nx(instance)
    q = instance["query"]
    sub = g.subgraph(nx.ancestors(g, q) | {q})
    indeg = {v: sub.in_degree(v) for v in sub}
    ready = sorted((v for v, d in indeg.items() if d == 0), key=label_number)
    order = []
    while ready:
        v = ready.pop(int(rng.integers(len(ready))))
        order.append(v)
        for c in sub.successors(v):
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
    return order


def test_docstring_example_exact():
    task = BrevoTask(hub_degree=3)
    example = task.example_from_graph(BrevoGraph(DOCSTRING_EDGES, "n4"), size=6)
    assert " ".join(example.token_str) == (
        "<brevo> n3 n1 n0 n1 n1 n4 n0 n4 n2 n3 n4 n5 <query> n4 <ans> n0 n2 n3 n1 n4 <eos>"
    )
    assert example.answer_str == ["n0", "n2", "n3", "n1", "n4", "<eos>"]
    assert node_features(example) == {
        "frontier": [2, 1, 1, 1, 1],
        "newly_enabled": [0, 1, 1, 1, 0],
        "dfs_depth": [1, 3, 2, 1, 0],
        "height": [0, 0, 1, 2, 3],
        "dist_from_query": [1, 3, 2, 1, 0],
        "graph_size": [6] * 5,
        "dep_set_size": [5] * 5,
        "in_degree": [0, 0, 1, 2, 2],
        "out_degree": [2, 1, 1, 1, 1],
        "is_hub": [0, 0, 0, 1, 1],
        "max_degree": [3] * 5,
    }
    n_prompt = example.answer_mask.index(True)
    for values in example.features.values():
        assert values[:n_prompt] == [None] * n_prompt and values[-1] is None


def test_diamond_with_two_roots():
    # n7 -> n2 -> n9 ; n7 -> n4 -> n9 ; n1 -> n4 ; query n9. Parents in label order: n2 before n4.
    edges = [("n7", "n2"), ("n2", "n9"), ("n7", "n4"), ("n4", "n9"), ("n1", "n4")]
    graph = BrevoGraph(edges, "n9")
    assert graph.gold_order == ["n7", "n2", "n1", "n4", "n9"]
    feats = graph.features_along(graph.gold_order, hub_degree=3)
    assert feats["dfs_depth"] == [2, 1, 2, 1, 0]  # n7 first reached through n2
    assert feats["frontier"] == [2, 2, 1, 1, 1]  # {n7, n1}, {n2, n1}, {n1}, {n4}, {n9}
    assert feats["newly_enabled"] == [1, 0, 1, 1, 0]  # n7 -> n2; n1 completes n4; n4 -> n9
    assert feats["height"] == [0, 1, 0, 1, 2]
    assert feats["dist_from_query"] == [2, 1, 2, 1, 0]
    assert feats["is_hub"] == [0, 0, 0, 1, 0]  # n4 has degree 3
    # Along another valid order the order-dependent features change.
    other = graph.features_along(["n1", "n7", "n4", "n2", "n9"], hub_degree=3)
    assert other["frontier"] == [2, 1, 2, 1, 1]
    assert other["newly_enabled"] == [0, 2, 0, 1, 0]
    # n4 is emitted before n2, so the DFS of this order enters n4 first and reaches n7 from it.
    assert other["dfs_depth"] == [2, 2, 1, 1, 0]


@pytest.mark.parametrize("seed", range(4))
def test_random_instances_match_networkx(seed):
    rng = np.random.default_rng(seed)
    task = get_task("brevo", num_labels=14, hub_degree=4)
    sizes = list(range(3, 15))
    for i in range(300):  # 4 x 300 = 1,200 instances over sizes 3..14
        size = sizes[i % len(sizes)]
        example = task.sample(size, rng)
        inst = example.instance
        g = to_nx(inst)
        q = inst["query"]
        labels = [int(v[1:]) for v in g.nodes]
        assert g.number_of_nodes() == size and nx.is_directed_acyclic_graph(g)
        assert all(0 <= label < 14 for label in labels)
        assert max(d for _, d in g.in_degree()) <= 4
        assert len(set(map(tuple, inst["edges"]))) == len(inst["edges"])
        # Answer: exactly the dependency set, topologically ordered, query last.
        order = inst["answer"]
        assert set(order) == nx.ancestors(g, q) | {q} and len(order) == len(set(order))
        assert len(order) >= 2 and order[-1] == q
        pos = {v: k for k, v in enumerate(order)}
        assert all(pos[p] < pos[c] for p, c in g.edges if c in pos)
        assert order == list(nx.dfs_postorder_nodes(g.reverse(), q, sort_neighbors=by_label))
        # Tokens: the layout, and every feature.
        n_edges = len(inst["edges"])
        assert example.token_str[: 2 * n_edges + 4][-3:] == ["<query>", q, "<ans>"]
        assert example.answer_str == order + ["<eos>"]
        assert node_features(example) == reference_features(inst, order, 4)
        assert task.is_correct(example, example.answer_str)


def source_process(n: int, rng: random.Random, max_in: int = 4, max_out: int = 4):
    """The Physics-of-LM BREVO graph process, written from its description with Python's own
    RNG: (edge count, dependency-set size, isolated node count) of one graph of ``n`` nodes."""
    while True:
        parents = {i: [] for i in range(n)}
        out_degree = [0] * n
        for i in range(rng.randint(1, (n - 1) // 4 + 1), n):
            eligible = [j for j in range(i) if out_degree[j] < max_out]
            if not eligible:
                continue
            for j in rng.sample(eligible, rng.randint(1, min(len(eligible), max_in))):
                parents[i].append(j)
                out_degree[j] += 1
        if parents[n - 1]:
            break
    dep, stack = set(), [n - 1]
    while stack:
        v = stack.pop()
        if v not in dep:
            dep.add(v)
            stack.extend(parents[v])
    touched = {i for i in range(n) if parents[i]} | {j for ps in parents.values() for j in ps}
    return sum(map(len, parents.values())), len(dep), n - len(touched)


@pytest.mark.parametrize("size", [3, 12, 30])
def test_physics_lm_rule_matches_the_source_process(size):
    """Caps (≤ 4 parents, ≤ 4 children), the query last (no children, ≥ 1 parent), N counting
    isolated nodes; features against networkx; and the distribution of edge count, dependency
    set and isolated nodes against an independent simulation of the source's process."""
    task = get_task("brevo", num_labels=30, graph_rule="physics_lm")
    rng, ref_rng = np.random.default_rng(size), random.Random(size)
    ours, ref = [], [source_process(size, ref_rng) for _ in range(1500)]
    for i in range(1500):
        example = task.sample(size, rng)
        inst = example.instance
        g = to_nx(inst)
        assert g.number_of_nodes() == size and nx.is_directed_acyclic_graph(g)
        assert max(d for _, d in g.in_degree()) <= 4 and max(d for _, d in g.out_degree()) <= 4
        q = inst["query"]
        assert g.out_degree(q) == 0 and g.in_degree(q) >= 1
        assert set(inst.get("isolated", [])) == {v for v in g.nodes if g.degree(v) == 0}
        ours.append((g.number_of_edges(), len(inst["answer"]), len(inst.get("isolated", []))))
        if i < 40:
            order = inst["answer"]
            assert order == list(nx.dfs_postorder_nodes(g.reverse(), q, sort_neighbors=by_label))
            assert node_features(example) == reference_features(inst, order, 4)
            assert task.is_correct(example, example.answer_str)
    ours_mean, ref_mean = np.mean(ours, axis=0), np.mean(ref, axis=0)
    spread = np.std(ref, axis=0) / np.sqrt(len(ref))
    assert np.all(np.abs(ours_mean - ref_mean) <= 5 * spread + 1e-9), (ours_mean, ref_mean)


def test_graph_rule_parameters_are_checked():
    with pytest.raises(AniraInputError, match="graph_rule"):
        get_task("brevo", graph_rule="random")
    with pytest.raises(AniraInputError, match="max_children"):
        get_task("brevo", graph_rule="physics_lm", max_children=0)


def test_features_along_emitted_orders_and_scoring():
    rng = np.random.default_rng(7)
    task = get_task("brevo", num_labels=10)
    for i in range(200):
        example = task.sample(3 + i % 8, rng)
        inst = example.instance
        gold = inst["answer"]
        assert task.answer_features(inst, example.answer_str) == {
            k: v[-len(gold) - 1 :] for k, v in example.features.items()
        }
        order = random_topological_order(inst, rng)
        assert task.is_correct(example, order + ["<eos>"])
        got = task.answer_features(inst, order + ["<eos>"])
        ref = reference_features(inst, order, task.hub_degree)
        depth = dict(zip(order, got.pop("dfs_depth")[:-1], strict=True))
        ref.pop("dfs_depth")
        assert {k: v[:-1] for k, v in got.items()} == ref
        assert all(v[-1] is None for v in got.values())
        # dfs_depth along any valid order: the depths of a DFS tree from the query (0 there, one
        # more than some child's elsewhere), never below the shortest distance to the query.
        g = to_nx(inst)
        assert depth[inst["query"]] == 0
        for v in order[:-1]:
            assert any(depth.get(c) == depth[v] - 1 for c in g.successors(v))
            assert depth[v] >= nx.shortest_path_length(g, v, inst["query"])
        # Wrong answers.
        extra = next((v for v in to_nx(inst).nodes if v not in gold), None)
        assert not task.is_correct(example, order)  # no <eos>
        assert not task.is_correct(example, order[1:] + ["<eos>"])  # a node missing
        assert not task.is_correct(example, order + [order[-1], "<eos>"])  # a node repeated
        assert not task.is_correct(example, order[::-1] + ["<eos>"])  # prerequisites after
        assert not task.is_correct(example, order + ["<eos>", "<eos>"])
        if extra is not None:
            assert not task.is_correct(example, [extra] + order + ["<eos>"])
    # Hallucinated and off-set nodes get None where a feature is undefined.
    graph = BrevoGraph(DOCSTRING_EDGES, "n4")
    feats = graph.features_along(["n5", "n9"], hub_degree=4)
    assert feats["dfs_depth"] == [None, None] and feats["dist_from_query"] == [None, None]
    assert feats["in_degree"] == [1, None] and feats["frontier"] == [2, 2]


def every_dfs(instance):
    """Brute force: post-order -> the set of depth vectors of every DFS from the query (every
    order of every node's parents) that emits it."""
    graph = to_nx(instance)
    parents = {v: sorted(graph.predecessors(v), key=label_number) for v in graph}
    nodes = list(parents)
    runs: dict[tuple, set] = {}
    for perms in itertools.product(*(itertools.permutations(parents[v]) for v in nodes)):
        rank = {v: {p: i for i, p in enumerate(perm)} for v, perm in zip(nodes, perms, strict=True)}
        depth: dict[str, int] = {}
        post: list[str] = []

        def visit(v, d, rank=rank, depth=depth, post=post):
            depth[v] = d
            for p in sorted(parents[v], key=rank[v].__getitem__):
                if p not in depth:
                    visit(p, d + 1)
            post.append(v)

        visit(instance["query"], 0)
        runs.setdefault(tuple(post), set()).add(tuple(depth[v] for v in post))
    return runs


@pytest.mark.parametrize("seed", range(3))
def test_dfs_depth_follows_any_dfs_order(seed):
    """Along every DFS post-order (brute force over every parent order), dfs_depth is the depth
    vector of a DFS that emits exactly that order; along the gold answer, the gold DFS's."""
    rng = np.random.default_rng(seed)
    task = get_task("brevo", num_labels=9, hub_degree=4)
    moved = checked = 0
    while checked < 40:
        inst = task.sample(int(rng.integers(3, 8)), rng).instance
        in_degrees = [d for _, d in to_nx(inst).in_degree()]
        if np.prod([math.factorial(d) for d in in_degrees]) > 3000:
            continue  # keep the brute force small
        checked += 1
        graph = BrevoGraph.from_instance(inst)
        runs = every_dfs(inst)
        for order, depths in runs.items():
            assert graph.is_valid_order(list(order))
            got = tuple(graph.features_along(list(order), 4)["dfs_depth"])
            assert got in depths
        gold = inst["answer"]
        gold_depth = dfs_run(inst, label_number)[1]
        assert graph.features_along(gold, 4)["dfs_depth"] == [gold_depth[v] for v in gold]
        moved += any(got != tuple(gold_depth[v] for v in o) for o in runs for got in runs[o])
    assert moved > 5  # other orders do move depths away from the gold DFS's


def test_generation_is_deterministic_and_labels_permuted():
    task = get_task("brevo", num_labels=8)
    a = [task.sample(6, np.random.default_rng(3)).token_str for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    first_labels = {task.sample(6, rng).instance["answer"][0] for _ in range(200)}
    assert len(first_labels) == 8  # every label used, no structure in the names


@pytest.mark.parametrize(
    "params, size",
    [
        ({"max_parents": 0}, 5),
        ({"hub_degree": 0}, 5),
        ({"num_labels": 2}, 5),
        ({"num_labels": 5}, 6),  # more nodes than labels
        ({}, 2),  # below the minimum size
        ({}, 4.5),
    ],
)
def test_bad_parameters_rejected(params, size):
    with pytest.raises(AniraInputError):
        get_task("brevo", **params).sample(size, np.random.default_rng(0))


def test_vocab_tokens():
    tokens = get_task("brevo").vocab_tokens(5)
    assert tokens[:4] == ["<brevo>", "<query>", "<ans>", "<eos>"]
    assert tokens[4:] == [f"n{i}" for i in range(5)]
