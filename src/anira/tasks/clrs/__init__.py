"""CLRS-Text: the 30 algorithms of the CLRS benchmark as text-to-text tasks, merged into 23.

Each task writes an algorithm's input as tokens, then ``<ans>``, the algorithm's output and
``<eos>`` (hint traces removed). ``size`` is the input size (array length, node count, string
length, number of activities/tasks/matrices/keys/points/segment pairs). Per-token features are
recorded while the algorithm runs (see :mod:`anira.tasks.clrs.common`); each task's docstring gives
its layout and a worked input → output example with its features.

Merges — algorithms whose input and output coincide share one task, and all of them run on every
instance, each contributing its own execution features (30 → 23):

- insertion sort, bubble sort, heapsort, quicksort → ``clrs_sort`` (keys → sorted keys);
- Kruskal, Prim → ``clrs_mst`` (weighted graph → spanning-tree edges);
- Bellman-Ford, Dijkstra → ``clrs_shortest_paths`` (weighted digraph + source → predecessors);
- naive string matcher, KMP → ``clrs_string_matcher`` (text + pattern → match shifts);
- Graham scan, Jarvis march → ``clrs_convex_hull`` (points → hull vertices).

DAG shortest paths stays separate from ``clrs_shortest_paths``: its inputs are DAGs, a different
input distribution, and its execution (a topological sweep) has different state. Likewise DFS and
topological sort share an algorithm but not their output.

The 23 tasks, by module:

- :mod:`~anira.tasks.clrs.sorting` — sort, minimum, binary_search, quickselect, max_subarray;
- :mod:`~anira.tasks.clrs.greedy` — activity_selector, task_scheduling;
- :mod:`~anira.tasks.clrs.dynamic` — matrix_chain_order, optimal_bst, lcs_length;
- :mod:`~anira.tasks.clrs.graphs` — dfs, bfs, topological_sort, articulation_points, bridges, scc;
- :mod:`~anira.tasks.clrs.paths` — mst, shortest_paths, dag_shortest_paths, floyd_warshall;
- :mod:`~anira.tasks.clrs.strings` — string_matcher;
- :mod:`~anira.tasks.clrs.geometry` — segments_intersect, convex_hull.

Vocabulary: number tokens ``"0" "1" …`` (node ids, indices, keys, weights, coordinates; bounded by
the task's parameters and the largest size), letters for strings, ``|`` between prompt sections,
plus ``<ans>`` and ``<eos>``. Departures from DeepMind's CLRS, all ours: graphs are sparse
(``mean_degree`` neighbours on average, not dense Erdős–Rényi) so that edge-list prompts stay
linear in ``n``; outputs are the natural text answer (a list, an order, a predecessor array)
rather than node masks; ties are broken by index everywhere, and where several answers are valid
(topological orders, shortest-path trees, minimum spanning trees) ``is_correct`` accepts any.
"""

from anira.tasks.clrs import dynamic, geometry, graphs, greedy, paths, sorting, strings  # noqa: F401
