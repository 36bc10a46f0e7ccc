"""Greedy tasks of CLRS-Text: activity selection and unit-time task scheduling.

Both answer with the indices the greedy algorithm accepts, in the order it accepts them, and share
two features recorded as the greedy scan runs: ``scan_step`` (1-based position, in the greedy's
order, of the candidate when it was accepted) and ``rejected_before`` (candidates rejected since
the previous acceptance).

Several optimal selections often exist (equal finish times, equal penalties). Any optimal one is
scored correct when written in the greedy's offering order (sorted by the greedy's key, ties by
index) — DeepMind's code breaks ties differently and returns another optimal set. Features are
those the run recorded for each item the greedy accepted, null on an item it did not accept.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from anira.tasks.base import ANS, EOS
from anira.tasks.clrs import text
from anira.tasks.clrs.common import (
    ClrsTask,
    Run,
    answer_ints,
    nums,
    pairs_tokens,
    positive_int,
    toks,
)
from anira.tasks.registry import register


def greedy_scan(order: list[int], accept: Callable[[int], bool]) -> tuple[list[int], dict]:
    """Offer candidates in ``order``; record the state at each acceptance."""
    chosen: list[int] = []
    features: dict[str, list[int]] = {"scan_step": [], "rejected_before": []}
    rejected = 0
    for step, i in enumerate(order, start=1):
        if accept(i):
            chosen.append(i)
            features["scan_step"].append(step)
            features["rejected_before"].append(rejected)
            rejected = 0
        else:
            rejected += 1
    return chosen, features


class GreedyTask(ClrsTask):
    """A greedy selection answered in offering order; any optimal selection is correct."""

    align = "value"
    items: ClassVar[str]  # the input field listing the candidates

    @abc.abstractmethod
    def offer_key(self, inp: dict[str, Any], i: int) -> tuple:
        """The greedy's sort key for candidate ``i`` (the index last, so ties are total)."""

    @abc.abstractmethod
    def feasible_value(self, inp: dict[str, Any], chosen: list[int]) -> int | None:
        """The objective of a selection of distinct candidates, None when it is infeasible."""

    def offer_order(self, inp: dict[str, Any], count: int) -> list[int]:
        return sorted(range(count), key=lambda i: self.offer_key(inp, i))

    text_answer = "mask"
    text_outputs = ("selected",)

    def mask_count(self, inp: dict[str, Any]) -> int:
        return len(inp[self.items])

    def mask_order(self, inp: dict[str, Any], items: list[int]) -> list[int]:
        return sorted(items, key=lambda i: self.offer_key(inp, i))

    def text_values(self, inp: dict[str, Any]) -> list[list[str]]:
        return [text.array(column) for column in zip(*inp[self.items], strict=True)]

    def valid_answer(self, instance: dict[str, Any], generated: list[str]) -> bool:
        inp, gold = instance["input"], instance["output"]
        chosen = answer_ints(generated)
        count = len(inp[self.items])
        if chosen is None or len(set(chosen)) < len(chosen):
            return False
        if not all(0 <= i < count for i in chosen):
            return False
        if sorted(chosen, key=lambda i: self.offer_key(inp, i)) != chosen:
            return False
        value = self.feasible_value(inp, chosen)
        return value is not None and value == self.feasible_value(inp, gold)


@register
class ActivitySelector(GreedyTask):
    """A maximum set of mutually compatible activities (CLRS GREEDY-ACTIVITY-SELECTOR).

    Input: ``size`` activities as ``start finish`` pairs (``0 <= start < finish <= max_time``);
    activities ``[s, f)`` are compatible when they do not overlap. Output: the selected indices in
    selection order (by finish time, ties by index). ``1 4 3 5 0 6 5 7 <ans> 0 3 <eos>``.
    Features (module docstring): scan_step ``1 4``, rejected_before ``0 2``. Here ``1 3`` is
    another maximum set and is scored correct too.
    """

    name = "clrs_activity_selector"
    features = ("scan_step", "rejected_before")
    items = "activities"

    text_name = "activity_selector"
    text_inputs = ("s", "f")

    def __init__(self, max_time: int = 20, format: str = "compact") -> None:
        super().__init__(format)
        self.max_time = positive_int("max_time", max_time, 2)

    def compact_vocab(self, max_size: int) -> list[str]:
        return [ANS, EOS, *nums(max(self.max_time + 1, max_size))]

    def sample_input(self, size: int, rng: np.random.Generator) -> dict[str, Any]:
        start = rng.integers(0, self.max_time, size=size)
        finish = [int(rng.integers(s + 1, self.max_time + 1)) for s in start]
        return {"activities": [[int(s), f] for s, f in zip(start, finish, strict=True)]}

    def encode_input(self, inp: dict[str, Any]) -> list[str]:
        return pairs_tokens(inp["activities"])

    def solve(self, inp: dict[str, Any]) -> Run:
        acts = inp["activities"]
        free_from = -1  # finish time of the last selected activity

        def accept(i: int) -> bool:
            nonlocal free_from
            if acts[i][0] < free_from:
                return False
            free_from = acts[i][1]
            return True

        chosen, features = greedy_scan(self.offer_order(inp, len(acts)), accept)
        return Run(chosen, toks(chosen), features)

    def offer_key(self, inp: dict[str, Any], i: int) -> tuple:
        return inp["activities"][i][1], i

    def feasible_value(self, inp: dict[str, Any], chosen: list[int]) -> int | None:
        """Activities in finish order are compatible when each starts after the previous ends."""
        acts = [inp["activities"][i] for i in chosen]
        compatible = all(a[1] <= b[0] for a, b in zip(acts, acts[1:], strict=False))
        return len(chosen) if compatible else None


@register
class TaskScheduling(GreedyTask):
    """Unit-time tasks with deadlines and penalties (CLRS §16.5): the tasks scheduled on time.

    Input: ``size`` tasks as ``deadline penalty`` pairs (deadline in ``1 … size``, penalty in
    ``1 … max_penalty - 1``). The greedy offers tasks by decreasing penalty (ties by index) and
    accepts one when the accepted set can still all meet their deadlines — checked by keeping the
    latest free time slot at or before each deadline. Output: accepted indices in acceptance order.
    ``1 5 1 7 2 3 <ans> 1 2 <eos>`` (task 0 would be late). Features: scan_step ``1 3``,
    rejected_before ``0 1`` (module docstring) and ``free_slots`` (free slots at or before the
    task's deadline just before it was accepted; example ``1 1``). Any set of tasks that can all
    be on time with the largest total penalty is scored correct.

    This is the textbook greedy, which is optimal (the on-time sets form a matroid). DeepMind's
    ``task_scheduling`` accepts a task only when its deadline exceeds the number already accepted,
    which rejects feasible tasks and returns a suboptimal set on most random inputs; we keep the
    textbook algorithm.
    """

    name = "clrs_task_scheduling"
    features = ("scan_step", "rejected_before", "free_slots")
    items = "tasks"

    text_name = "task_scheduling"
    text_inputs = ("d", "w")

    def __init__(self, max_penalty: int = 10, format: str = "compact") -> None:
        super().__init__(format)
        self.max_penalty = positive_int("max_penalty", max_penalty, 2)

    def compact_vocab(self, max_size: int) -> list[str]:
        return [ANS, EOS, *nums(max(self.max_penalty, max_size + 1))]

    def sample_input(self, size: int, rng: np.random.Generator) -> dict[str, Any]:
        deadline = rng.integers(1, size + 1, size=size)
        penalty = rng.integers(1, self.max_penalty, size=size)
        return {"tasks": [[int(d), int(w)] for d, w in zip(deadline, penalty, strict=True)]}

    def encode_input(self, inp: dict[str, Any]) -> list[str]:
        return pairs_tokens(inp["tasks"])

    def solve(self, inp: dict[str, Any]) -> Run:
        tasks = inp["tasks"]
        busy = [False] * (len(tasks) + 1)  # busy[t]: slot t (1-based) is taken
        free_slots: list[int] = []

        def accept(i: int) -> bool:
            deadline = min(tasks[i][0], len(tasks))
            free = [t for t in range(1, deadline + 1) if not busy[t]]
            if not free:
                return False
            free_slots.append(len(free))
            busy[free[-1]] = True
            return True

        chosen, features = greedy_scan(self.offer_order(inp, len(tasks)), accept)
        return Run(chosen, toks(chosen), {**features, "free_slots": free_slots})

    def offer_key(self, inp: dict[str, Any], i: int) -> tuple:
        return -inp["tasks"][i][1], i

    def feasible_value(self, inp: dict[str, Any], chosen: list[int]) -> int | None:
        """Unit tasks can all be on time when the t-th earliest deadline is at least t."""
        deadlines = sorted(inp["tasks"][i][0] for i in chosen)
        if any(d < t for t, d in enumerate(deadlines, start=1)):
            return None
        return sum(inp["tasks"][i][1] for i in chosen)
