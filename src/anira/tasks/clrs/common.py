"""Shared machinery of the CLRS-Text tasks: the task base class, graph sampling, token helpers.

Every CLRS-Text task is three plain functions glued by :class:`ClrsTask`:

- ``sample_input(size, rng)`` draws a structured, JSON-able input (plain ints, never NumPy types);
- ``encode_input(input)`` writes it as prompt tokens;
- ``solve(input)`` runs the algorithm — plain Python, in the style of DeepMind's CLRS
  (``clrs/_src/algorithms``) — and returns a :class:`Run`: the structured output, the answer tokens
  (without ``<eos>``) and one value per answer token for each feature, *recorded while the algorithm
  runs* (counters and timestamps kept in the loop, never recomputed from the output afterwards).

The example is ``prompt <ans> answer <eos>``; features are ``None`` on the prompt and on ``<eos>``.

Features of an answer that a model generated (``answer_features``) come from the same recorded run,
mapped onto the emitted tokens by one of three rules (``align``):

- ``"position"``: the i-th answer token gets the i-th recorded value (outputs indexed by position,
  e.g. a predecessor array: token i is the parent of node i);
- ``"value"``: a token gets the values recorded for the output item it names (sets of nodes or
  indices, e.g. articulation points), ``None`` when the item is not in the gold output;
- ``"pair"``: like ``"value"`` for outputs that are lists of pairs (edges): tokens 2k and 2k+1 form
  one item;
- ``"prefix"``: like ``"position"``, but only while the emitted answer agrees with the gold one —
  for tasks whose valid alternatives (another longest common subsequence, another maximum-sum
  subarray) are not items of the recorded run, so the run's state describes none of their tokens.

Tasks whose valid answers are other structures built from the same recorded tables (optimal trees
of the interval DPs, rule ``"tree"``) override :meth:`ClrsTask.answer_features` instead.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np

from anira.io import AniraInputError
from anira.tasks.base import ANS, EOS, Example, Task
from anira.tasks.clrs import text
from anira.tasks.clrs.text import SEP

Feature = list[float | None]


class Run(NamedTuple):
    """One execution of an algorithm: its output and the state recorded per answer token."""

    output: Any  # structured (JSON-able) output, stored as instance["output"]
    answer: list[str]  # answer tokens, without <eos>
    features: dict[str, Feature]  # feature name → one value per answer token


def nums(k: int, start: int = 0) -> list[str]:
    """Number tokens ``str(start) … str(k - 1)``."""
    return [str(i) for i in range(start, k)]


def toks(values: Iterable[int]) -> list[str]:
    return [str(int(v)) for v in values]


def pairs_tokens(pairs: Iterable[Sequence[int]]) -> list[str]:
    return [str(int(x)) for pair in pairs for x in pair]


def answer_ints(generated: list[str]) -> list[int] | None:
    """The integers of an answer ending in ``<eos>``; None when it does not end there or a token
    before it is not an integer."""
    if generated[-1:] != [EOS]:
        return None
    try:
        return [int(t) for t in generated[:-1]]
    except ValueError:
        return None


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if int(value) != value or value < minimum:
        raise AniraInputError(f"parameter {name}={value!r} must be an integer >= {minimum}")
    return int(value)


def alphabet(size: Any) -> list[str]:
    """The first ``size`` lower-case letters (tokens of the string tasks), validated."""
    size = positive_int("alphabet_size", size, 2)
    if size > 26:
        raise AniraInputError(f"parameter alphabet_size={size} must be <= 26")
    return [chr(ord("a") + i) for i in range(size)]


class ClrsTask(Task):
    """Base of the CLRS-Text tasks (see the module docstring for the three functions).

    ``format`` picks the layout: ``"compact"`` (each task's docstring) or ``"clrs_text"``
    (DeepMind's, :mod:`anira.tasks.clrs.text`); scoring and features go through the compact
    answer either way.
    """

    align: ClassVar[str] = "position"
    # CLRS-Text layout: DeepMind's algorithm name, input field names, output field names, how
    # the answer is written (the kinds of text.write_answer)
    text_name: ClassVar[str]
    text_inputs: ClassVar[tuple[str, ...]]
    text_outputs: ClassVar[tuple[str, ...]]
    text_answer: ClassVar[str] = "array"

    def __init__(self, format: str = "compact") -> None:
        self.layout = text.check_layout(format)

    @abc.abstractmethod
    def sample_input(self, size: int, rng: np.random.Generator) -> dict[str, Any]:
        """A random structured input of the given size."""

    @abc.abstractmethod
    def encode_input(self, inp: dict[str, Any]) -> list[str]:
        """The prompt tokens (everything before ``<ans>``) of the compact layout."""

    @abc.abstractmethod
    def text_values(self, inp: dict[str, Any]) -> list[list[str]]:
        """The CLRS-Text tokens of each input field (``text_inputs``), in order."""

    @abc.abstractmethod
    def compact_vocab(self, max_size: int) -> list[str]:
        """Every token of the compact layout for sizes up to ``max_size``."""

    @abc.abstractmethod
    def solve(self, inp: dict[str, Any]) -> Run:
        """Run the algorithm, recording the features of every answer token as it goes."""

    def vocab_tokens(self, max_size: int) -> list[str]:
        tokens = self.compact_vocab(max_size)
        if self.layout == "clrs_text":
            names = [f"{self.text_name}:", *(f"{f}:" for f in self.text_inputs)]
            names += text.header(self.text_outputs)
            tokens += [t for t in [*text.PUNCTUATION, "0", "1", *names] if t not in tokens]
        return tokens

    def prompt(self, inp: dict[str, Any]) -> list[str]:
        if self.layout == "compact":
            return self.encode_input(inp)
        named = list(zip(self.text_inputs, self.text_values(inp), strict=True))
        return [f"{self.text_name}:", *text.fields(named), *text.header(self.text_outputs)]

    def mask_count(self, inp: dict[str, Any]) -> int:
        """How many items a mask answer covers (text_answer "mask" only)."""
        raise AssertionError(f"{self.name} has no mask answer")

    def mask_order(self, inp: dict[str, Any], items: list[int]) -> list[int]:
        """The selected items of a mask in the compact answer's order."""
        return sorted(items)

    def write(self, inp: dict[str, Any], compact: list[str]) -> tuple[list[str], list[int | None]]:
        """The answer tokens in this task's layout, and the compact token each one writes."""
        if self.layout == "compact":
            return list(compact), list(range(len(compact)))
        count = self.mask_count(inp) if self.text_answer == "mask" else 0
        return text.write_answer(self.text_answer, compact, count)

    def read(self, inp: dict[str, Any], answer: list[str]) -> list[str] | None:
        """The compact answer an answer in this task's layout writes (None when malformed)."""
        if self.layout == "compact":
            return list(answer)
        count = self.mask_count(inp) if self.text_answer == "mask" else 0
        return text.read_answer(
            self.text_answer, answer, count, lambda items: self.mask_order(inp, items)
        )

    def sample(self, size: int, rng: np.random.Generator) -> Example:
        self.check_size(size)
        return self.make_example(self.sample_input(int(size), rng), int(size))

    def make_example(self, inp: dict[str, Any], size: int) -> Example:
        run = self.solve(inp)
        assert set(run.features) == set(self.features), f"{self.name}: features {run.features}"
        prompt = [*self.prompt(inp), ANS]
        answer, origin = self.write(inp, run.answer)
        n_prompt, n_answer = len(prompt), len(answer)
        features = {
            name: [None] * n_prompt
            + [None if o is None else run.features[name][o] for o in origin]
            + [None]
            for name in self.features
        }
        return Example(
            token_str=prompt + answer + [EOS],
            answer_mask=[False] * n_prompt + [True] * (n_answer + 1),
            size=size,
            features=features,
            instance={"input": inp, "output": run.output},
        )

    def is_correct(self, example: Example, generated: list[str]) -> bool:
        if generated[-1:] != [EOS]:
            return False
        compact = self.read(example.instance["input"], generated[:-1])
        return compact is not None and self.valid_answer(example.instance, [*compact, EOS])

    def valid_answer(self, instance: dict[str, Any], generated: list[str]) -> bool:
        """Whether a compact answer (``<eos>`` included) is right; by default, the gold one."""
        return generated == [*self.solve(instance["input"]).answer, EOS]

    def answer_features(self, instance: dict[str, Any], answer: list[str]) -> dict[str, Feature]:
        inp = instance["input"]
        ended = answer[-1:] == [EOS]
        body = answer[:-1] if ended else answer
        compact = self.read(inp, body)  # a readable answer is written exactly as ``write`` does
        if compact is None:
            return {name: [None] * len(answer) for name in self.features}
        origin = self.write(inp, compact)[1]
        along = self.compact_features(instance, compact)
        return {
            name: [None if o is None else values[o] for o in origin] + [None] * ended
            for name, values in along.items()
        }

    def compact_features(self, instance: dict[str, Any], answer: list[str]) -> dict[str, Feature]:
        """Features along a compact answer (without ``<eos>``), by the ``align`` rule."""
        run = self.solve(instance["input"])
        if self.align in ("position", "prefix"):
            keys: list[Any] = list(range(len(answer)))
            agree = len(answer)
            if self.align == "prefix":
                agree = next(
                    (i for i, (a, b) in enumerate(zip(answer, run.answer, strict=False)) if a != b),
                    min(len(answer), len(run.answer)),
                )
            gold = {i: i for i in range(min(agree, len(run.answer)))}
        elif self.align == "value":
            keys = list(answer)
            gold = {}
            for i, tok in enumerate(run.answer):
                gold.setdefault(tok, i)
        elif self.align == "pair":
            keys = [tuple(answer[i - i % 2 : i - i % 2 + 2]) for i in range(len(answer))]
            gold = {}
            for i in range(0, len(run.answer), 2):
                gold.setdefault(tuple(run.answer[i : i + 2]), i)
        else:
            raise AssertionError(f"unknown align rule {self.align!r}")
        out: dict[str, Feature] = {}
        for name in self.features:
            values = run.features[name]
            out[name] = [
                values[gold[key]] if key in gold and tok != EOS else None
                for key, tok in zip(keys, answer, strict=True)
            ]
        return out


# --- graphs ------------------------------------------------------------------------------------


def sample_edges(
    n: int,
    rng: np.random.Generator,
    *,
    mean_degree: float,
    directed: bool = False,
    dag: bool = False,
    connected: bool = False,
) -> list[list[int]]:
    """A sparse Erdős–Rényi graph on nodes ``0 … n-1`` as a sorted edge list.

    Each possible edge is kept with probability ``mean_degree / (n - 1)`` (so a node has
    ``mean_degree`` out-neighbours — neighbours when undirected — on average; CLRS samples dense
    graphs, which would make text inputs quadratic). Undirected edges are listed once as ``[u, v]``
    with ``u < v``. ``dag``: edges point along a random permutation of the nodes, so index order is
    not a topological order. ``connected`` (undirected only): a random spanning tree is added too
    (the mean degree is then about ``mean_degree + 2``).
    """
    if n < 2:
        return []
    p = min(1.0, mean_degree / (n - 1))
    if directed and not dag:
        cand = [(u, v) for u in range(n) for v in range(n) if u != v]
    else:
        cand = [(u, v) for u in range(n) for v in range(u + 1, n)]
    keep = rng.random(len(cand)) < p
    edges = {cand[i] for i in np.flatnonzero(keep)}
    if dag:
        perm = rng.permutation(n)
        edges = {(int(perm[u]), int(perm[v])) for u, v in edges}
    if connected:
        assert not directed, "connected graphs are undirected"
        order = rng.permutation(n)
        for i in range(1, n):
            u, v = int(order[i]), int(order[rng.integers(i)])
            edges.add((min(u, v), max(u, v)))
    return [list(e) for e in sorted(edges)]


def add_weights(edges: list[list[int]], rng: np.random.Generator, max_weight: int) -> None:
    """Append a weight drawn uniformly from ``1 … max_weight - 1`` to every edge, in place."""
    for edge, w in zip(edges, rng.integers(1, max_weight, size=len(edges)), strict=True):
        edge.append(int(w))


def adjacency(n: int, edges: Iterable[Sequence[int]], directed: bool) -> list[list[int]]:
    """Neighbour lists in ascending order (the order every traversal here visits them in)."""
    adj: list[list[int]] = [[] for _ in range(n)]
    for u, v, *_ in edges:
        adj[u].append(v)
        if not directed:
            adj[v].append(u)
    return [sorted(a) for a in adj]


def weighted_adjacency(
    n: int, edges: Iterable[Sequence[int]], directed: bool
) -> list[list[tuple[int, int]]]:
    """``adj[u]`` = sorted ``(v, weight)`` pairs."""
    adj: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for u, v, w in edges:
        adj[u].append((v, w))
        if not directed:
            adj[v].append((u, w))
    return [sorted(a) for a in adj]


def edge_tokens(edges: Iterable[Sequence[int]]) -> list[str]:
    return [str(int(x)) for edge in edges for x in edge]


class GraphTask(ClrsTask):
    """A task on a random graph with ``size`` nodes; numbers are node ids (and weights)."""

    min_size = 2
    directed: ClassVar[bool] = False
    weighted: ClassVar[bool] = False
    dag: ClassVar[bool] = False
    connected: ClassVar[bool] = False
    has_source: ClassVar[bool] = False
    symbols: ClassVar[tuple[str, ...]] = ()

    text_inputs: ClassVar[tuple[str, ...]] = ("A",)  # ("s", "A") with a source
    text_outputs: ClassVar[tuple[str, ...]] = ("pi",)

    def __init__(
        self, mean_degree: float = 2.0, max_weight: int = 10, format: str = "compact"
    ) -> None:
        super().__init__(format)
        if not mean_degree > 0:
            raise AniraInputError(f"parameter mean_degree={mean_degree!r} must be > 0")
        self.mean_degree = float(mean_degree)
        self.max_weight = positive_int("max_weight", max_weight, 2)

    def compact_vocab(self, max_size: int) -> list[str]:
        top = max(max_size + 1, self.max_weight if self.weighted else 0)
        return [ANS, EOS, SEP, *self.symbols, *nums(top)]

    def sample_input(self, size: int, rng: np.random.Generator) -> dict[str, Any]:
        edges = sample_edges(
            size,
            rng,
            mean_degree=self.mean_degree,
            directed=self.directed,
            dag=self.dag,
            connected=self.connected,
        )
        if self.weighted:
            add_weights(edges, rng, self.max_weight)
        inp: dict[str, Any] = {"n": size, "edges": edges}
        if self.has_source:
            inp["source"] = int(rng.integers(size))
        return inp

    def text_values(self, inp: dict[str, Any]) -> list[list[str]]:
        """The source, then the dense adjacency matrix (edge weights, 1 when unweighted)."""
        n = inp["n"]
        dense = [[0] * n for _ in range(n)]
        for u, v, *w in inp["edges"]:
            dense[u][v] = w[0] if w else 1
            if not self.directed:
                dense[v][u] = dense[u][v]
        source = [[str(inp["source"])]] if self.has_source else []
        return [*source, text.matrix(dense)]

    def encode_input(self, inp: dict[str, Any]) -> list[str]:
        """``n | u v [w] u v [w] … [| source]``, edges sorted (``n``: isolated nodes exist)."""
        tokens = [str(inp["n"]), SEP, *edge_tokens(inp["edges"])]
        if self.has_source:
            tokens += [SEP, str(inp["source"])]
        return tokens
