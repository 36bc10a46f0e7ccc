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
linear in ``n``; outputs are the natural text answer (a list, an order, a predecessor array) rather
than node masks (``format: clrs_text`` selects DeepMind's CLRS-Text layout instead, see
:mod:`anira.tasks.clrs.text`). The gold answer breaks ties by index everywhere; where several
answers are valid, ``is_correct`` accepts any of them: breadth-first trees (any parent on the
previous layer), topological orders, strongly connected component labels (any member names its
component), minimum spanning trees, shortest-path trees (Floyd–Warshall: an unreachable pair's
predecessor is ``j`` or ``i``), optimal matrix-chain and search trees (equal-cost splits), maximum
activity sets and optimal task schedules, longest common subsequences, maximum-sum subarrays and
indices of the minimum. Conventions kept where DeepMind's code differs: the depth-first forest
visits nodes and neighbours in index order and is scored exactly; task scheduling is the textbook
(optimal) greedy; quickselect asks for the lower median; binary search answers the insertion point,
``n`` when the target exceeds every key; string matching lists every shift; the convex hull lists
corners only.
"""

from anira.tasks.clrs import dynamic, geometry, graphs, greedy, paths, sorting, strings  # noqa: F401
