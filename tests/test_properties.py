"""Property-based tests (hypothesis) over every registered task at the sizes of its mini scale:
every generated example re-scores as correct, its features recompute from its ``instance``, and
BREVO accepts exactly the permutations of its answer that keep every prerequisite first (networkx
decides). ``derandomize`` keeps the drawn cases fixed, so CI runs are reproducible."""

from __future__ import annotations

import itertools
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from anira.spec import DatasetSpec
from anira.tasks import TASKS
from anira.tasks.base import EOS

CONFIG = Path(__file__).resolve().parents[1] / "config" / "task"
PROPERTY = settings(max_examples=12, deadline=None, derandomize=True)


def mini_task(name: str):
    """The task as a mini dataset builds it, and every size that dataset draws."""
    task_cfg = yaml.safe_load((CONFIG / f"{name}.yaml").read_text())
    spec = DatasetSpec.resolve(task_cfg, "mini")
    task, plan = spec.task, spec.plan
    return task, sorted({size for _, size, _ in plan})


@pytest.mark.parametrize("name", sorted(TASKS))
def test_generated_examples_rescore_and_features_recompute_from_the_instance(name):
    task, sizes = mini_task(name)

    @PROPERTY
    @given(size=st.sampled_from(sizes), seed=st.integers(0, 2**32 - 1))
    def check(size, seed):
        example = task.sample(size, np.random.default_rng(seed))
        answer = example.answer_str
        assert example.size == size and answer[-1] == EOS
        assert task.is_correct(example, answer)
        assert not task.is_correct(example, answer[:-1])  # an answer ends with <eos>
        start = example.answer_mask.index(True)
        assert all(example.answer_mask[start:]) and not any(example.answer_mask[:start])
        recomputed = task.answer_features(example.instance, answer)
        assert recomputed == {k: v[start:] for k, v in example.features.items()}

    check()


def prerequisites_first(edges, order: list[str]) -> bool:
    """networkx: ``order`` lists the query's dependency set, each node after its parents."""
    graph = nx.DiGraph([tuple(e) for e in edges])
    position = {node: i for i, node in enumerate(order)}
    return all(position[p] < position[c] for p, c in graph.subgraph(order).edges)


BREVO, BREVO_SIZES = mini_task("brevo")


@PROPERTY
@given(size=st.sampled_from(BREVO_SIZES), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_brevo_accepts_exactly_the_prerequisite_respecting_permutations(size, seed, data):
    task = BREVO
    example = task.sample(size, np.random.default_rng(seed))
    nodes = example.answer_str[:-1]
    edges, query = example.instance["edges"], example.instance["query"]
    graph = nx.DiGraph([tuple(e) for e in edges])
    assert set(nodes) == nx.ancestors(graph, query) | {query}
    # A random topological order of the dependency set: random priorities in Kahn's algorithm.
    priority = data.draw(st.permutations(range(len(nodes))))
    rank = dict(zip(nodes, priority, strict=True))
    order = list(nx.lexicographical_topological_sort(graph.subgraph(nodes), key=rank.get))
    assert prerequisites_first(edges, order)
    assert task.is_correct(example, [*order, EOS])
    # Any permutation is accepted exactly when it keeps prerequisites first: all of them for a
    # small dependency set, 300 drawn ones otherwise.
    if len(nodes) <= 6:
        permutations = [list(p) for p in itertools.permutations(nodes)]
    else:
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        permutations = [list(rng.permutation(nodes)) for _ in range(300)]
    for shuffled in permutations:
        assert task.is_correct(example, [*shuffled, EOS]) == prerequisites_first(edges, shuffled)
    assert not task.is_correct(example, [*order, order[0], EOS])  # a node twice
    assert not task.is_correct(example, [*order[1:], EOS])  # a node missing
