"""BREVO: resolve every prerequisite of a query node in a random DAG (Physics of LMs, part 4.1).

Size ``N`` is the number of nodes of the graph (under the default ``ours`` rule every node occurs
in an edge, so ``N`` can be read off the prompt).

Token layout::

    <brevo> p1 c1 p2 c2 ... pE cE <query> q <ans> a1 a2 ... q <eos>

Each edge is two node tokens ``p c`` (``p`` is a prerequisite, i.e. a parent, of ``c``), the edges
in a random order. The answer is the dependency set ``S`` of the query (the query and every node it
depends on, recursively), each node after all of its prerequisites, the query last. Node tokens are
``n0`` .. ``n{K-1}`` where ``K`` (``num_labels``) is the largest size of the dataset; each example
draws its ``N`` labels as a random subset of them in random order, so labels carry no structure.

Graph generation, two rules (``graph_rule``). Nodes get a hidden order 0..N-1 and parents come
from earlier nodes, so the graph is a DAG.

- ``physics_lm`` (scale ``paper``): the distribution of the Physics-of-LM BREVO generator
  (*Physics of Language Models*, part 4.1; its public generator code, read and re-implemented,
  not copied). The first ``R`` nodes, ``R`` uniform in ``1..(N-1)//4 + 1``, have no parents; every
  later node draws ``k`` uniform in ``1..min(#eligible, max_parents)`` parents uniformly among the
  earlier nodes that have fewer than ``max_children`` (4) children, and none if no earlier node is
  eligible. The query is the **last** node of the hidden order (the source's candidate list,
  ``nodes[max(3N//4, N-1):]``, holds only that node), redrawn when it has no parent (the source
  fails there). ``N`` counts every node, including a node in no edge, which the prompt cannot show
  (as in the source); ``instance["isolated"]`` lists them.
- ``ours`` (scale ``mini``, default): the first ``R`` nodes, ``R`` uniform in
  ``1..max(1, N // 3)``, are roots; every later node ``i`` draws ``k`` uniform in
  ``1..min(i, max_parents)`` parents uniformly among the nodes before it; no cap on children;
  graphs with an isolated root are redrawn (so every node is in an edge and ``N`` can be read off
  the prompt). The query is uniform among the non-root nodes, so ``|S| >= 2``. The mini scale's
  measured settings (learning rate, router γ and b) were chosen on this rule.

Remaining differences from the source, on purpose: sizes are split by ``N`` (our datasets hold
each size separately, since the study reads accuracy per size and holds sizes out) where the
source draws ``N`` from a power law over ``3..N_max`` (weights ∝ 1/(n + √N_max)); a node is one
token ``n<label>`` (the source spells nodes as multi-token words), so that each answer token
is one node and carries that node's features; graphs are always given as an edge list (the
source can also give adjacency lists); and the gold answer is a DFS post-order (below) where the
source draws a uniformly random topological order. The answer keeps the DFS post-order because
the execution-state features of the study (``dfs_depth``, ``frontier``, ``newly_enabled``) are
defined by a DFS, and a deterministic gold order makes them reproducible from the example alone;
scoring accepts every valid order, so no correct answer is penalised for differing from it.

Gold order (**ours**): the post-order of a recursive depth-first search from the query that visits
a node's parents in increasing label number (``n2`` before ``n10``) and skips nodes already
visited. A post-order over parents emits every node after its prerequisites, and the query last.

Scoring: many orders are valid, so :meth:`BrevoTask.is_correct` accepts any answer with exactly the
nodes of ``S`` (each once), every node after all of its prerequisites, then ``<eos>``.

Per-token features, defined on the answer tokens that emit a node (``None`` on the prompt and on
``<eos>``). For the token emitting node ``v`` at step ``i`` of an order over ``S``:

- ``frontier``: the nodes of ``S`` not yet emitted whose prerequisites are all emitted, just before
  step ``i`` (``v`` itself included when the order is valid);
- ``newly_enabled``: the nodes of ``S`` that are available right after step ``i`` and were not
  right before it (they became available because ``v`` was emitted);
- ``dfs_depth``: the recursion depth of the call that visits ``v`` in a DFS from the query (the
  query is 0, a parent reached from it 1, ...; a node reachable by several paths keeps the depth of
  its first visit). Along the gold order it is the gold DFS above; along any other order (**ours**)
  it is the DFS that follows the emitted order (:meth:`BrevoGraph.dfs_depth_along`), which emits
  exactly that order whenever it is a DFS post-order (ties between DFS that emit the same order,
  by smallest label) — so ``dfs_depth`` follows the emitted order like ``frontier`` and
  ``newly_enabled``;
- ``height``: the number of edges of the longest prerequisite chain ending at ``v`` (roots are 0);
- ``dist_from_query``: the number of edges of the shortest path ``v -> ... -> query`` (query 0);
- ``graph_size``: ``N``; ``dep_set_size``: ``|S|``;
- ``in_degree`` / ``out_degree``: ``v``'s number of parents / children in the whole graph;
- ``is_hub``: 1.0 when ``in_degree + out_degree >= hub_degree`` (**ours**, a parameter), else 0;
- ``max_degree``: the largest ``in_degree + out_degree`` over all nodes of the graph.

``frontier``, ``newly_enabled`` and ``dfs_depth`` depend on the order;
:meth:`BrevoTask.answer_features` computes every feature along any emitted order (nodes outside
the graph get ``None``; nodes outside ``S`` get ``None`` for ``dfs_depth`` and
``dist_from_query``).

Worked example (``hub_degree=3``)::

    <brevo> n3 n1 n0 n1 n1 n4 n0 n4 n2 n3 n4 n5 <query> n4 <ans> n0 n2 n3 n1 n4 <eos>

Parents: n4 <- {n0, n1}, n1 <- {n0, n3}, n3 <- {n2}, n5 <- {n4}; N = 6, S = {n0, n1, n2, n3, n4}.
DFS from n4 (depth 0) visits n0 (1, emitted), then n1 (1) -> n3 (2) -> n2 (3); post-order
``n0 n2 n3 n1 n4``.

=================  ==  ==  ==  ==  ==
answer token       n0  n2  n3  n1  n4
=================  ==  ==  ==  ==  ==
frontier           2   1   1   1   1
newly_enabled      0   1   1   1   0
dfs_depth          1   3   2   1   0
height             0   0   1   2   3
dist_from_query    1   3   2   1   0
in_degree          0   0   1   2   2
out_degree         2   1   1   1   1
is_hub             0   0   0   1   1
=================  ==  ==  ==  ==  ==

with ``graph_size`` 6, ``dep_set_size`` 5 and ``max_degree`` 3 on every node token. Before step 0
both roots n0 and n2 are available (frontier 2); emitting n2 makes n3 available (newly_enabled 1).
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

import numpy as np

from anira.io import AniraInputError
from anira.tasks.base import ANS, EOS, Example, Task
from anira.tasks.registry import register

BOS, QUERY = "<brevo>", "<query>"
GRAPH_RULES = ("ours", "physics_lm")


def label_number(label: str) -> int:
    return int(label[1:])


class BrevoGraph:
    """A BREVO instance (edges and query) with every quantity its features need."""

    def __init__(
        self, edges: list[tuple[str, str]], query: str, isolated: list[str] | None = None
    ) -> None:
        self.edges = [(str(p), str(c)) for p, c in edges]
        self.query = query
        nodes: set[str] = {query, *(isolated or [])}  # nodes in no edge still count in N
        for p, c in self.edges:
            nodes.update((p, c))
        self.parents: dict[str, list[str]] = {v: [] for v in nodes}
        self.children: dict[str, list[str]] = {v: [] for v in nodes}
        for p, c in self.edges:
            self.parents[c].append(p)
            self.children[p].append(c)
        for v in nodes:
            self.parents[v].sort(key=label_number)
            self.children[v].sort(key=label_number)
        self.nodes = sorted(nodes, key=label_number)
        self.gold_order, _ = self._dfs_post_order()
        self.dep_set = set(self.gold_order)
        self.height = self._heights()
        self.dist_from_query = self._distances_to_query()
        self.degree = {v: len(self.parents[v]) + len(self.children[v]) for v in self.nodes}

    @classmethod
    def from_instance(cls, instance: dict[str, Any]) -> BrevoGraph:
        return cls(
            [tuple(e) for e in instance["edges"]], instance["query"], instance.get("isolated")
        )

    def _dfs_post_order(self) -> tuple[list[str], dict[str, int]]:
        order: list[str] = []
        depth: dict[str, int] = {}

        def visit(v: str, d: int) -> None:
            depth[v] = d
            for p in self.parents[v]:
                if p not in depth:
                    visit(p, d + 1)
            order.append(v)

        visit(self.query, 0)
        return order, depth

    def _heights(self) -> dict[str, int]:
        height: dict[str, int] = {}

        def h(v: str) -> int:
            if v not in height:
                height[v] = max((h(p) + 1 for p in self.parents[v]), default=0)
            return height[v]

        for v in self.nodes:
            h(v)
        return height

    def _distances_to_query(self) -> dict[str, int]:
        dist = {self.query: 0}
        queue = deque([self.query])
        while queue:
            v = queue.popleft()
            for p in self.parents[v]:
                if p not in dist:
                    dist[p] = dist[v] + 1
                    queue.append(p)
        return dist

    def dfs_depth_along(self, order: list[str]) -> dict[str, int]:
        """First-visit depth of every node of ``S`` in the DFS from the query that follows
        ``order``. Entering parent ``p`` of a node emits, as one block, every node reachable from
        ``p`` through unvisited nodes, ``p`` last; the DFS enters the smallest-label parent whose
        block is the next stretch of ``order`` (when none is, ``order`` is no DFS post-order there
        and it enters the parent ``order`` emits first). So when ``order`` is a DFS post-order this
        DFS emits exactly ``order`` (several DFS can: the smallest labels break the tie), and along
        the gold answer these are the gold DFS depths."""
        first = {v: i for i, v in reversed(list(enumerate(order)))}
        sequence = sorted((v for v in first if v in self.dep_set), key=first.__getitem__)
        depth: dict[str, int] = {}
        done: list[str] = []

        def block(start: str) -> set[str]:
            seen, stack = {start}, [start]
            while stack:
                fresh = [p for p in self.parents[stack.pop()] if p not in depth and p not in seen]
                seen.update(fresh)
                stack += fresh
            return seen

        def follows(p: str) -> bool:
            nodes, start = block(p), len(done)
            stretch = sequence[start : start + len(nodes)]
            return set(stretch) == nodes and stretch[-1] == p

        def visit(v: str, d: int) -> None:
            depth[v] = d
            while todo := [p for p in self.parents[v] if p not in depth]:
                chosen = next((p for p in todo if follows(p)), None)
                visit(chosen or min(todo, key=lambda p: first.get(p, len(order))), d + 1)
            done.append(v)

        visit(self.query, 0)
        return depth

    def available(self, emitted: set[str]) -> set[str]:
        """Nodes of ``S`` not in ``emitted`` whose prerequisites are all in ``emitted``."""
        return {
            u
            for u in self.dep_set
            if u not in emitted and all(p in emitted for p in self.parents[u])
        }

    def is_valid_order(self, order: list[str]) -> bool:
        """Exactly the nodes of ``S``, each once, each after all of its prerequisites."""
        if len(order) != len(self.dep_set) or set(order) != self.dep_set:
            return False
        emitted: set[str] = set()
        for v in order:
            if any(p not in emitted for p in self.parents[v]):
                return False
            emitted.add(v)
        return True

    def features_along(self, order: list[str], hub_degree: int) -> dict[str, list[float | None]]:
        """Every per-token feature (see the module docstring) for the nodes emitted in ``order``."""
        out: dict[str, list[float | None]] = {name: [] for name in BrevoTask.features}
        max_degree = float(max(self.degree.values()))
        dfs_depth = self.dfs_depth_along(order)
        emitted: set[str] = set()
        for v in order:
            before = self.available(emitted)
            emitted.add(v)
            after = self.available(emitted)
            known = v in self.degree
            in_s = v in self.dep_set
            values: dict[str, float | None] = {
                "frontier": len(before),
                "newly_enabled": len(after - before),
                "dfs_depth": dfs_depth[v] if in_s else None,
                "height": self.height[v] if known else None,
                "dist_from_query": self.dist_from_query[v] if in_s else None,
                "graph_size": len(self.nodes),
                "dep_set_size": len(self.dep_set),
                "in_degree": len(self.parents[v]) if known else None,
                "out_degree": len(self.children[v]) if known else None,
                "is_hub": float(self.degree[v] >= hub_degree) if known else None,
                "max_degree": max_degree,
            }
            for name, value in values.items():
                out[name].append(None if value is None else float(value))
        return out


@register
class BrevoTask(Task):
    """BREVO (see the module docstring for the layout, the gold order and the features)."""

    name: ClassVar[str] = "brevo"
    features: ClassVar[tuple[str, ...]] = (
        "frontier",
        "newly_enabled",
        "dfs_depth",
        "height",
        "dist_from_query",
        "graph_size",
        "dep_set_size",
        "in_degree",
        "out_degree",
        "is_hub",
        "max_degree",
    )
    min_size: ClassVar[int] = 3

    def __init__(
        self,
        max_parents: int = 4,
        hub_degree: int = 4,
        num_labels: int | None = None,
        graph_rule: str = "ours",
        max_children: int = 4,
    ):
        if graph_rule not in GRAPH_RULES:
            raise AniraInputError(
                f"brevo: graph_rule must be one of {GRAPH_RULES}, got {graph_rule!r}"
            )
        if int(max_children) != max_children or max_children < 1:
            raise AniraInputError(
                f"brevo: max_children must be an integer >= 1, got {max_children}"
            )
        if int(max_parents) != max_parents or max_parents < 1:
            raise AniraInputError(f"brevo: max_parents must be an integer >= 1, got {max_parents}")
        if int(hub_degree) != hub_degree or hub_degree < 1:
            raise AniraInputError(f"brevo: hub_degree must be an integer >= 1, got {hub_degree}")
        if num_labels is not None and (int(num_labels) != num_labels or num_labels < self.min_size):
            raise AniraInputError(f"brevo: num_labels must be >= {self.min_size}, got {num_labels}")
        self.max_parents = int(max_parents)
        self.graph_rule = graph_rule
        self.max_children = int(max_children)  # the physics_lm rule's cap
        self.hub_degree = int(hub_degree)
        self.num_labels = None if num_labels is None else int(num_labels)

    def dataset_params(self, max_size: int) -> dict[str, Any]:
        return {"num_labels": int(max_size)}

    def vocab_tokens(self, max_size: int) -> list[str]:
        labels = max(max_size, self.num_labels or 0)
        return [BOS, QUERY, ANS, EOS] + [f"n{i}" for i in range(labels)]

    def check_size(self, size: int) -> None:
        super().check_size(size)
        if self.num_labels is not None and size > self.num_labels:
            raise AniraInputError(
                f"brevo: size {size} exceeds the {self.num_labels} node labels of the vocabulary"
            )

    def sample_graph(self, size: int, rng: np.random.Generator) -> BrevoGraph:
        """Draw a DAG of ``size`` nodes and a query (generation rule in the module docstring)."""
        self.check_size(size)
        if self.graph_rule == "physics_lm":
            parents, query_index = self._physics_lm_parents(size, rng)
        else:
            parents, query_index = self._our_parents(size, rng)
        labels = rng.permutation(self.num_labels or size)[:size]
        names = [f"n{label}" for label in labels]
        edges = [(names[p], names[c]) for c in range(size) for p in sorted(parents[c])]
        edges = [edges[j] for j in rng.permutation(len(edges))]
        in_edges = {v for edge in edges for v in edge}
        isolated = [v for v in names if v not in in_edges]
        return BrevoGraph(edges, names[query_index], isolated)

    def _physics_lm_parents(self, size: int, rng: np.random.Generator) -> tuple[list, int]:
        """Parents per node and the query's index under the ``physics_lm`` rule (docstring)."""
        n_roots = int(rng.integers(1, (size - 1) // 4 + 2))
        while True:
            children = np.zeros(size, dtype=np.int64)
            parents = [np.empty(0, dtype=np.int64)] * n_roots
            for i in range(n_roots, size):
                eligible = np.flatnonzero(children[:i] < self.max_children)
                if len(eligible) == 0:
                    parents.append(np.empty(0, dtype=np.int64))
                    continue
                k = int(rng.integers(1, min(len(eligible), self.max_parents) + 1))
                chosen = rng.choice(eligible, size=k, replace=False)
                children[chosen] += 1
                parents.append(chosen)
            if len(parents[-1]):
                return parents, size - 1

    def _our_parents(self, size: int, rng: np.random.Generator) -> tuple[list, int]:
        """Parents per node and the query's index under the ``ours`` rule (docstring)."""
        n_roots = int(rng.integers(1, max(1, size // 3) + 1))
        while True:
            parents = [np.empty(0, dtype=np.int64)] * n_roots
            for i in range(n_roots, size):
                k = int(rng.integers(1, min(i, self.max_parents) + 1))
                parents.append(rng.choice(i, size=k, replace=False))
            has_child = np.zeros(size, dtype=bool)
            for ps in parents:
                has_child[ps] = True
            if has_child[:n_roots].all():
                return parents, int(rng.integers(n_roots, size))

    def sample(self, size: int, rng: np.random.Generator) -> Example:
        graph = self.sample_graph(size, rng)
        return self.example_from_graph(graph, size)

    def example_from_graph(self, graph: BrevoGraph, size: int) -> Example:
        prompt = [BOS] + [t for edge in graph.edges for t in edge] + [QUERY, graph.query, ANS]
        answer = graph.gold_order + [EOS]
        token_str = prompt + answer
        node_features = graph.features_along(graph.gold_order, self.hub_degree)
        features = {
            name: [None] * len(prompt) + values + [None] for name, values in node_features.items()
        }
        instance = {
            "edges": [list(e) for e in graph.edges],
            "query": graph.query,
            "answer": graph.gold_order,
        }
        in_edges = {v for edge in graph.edges for v in edge} | {graph.query}
        isolated = [v for v in graph.nodes if v not in in_edges]
        if isolated:  # only the physics_lm rule leaves nodes out of every edge
            instance["isolated"] = isolated
        return Example(
            token_str=token_str,
            answer_mask=[False] * len(prompt) + [True] * len(answer),
            size=size,
            features=features,
            instance=instance,
        )

    def answer_features(
        self, instance: dict[str, Any], answer: list[str]
    ) -> dict[str, list[float | None]]:
        graph = BrevoGraph.from_instance(instance)
        end = answer.index(EOS) if EOS in answer else len(answer)
        values = graph.features_along(answer[:end], self.hub_degree)
        return {name: vals + [None] * (len(answer) - end) for name, vals in values.items()}

    def is_correct(self, example: Example, generated: list[str]) -> bool:
        if not generated or generated[-1] != EOS or EOS in generated[:-1]:
            return False
        return BrevoGraph.from_instance(example.instance).is_valid_order(generated[:-1])
