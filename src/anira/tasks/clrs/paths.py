"""Weighted-graph tasks of CLRS-Text: minimum spanning tree, single-source shortest paths (general
and on DAGs) and all-pairs shortest paths.

Prompt layout: ``n | u v w u v w … [| source]``, edges sorted, weights in ``1 … max_weight - 1``
(positive, so every shortest path is simple and a predecessor chain always reaches the source).
Predecessor outputs follow CLRS-DeepMind's convention that a node without predecessor (the source,
an unreachable node) is its own predecessor. Several shortest-path trees can be optimal: a
generated answer is scored correct when it is *a* valid one (every predecessor ends a shortest
path); the gold answer is the algorithm's.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np

from anira.tasks.base import EOS
from anira.tasks.clrs.common import (
    SEP,
    GraphTask,
    Run,
    adjacency,
    answer_ints,
    pairs_tokens,
    toks,
    weighted_adjacency,
)
from anira.tasks.clrs.graphs import topological_order
from anira.tasks.registry import register

INF = math.inf


class DisjointSet:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, u: int) -> int:
        while self.parent[u] != u:
            self.parent[u] = self.parent[self.parent[u]]
            u = self.parent[u]
        return u

    def union(self, u: int, v: int) -> bool:
        """Merge the sets of ``u`` and ``v``; False when they were already one set."""
        ru, rv = self.find(u), self.find(v)
        if ru == rv:
            return False
        self.parent[max(ru, rv)] = min(ru, rv)
        return True


@register
class MinimumSpanningTree(GraphTask):
    """A minimum spanning tree of a connected undirected graph (Kruskal and Prim merged).

    Output: its edges as ``u v`` pairs (``u < v``), ascending. ``3 | 0 1 4 0 2 1 1 2 2 <ans> 0 2 1 2
    <eos>``. Ties are broken by the total order on ``(weight, u, v)`` in both algorithms, so they
    pick the same tree. Any spanning tree of minimum weight, in any order, is scored correct.
    Features per edge (both tokens): ``kruskal_examined`` (edges Kruskal had examined, in sorted
    order, when it accepted this one; example ``1 2`` for edges 0-2, 1-2) and ``prim_step`` (the
    step, 1-based, at which Prim grown from node 0 added it; example ``1 2``).
    """

    name = "clrs_mst"
    text_name = "mst_kruskal"
    text_outputs = ("in_mst",)
    features = ("kruskal_examined", "prim_step")
    weighted = True
    connected = True
    align = "pair"

    def solve(self, inp: dict[str, Any]) -> Run:
        n, edges = inp["n"], inp["edges"]
        kruskal: dict[tuple[int, int], int] = {}
        forest = DisjointSet(n)
        for examined, (_, u, v) in enumerate(sorted((w, u, v) for u, v, w in edges), start=1):
            if forest.union(u, v):
                kruskal[(u, v)] = examined
        prim: dict[tuple[int, int], int] = {}
        adj = weighted_adjacency(n, edges, directed=False)
        in_tree, step = [False] * n, 0
        for root in range(n):  # one Prim tree per component: a spanning forest, like Kruskal's
            if in_tree[root]:
                continue
            heap = [(0, -1, -1, root)]
            while heap:
                _, a, b, u = heapq.heappop(heap)
                if in_tree[u]:
                    continue
                in_tree[u] = True
                if a >= 0:
                    step += 1
                    prim[(a, b)] = step
                for v, w in adj[u]:
                    if not in_tree[v]:
                        heapq.heappush(heap, (w, min(u, v), max(u, v), v))
        assert set(kruskal) == set(prim), "Kruskal and Prim disagree under one total order"
        out = sorted(kruskal)
        features = {
            "kruskal_examined": [kruskal[e] for e in out for _ in e],
            "prim_step": [prim[e] for e in out for _ in e],
        }
        return Run([list(e) for e in out], pairs_tokens(out), features)

    def valid_answer(self, instance: dict[str, Any], generated: list[str]) -> bool:
        inp = instance["input"]
        weight = {(min(u, v), max(u, v)): w for u, v, w in inp["edges"]}
        gold = instance["output"]
        values = answer_ints(generated)
        if values is None or len(values) != 2 * len(gold):
            return False
        pairs = [(min(values[i : i + 2]), max(values[i : i + 2])) for i in range(0, len(values), 2)]
        forest = DisjointSet(inp["n"])
        if any(p not in weight or not forest.union(*p) for p in pairs):
            return False
        return sum(weight[p] for p in pairs) == sum(weight[tuple(e)] for e in gold)


def is_shortest_path_tree(
    pi: list[int],
    source: int,
    dist: list[float | None],
    edges: list[list[int]],
    unreached_to_source: bool = False,
) -> bool:
    """Whether ``pi`` is a valid predecessor array for the given shortest distances.

    An unreachable node is its own predecessor; with ``unreached_to_source``, pointing to the
    source is accepted too (DeepMind's Floyd–Warshall initialises every predecessor to the row).
    """
    weight = {(u, v): w for u, v, w in edges}
    if len(pi) != len(dist) or pi[source] != source:
        return False
    for v, (p, d) in enumerate(zip(pi, dist, strict=True)):
        if v == source:
            continue
        if d is None:
            if p != v and not (unreached_to_source and p == source):
                return False
        elif (p, v) not in weight or dist[p] is None or dist[p] + weight[(p, v)] != d:
            return False
    return True


class SingleSourceTask(GraphTask):
    """Predecessor array from a source: ``n`` tokens, node ``v``'s predecessor at position ``v``."""

    directed = True
    weighted = True
    has_source = True
    text_inputs = ("s", "A")

    def valid_answer(self, instance: dict[str, Any], generated: list[str]) -> bool:
        inp, out = instance["input"], instance["output"]
        pi = answer_ints(generated)
        if pi is None:
            return False
        return is_shortest_path_tree(pi, inp["source"], out["dist"], inp["edges"])


def finite(values: list[float]) -> list[int | None]:
    return [None if x == INF else int(x) for x in values]


@register
class ShortestPaths(SingleSourceTask):
    """Single-source shortest paths (Dijkstra and Bellman-Ford merged): the predecessor array.

    ``3 | 0 1 5 0 2 1 2 1 1 | 0 <ans> 0 2 0 <eos>`` (0 → 2 → 1 costs 2 < 5). The gold tree is
    Dijkstra's (heap ordered by ``(distance, node)``). Features per reached node:
    ``dijkstra_relaxations`` (successful relaxations of its distance before Dijkstra extracted it;
    example ``0 2 1``), ``extract_order`` (rank of its extraction; example ``0 2 1``) and
    ``bellman_ford_round`` (the Bellman-Ford round — one pass over the sorted edge list — in which
    its distance last decreased; 0 for the source; example ``0 1 1``). Null when unreachable.
    """

    name = "clrs_shortest_paths"
    text_name = "bellman_ford"
    features = ("dijkstra_relaxations", "extract_order", "bellman_ford_round")

    def solve(self, inp: dict[str, Any]) -> Run:
        n, s = inp["n"], inp["source"]
        adj = weighted_adjacency(n, inp["edges"], directed=True)
        dist, pi = [INF] * n, list(range(n))
        relaxations: list[int | None] = [None] * n
        extracted: list[int | None] = [None] * n
        dist[s], relaxations[s] = 0, 0
        heap, count = [(0, s)], 0
        while heap:
            d, u = heapq.heappop(heap)
            if extracted[u] is not None:
                continue
            extracted[u], count = count, count + 1
            for v, w in adj[u]:
                if extracted[v] is None and d + w < dist[v]:
                    dist[v], pi[v] = d + w, u
                    relaxations[v] = (relaxations[v] or 0) + 1
                    heapq.heappush(heap, (dist[v], v))
        bf_dist, bf_round = [INF] * n, [None] * n
        bf_dist[s], bf_round[s] = 0, 0
        for r in range(1, n):
            changed = False
            for u, v, w in inp["edges"]:
                if bf_dist[u] + w < bf_dist[v]:
                    bf_dist[v], bf_round[v], changed = bf_dist[u] + w, r, True
            if not changed:
                break
        assert bf_dist == dist, "Bellman-Ford and Dijkstra disagree"
        features = {
            "dijkstra_relaxations": relaxations,
            "extract_order": extracted,
            "bellman_ford_round": bf_round,
        }
        return Run({"pi": pi, "dist": finite(dist)}, toks(pi), features)


@register
class DagShortestPaths(SingleSourceTask):
    """Single-source shortest paths in a DAG (CLRS DAG-SHORTEST-PATHS): the predecessor array.

    ``3 | 1 0 2 1 2 3 0 2 9 | 1 <ans> 1 1 1 <eos>`` (node 2: 1 → 2 costs 3 < 1 → 0 → 2 = 11).
    Nodes are relaxed in CLRS's DFS topological order. The source is drawn among the nodes without
    incoming edges (from a random node, most of a sparse DAG would be unreachable).
    Features per reached node: ``relaxations`` (successful relaxations of its distance; example
    ``1 0 1``) and ``topo_position`` (its position in the topological order, when its distance
    becomes final; example ``1 0 2``). Null when unreachable.
    """

    name = "clrs_dag_shortest_paths"
    text_name = "dag_shortest_paths"
    features = ("relaxations", "topo_position")
    dag = True

    def sample_input(self, size: int, rng: np.random.Generator) -> dict[str, Any]:
        inp = super().sample_input(size, rng)
        has_parent = {v for _, v, _ in inp["edges"]}
        inp["source"] = int(rng.choice([v for v in range(size) if v not in has_parent]))
        return inp

    def solve(self, inp: dict[str, Any]) -> Run:
        n, s = inp["n"], inp["source"]
        order, _ = topological_order(n, adjacency(n, inp["edges"], directed=True))
        adj = weighted_adjacency(n, inp["edges"], directed=True)
        dist, pi = [INF] * n, list(range(n))
        relaxations: list[int | None] = [None] * n
        position: list[int | None] = [None] * n
        dist[s], relaxations[s] = 0, 0
        for i, u in enumerate(order):
            if dist[u] == INF:
                continue
            position[u] = i
            for v, w in adj[u]:
                if dist[u] + w < dist[v]:
                    dist[v], pi[v] = dist[u] + w, u
                    relaxations[v] = (relaxations[v] or 0) + 1
        features = {"relaxations": relaxations, "topo_position": position}
        return Run({"pi": pi, "dist": finite(dist)}, toks(pi), features)


@register
class FloydWarshall(GraphTask):
    """All-pairs shortest paths (CLRS FLOYD-WARSHALL): the predecessor matrix, rows split by ``|``.

    Row ``i`` holds the predecessor of each ``j`` on a shortest path ``i → j`` (``i`` when
    ``j = i``: the empty path, not a shortest cycle; ``j`` itself when unreachable — DeepMind's
    code leaves ``i`` there, which is scored correct too).
    ``3 | 0 1 5 0 2 1 2 1 1 <ans> 0 2 0 | 0 1 2 | 0 2 2 <eos>``.
    Features per entry: ``updates`` (times ``D[i][j]`` decreased during the k loop; example row 0:
    ``0 1 0``) and ``last_k`` (1 + the intermediate node ``k`` of its last decrease, 0 when the
    direct edge was already shortest; null when unreachable; example row 0: ``0 3 0``, since the
    path 0 → 2 → 1 appears at k = 2). Any valid predecessor matrix is scored correct.
    Answers are quadratic in ``n`` (4160 tokens at n = 64).
    """

    name = "clrs_floyd_warshall"
    text_name = "floyd_warshall"
    text_outputs = ("Pi",)
    text_answer = "matrix"
    features = ("updates", "last_k")
    directed = True
    weighted = True

    def solve(self, inp: dict[str, Any]) -> Run:
        n = inp["n"]
        dist = [[0 if i == j else INF for j in range(n)] for i in range(n)]
        pi = [[i if i != j else j for j in range(n)] for i in range(n)]
        updates = [[0] * n for _ in range(n)]
        last_k = [[0] * n for _ in range(n)]
        for u, v, w in inp["edges"]:
            dist[u][v] = w
        for k in range(n):
            for i in range(n):
                for j in range(n):
                    if dist[i][k] + dist[k][j] < dist[i][j]:
                        dist[i][j], pi[i][j] = dist[i][k] + dist[k][j], pi[k][j]
                        updates[i][j] += 1
                        last_k[i][j] = k + 1
        answer: list[str] = []
        feats: dict[str, list[int | None]] = {"updates": [], "last_k": []}
        for i in range(n):
            for j in range(n):
                if dist[i][j] == INF:
                    pi[i][j] = j
                reached = dist[i][j] < INF
                answer.append(str(pi[i][j]))
                feats["updates"].append(updates[i][j] if reached else None)
                feats["last_k"].append(last_k[i][j] if reached else None)
            if i < n - 1:
                answer.append(SEP)
                feats["updates"].append(None)
                feats["last_k"].append(None)
        output = {"pi": pi, "dist": [finite(row) for row in dist]}
        return Run(output, answer, feats)

    def valid_answer(self, instance: dict[str, Any], generated: list[str]) -> bool:
        inp, out = instance["input"], instance["output"]
        n = inp["n"]
        if generated[-1:] != [EOS]:
            return False
        rows: list[list[str]] = [[]]
        for tok in generated[:-1]:
            if tok == SEP:
                rows.append([])
            else:
                rows[-1].append(tok)
        if len(rows) != n:
            return False
        for i, row in enumerate(rows):
            pi = answer_ints([*row, EOS])
            if pi is None or not is_shortest_path_tree(
                pi, i, out["dist"][i], inp["edges"], unreached_to_source=True
            ):
                return False
        return True
