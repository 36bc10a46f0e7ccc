"""Graph traversals of CLRS-Text: DFS, BFS, topological sort, articulation points, bridges, SCC.

Prompt layout (see :meth:`GraphTask.encode_input`): ``n | u v u v … [| source]``, edges sorted,
undirected edges listed once with ``u < v``. Nodes are visited in index order and neighbours in
ascending order, which fixes the gold answer. ``size`` = the node count ``n``.

Scoring: where the output is a property of the graph, any answer having it is correct — any
breadth-first tree (every parent on the previous layer), any topological order, any labelling of
the same strongly connected components. The depth-first forest is the exception: it is defined by
its visiting order (CLRS's: vertices and adjacency lists in index order, as in DeepMind's code), so
it is scored exactly; articulation points and bridges are unique sets.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from anira.tasks.base import EOS
from anira.tasks.clrs.common import GraphTask, Run, adjacency, answer_ints, pairs_tokens, toks
from anira.tasks.registry import register


def depth_first_forest(n: int, adj: list[list[int]]) -> dict[str, list[int]]:
    """CLRS DFS over nodes in index order: parents (roots are their own), depths, timestamps."""
    pi, depth = list(range(n)), [0] * n
    discovery, finish = [0] * n, [0] * n
    time = 0

    def visit(u: int, d: int) -> None:
        nonlocal time
        time += 1
        discovery[u], depth[u] = time, d
        for v in adj[u]:
            if discovery[v] == 0:
                pi[v] = u
                visit(v, d + 1)
        time += 1
        finish[u] = time

    for u in range(n):
        if discovery[u] == 0:
            visit(u, 0)
    return {"pi": pi, "depth": depth, "discovery": discovery, "finish": finish}


@register
class Dfs(GraphTask):
    """Depth-first forest of a directed graph: the parent of every node (a root is its own).

    ``3 | 0 1 1 2 2 0 <ans> 0 0 1 <eos>`` (tree 0 → 1 → 2). Features per node: ``discovery_time``
    (CLRS timestamp d[v], counting discoveries and finishes; example ``1 2 3``) and ``dfs_depth``
    (depth in its DFS tree when discovered; example ``0 1 2``).
    """

    name = "clrs_dfs"
    text_name = "dfs"
    features = ("discovery_time", "dfs_depth")
    directed = True

    def solve(self, inp: dict[str, Any]) -> Run:
        n = inp["n"]
        dfs = depth_first_forest(n, adjacency(n, inp["edges"], directed=True))
        features = {"discovery_time": dfs["discovery"], "dfs_depth": dfs["depth"]}
        return Run(dfs["pi"], toks(dfs["pi"]), features)


@register
class Bfs(GraphTask):
    """Breadth-first tree of an undirected graph from a source: the parent of every node.

    The source and unreachable nodes are their own parents. ``4 | 0 1 0 2 1 2 | 1 <ans> 1 1 1 3
    <eos>`` (source 1; node 3 is isolated). The gold tree takes the first discoverer (neighbours in
    ascending order); any parent on the previous layer is scored correct (features are per node,
    so they hold for every valid tree). Features per reached node: ``bfs_layer`` (distance
    from the source; example ``1 0 1 -``), ``discovery_order`` (0 for the source, then 1, 2, … in
    discovery order; example ``1 0 2 -``) and ``queue_length`` (nodes waiting in the queue when it
    was discovered; example ``0 0 1 -``); ``-`` = null (unreached).
    """

    name = "clrs_bfs"
    text_name = "bfs"
    text_inputs = ("s", "A")
    features = ("bfs_layer", "discovery_order", "queue_length")
    has_source = True

    def solve(self, inp: dict[str, Any]) -> Run:
        n, s = inp["n"], inp["source"]
        adj = adjacency(n, inp["edges"], directed=False)
        pi = list(range(n))
        layer: list[int | None] = [None] * n
        order: list[int | None] = [None] * n
        queue_length: list[int | None] = [None] * n
        layer[s], order[s], queue_length[s] = 0, 0, 0
        queue, discovered = deque([s]), 1
        while queue:
            u = queue.popleft()
            for v in adj[u]:
                if layer[v] is None:
                    pi[v], layer[v] = u, layer[u] + 1
                    order[v], queue_length[v] = discovered, len(queue)
                    discovered += 1
                    queue.append(v)
        features = {"bfs_layer": layer, "discovery_order": order, "queue_length": queue_length}
        return Run(pi, toks(pi), features)

    def valid_answer(self, instance: dict[str, Any], generated: list[str]) -> bool:
        inp = instance["input"]
        n, s = inp["n"], inp["source"]
        pi = answer_ints(generated)
        if pi is None or len(pi) != n:
            return False
        adj = adjacency(n, inp["edges"], directed=False)
        layer = hop_layers(adj, s)
        for v in range(n):
            if v == s or layer[v] is None:
                if pi[v] != v:
                    return False
            elif pi[v] not in adj[v] or layer[pi[v]] != layer[v] - 1:
                return False
        return True


def hop_layers(adj: list[list[int]], source: int) -> list[int | None]:
    """Hop distance of every node from ``source`` (None when unreachable)."""
    layer: list[int | None] = [None] * len(adj)
    layer[source] = 0
    queue = deque([source])
    while queue:
        u = queue.popleft()
        for v in adj[u]:
            if layer[v] is None:
                layer[v] = layer[u] + 1
                queue.append(v)
    return layer


def topological_order(n: int, adj: list[list[int]]) -> tuple[list[int], dict[str, list[int]]]:
    """CLRS TOPOLOGICAL-SORT: nodes by decreasing DFS finish time, and the DFS record."""
    dfs = depth_first_forest(n, adj)
    return sorted(range(n), key=lambda v: -dfs["finish"][v]), dfs


@register
class TopologicalSort(GraphTask):
    """A topological order of a DAG: CLRS's DFS order (decreasing finish time).

    ``3 | 0 2 1 0 <ans> 1 0 2 <eos>``. Any valid topological order is scored correct (many exist);
    the gold one is DFS's. Features per emitted node (looked up by node, so they follow any order):
    ``finish_time`` (its DFS finish timestamp — the moment it is prepended to the list; example
    ``6 4 3`` for nodes 1, 0, 2) and ``dfs_depth`` (example ``0 0 1``).
    """

    name = "clrs_topological_sort"
    text_name = "topological_sort"
    text_outputs = ("topo",)
    features = ("finish_time", "dfs_depth")
    directed = True
    dag = True
    align = "value"

    def solve(self, inp: dict[str, Any]) -> Run:
        n = inp["n"]
        order, dfs = topological_order(n, adjacency(n, inp["edges"], directed=True))
        features = {
            "finish_time": [dfs["finish"][v] for v in order],
            "dfs_depth": [dfs["depth"][v] for v in order],
        }
        return Run(order, toks(order), features)

    def valid_answer(self, instance: dict[str, Any], generated: list[str]) -> bool:
        n = instance["input"]["n"]
        if generated[-1:] != [EOS] or sorted(generated[:-1]) != sorted(toks(range(n))):
            return False
        position = {int(t): i for i, t in enumerate(generated[:-1])}
        return all(position[u] < position[v] for u, v in instance["input"]["edges"])


def lowpoint_dfs(n: int, adj: list[list[int]]) -> dict[str, Any]:
    """Tarjan's low-point DFS of an undirected graph (roots in index order).

    Records, when each is identified: articulation points → (DFS clock, discovery time, depth), and
    bridges ``(u, v)``, ``u < v`` → (DFS clock, size of the DFS subtree it cuts off).
    """
    discovery, low = [0] * n, [0] * n
    points: dict[int, tuple[int, int, int]] = {}
    bridges: dict[tuple[int, int], tuple[int, int]] = {}
    time = 0

    def visit(u: int, parent: int | None, depth: int) -> int:
        nonlocal time
        time += 1
        discovery[u] = low[u] = time
        children, size = 0, 1
        for v in adj[u]:
            if discovery[v] == 0:
                children += 1
                child_size = visit(v, u, depth + 1)
                size += child_size
                low[u] = min(low[u], low[v])
                if parent is not None and low[v] >= discovery[u] and u not in points:
                    points[u] = (time, discovery[u], depth)
                if low[v] > discovery[u]:
                    bridges[(min(u, v), max(u, v))] = (time, child_size)
            elif v != parent:
                low[u] = min(low[u], discovery[v])
        if parent is None and children >= 2:
            points[u] = (time, discovery[u], depth)
        time += 1
        return size

    for u in range(n):
        if discovery[u] == 0:
            visit(u, None, 0)
    return {"points": points, "bridges": bridges}


@register
class ArticulationPoints(GraphTask):
    """The articulation points of an undirected graph, ascending (possibly none).

    ``4 | 0 1 1 2 1 3 <ans> 1 <eos>``. Features per point, recorded when Tarjan's DFS identifies
    it: ``marked_at`` (the DFS clock then; example 4: 0 and 1 discovered, 2 discovered and
    finished), ``discovery_time`` (example 2) and ``dfs_depth`` (example 1).
    """

    name = "clrs_articulation_points"
    text_name = "articulation_points"
    text_outputs = ("is_cut",)
    text_answer = "mask"
    features = ("marked_at", "discovery_time", "dfs_depth")
    align = "value"

    def solve(self, inp: dict[str, Any]) -> Run:
        points = lowpoint_dfs(inp["n"], adjacency(inp["n"], inp["edges"], directed=False))["points"]
        out = sorted(points)
        features = {name: [points[u][i] for u in out] for i, name in enumerate(self.features)}
        return Run(out, toks(out), features)

    def mask_count(self, inp: dict[str, Any]) -> int:
        return inp["n"]


@register
class Bridges(GraphTask):
    """The bridges of an undirected graph as ``u v`` pairs (``u < v``), ascending.

    ``4 | 0 1 0 2 1 2 2 3 <ans> 2 3 <eos>``. Features (both tokens of a bridge share them), recorded
    when the DFS identifies the bridge: ``marked_at`` (the DFS clock then; example 5) and
    ``subtree_size`` (nodes the bridge cuts off below it in the DFS tree; example 1).
    """

    name = "clrs_bridges"
    text_name = "bridges"
    text_outputs = ("is_bridge",)
    features = ("marked_at", "subtree_size")
    align = "pair"

    def solve(self, inp: dict[str, Any]) -> Run:
        bridges = lowpoint_dfs(inp["n"], adjacency(inp["n"], inp["edges"], directed=False))
        bridges = bridges["bridges"]
        out = sorted(bridges)
        features = {
            name: [bridges[e][i] for e in out for _ in e] for i, name in enumerate(self.features)
        }
        return Run([list(e) for e in out], pairs_tokens(out), features)


@register
class StronglyConnectedComponents(GraphTask):
    """Strongly connected components (CLRS/Kosaraju): each node's label = its component's smallest
    node. ``4 | 0 1 1 0 1 2 2 3 3 2 <ans> 0 0 2 2 <eos>``. Labelling a component by any of its
    nodes (``1 1 3 3`` here) is scored correct too (:meth:`is_correct`).

    Features per node: ``first_finish`` (finish time in the first DFS, on the graph; example
    ``8 7 6 5``), ``component_order`` (rank of its component among those the second DFS — on the
    transposed graph, in decreasing finish order — finds; example ``0 0 1 1``) and
    ``component_size`` (example ``2 2 2 2``).
    """

    name = "clrs_scc"
    text_name = "strongly_connected_components"
    text_outputs = ("scc_id",)
    features = ("first_finish", "component_order", "component_size")
    directed = True

    def solve(self, inp: dict[str, Any]) -> Run:
        n, edges = inp["n"], inp["edges"]
        order, first = topological_order(n, adjacency(n, edges, directed=True))
        transposed = adjacency(n, [(v, u) for u, v in edges], directed=True)
        label, rank, size = [-1] * n, [0] * n, [0] * n
        for found, root in enumerate(u for u in order if label[u] < 0):
            component, stack = [root], [root]
            label[root] = root
            while stack:
                for v in transposed[stack.pop()]:
                    if label[v] < 0:
                        label[v] = root
                        component.append(v)
                        stack.append(v)
            for v in component:
                label[v], rank[v], size[v] = min(component), found, len(component)
        features = {
            "first_finish": first["finish"],
            "component_order": rank,
            "component_size": size,
        }
        return Run(label, toks(label), features)

    def valid_answer(self, instance: dict[str, Any], generated: list[str]) -> bool:
        """Any labelling of the same components by one of their own nodes: DeepMind's code labels
        a component by the root of its second-pass DFS tree, ours by its smallest node."""
        gold = instance["output"]
        label = answer_ints(generated)
        if label is None or len(label) != len(gold):
            return False
        same = {(a, b) for a, b in zip(gold, label, strict=True)}
        return len(same) == len(set(gold)) == len(set(label)) and all(
            0 <= x < len(gold) and gold[x] == g for g, x in same
        )
