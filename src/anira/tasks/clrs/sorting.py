"""Sorting, searching and divide-and-conquer tasks of CLRS-Text on arrays of small integers.

Arrays are written one number token per key. Keys are drawn uniformly from ``0 … max_value - 1``
(``max_subarray``: ``-max_value + 1 … max_value - 1``), so repeated keys occur; ``size`` = the array
length.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from anira.tasks.base import ANS, EOS
from anira.tasks.clrs import text
from anira.tasks.clrs.common import SEP, ClrsTask, Run, answer_ints, nums, positive_int, toks
from anira.tasks.registry import register


class ArrayTask(ClrsTask):
    """A task whose input is ``size`` keys in ``0 … max_value - 1``."""

    text_inputs: ClassVar[tuple[str, ...]] = ("key",)
    text_answer = "bare"

    def __init__(self, max_value: int = 100, format: str = "compact") -> None:
        super().__init__(format)
        self.max_value = positive_int("max_value", max_value, 2)

    def text_values(self, inp: dict[str, Any]) -> list[list[str]]:
        return [text.array(inp["keys"])]

    def compact_vocab(self, max_size: int) -> list[str]:
        return [ANS, EOS, SEP, *nums(max(self.max_value, max_size + 1))]

    def sample_input(self, size: int, rng: np.random.Generator) -> dict[str, Any]:
        return {"keys": toks_int(rng.integers(0, self.max_value, size=size))}

    def encode_input(self, inp: dict[str, Any]) -> list[str]:
        return toks(inp["keys"])


def toks_int(values: np.ndarray) -> list[int]:
    return [int(v) for v in values]


def partition(a: list[Any], p: int, r: int) -> int:
    """CLRS PARTITION (Lomuto, pivot ``a[r]``) in place; makes ``r - p`` key comparisons."""
    pivot, i = a[r], p - 1
    for j in range(p, r):
        if a[j] <= pivot:
            i += 1
            a[i], a[j] = a[j], a[i]
    a[i + 1], a[r] = a[r], a[i + 1]
    return i + 1


def insertion_sort(keys: list[int]) -> tuple[list[int], list[int]]:
    """Sorted keys, and for each output position the comparisons made while inserting its key."""
    a = [(k, i) for i, k in enumerate(keys)]
    comparisons = [0] * len(a)  # by original index, counted in the inner loop
    for j in range(1, len(a)):
        item, i = a[j], j - 1
        while i >= 0:
            comparisons[item[1]] += 1
            if a[i][0] <= item[0]:
                break
            a[i + 1] = a[i]
            i -= 1
        a[i + 1] = item
    return [k for k, _ in a], [comparisons[i] for _, i in a]


def bubble_sort(keys: list[int]) -> tuple[list[int], list[int]]:
    """CLRS BUBBLESORT; per position, the pass (1-based) that last wrote it (0: never moved)."""
    a, last_pass = list(keys), [0] * len(keys)
    for i in range(len(a) - 1):
        for j in range(len(a) - 1, i, -1):
            if a[j] < a[j - 1]:
                a[j], a[j - 1] = a[j - 1], a[j]
                last_pass[j] = last_pass[j - 1] = i + 1
    return a, last_pass


def heapsort(keys: list[int]) -> tuple[list[int], list[int]]:
    """CLRS HEAPSORT; per position, the key comparisons made before it received its final key."""
    a, n = list(keys), len(keys)
    fixed = [0] * n
    count = 0

    def heapify(i: int, size: int) -> None:
        nonlocal count
        while True:
            left, right, largest = 2 * i + 1, 2 * i + 2, i
            if left < size:
                count += 1
                if a[left] > a[largest]:
                    largest = left
            if right < size:
                count += 1
                if a[right] > a[largest]:
                    largest = right
            if largest == i:
                return
            a[i], a[largest] = a[largest], a[i]
            i = largest

    for i in range(n // 2 - 1, -1, -1):
        heapify(i, n)
    for i in range(n - 1, 0, -1):
        a[0], a[i] = a[i], a[0]
        fixed[i] = count
        heapify(0, i)
    fixed[0] = count
    return a, fixed


def quicksort(keys: list[int]) -> tuple[list[int], list[int], list[int]]:
    """CLRS QUICKSORT (last-element pivot); per position, the comparisons made before it received
    its final key (as a pivot, or as a one-element subarray) and the recursion depth at that moment.
    """
    a, n = list(keys), len(keys)
    fixed, depth = [0] * n, [0] * n
    count = 0

    def sort(p: int, r: int, d: int) -> None:
        nonlocal count
        if p > r:
            return
        if p == r:
            fixed[p], depth[p] = count, d
            return
        q = partition(a, p, r)
        count += r - p
        fixed[q], depth[q] = count, d
        sort(p, q - 1, d + 1)
        sort(q + 1, r, d + 1)

    sort(0, n - 1, 0)
    return a, fixed, depth


@register
class Sort(ArrayTask):
    """Sort the keys (insertion sort, bubble sort, heapsort and quicksort merged: same I/O).

    ``5 2 9 2 <ans> 2 2 5 9 <eos>``. All four algorithms run on every instance; each contributes
    the state at the moment an output position received its final key:

    - ``insertion_comparisons``: comparisons made while inserting the key that ends at this
      position (= the earlier keys greater than it, plus one unless it went to the front);
    - ``bubble_pass``: the bubble-sort pass (1-based) that last wrote this position (0: never);
    - ``heapsort_comparisons``: heapsort comparisons made before the position was final;
    - ``quicksort_comparisons`` / ``quicksort_depth``: the same for quicksort, and its recursion
      depth at that moment.

    Worked example, ``5 2 9 2`` → ``2 2 5 9``: insertion_comparisons ``1 3 0 1`` (the first 2 is
    the input's second key: one comparison with 5; the second 2 compares with 9, 5 and 2; 5 was
    the first key, inserted with no comparison), bubble_pass ``1 2 2 1``, heapsort_comparisons
    ``6 6 5 3``, quicksort_comparisons ``3 3 4 4``, quicksort_depth ``1 0 1 2`` (the first pivot,
    2, lands at position 1).
    """

    name = "clrs_sort"
    text_name = "insertion_sort"
    text_outputs = ("pred",)
    text_answer = "array"
    features = (
        "insertion_comparisons",
        "bubble_pass",
        "heapsort_comparisons",
        "quicksort_comparisons",
        "quicksort_depth",
    )

    def solve(self, inp: dict[str, Any]) -> Run:
        keys = inp["keys"]
        out, insertion = insertion_sort(keys)
        out_b, bubble = bubble_sort(keys)
        out_h, heap = heapsort(keys)
        out_q, quick, quick_depth = quicksort(keys)
        assert out == out_b == out_h == out_q
        features = {
            "insertion_comparisons": insertion,
            "bubble_pass": bubble,
            "heapsort_comparisons": heap,
            "quicksort_comparisons": quick,
            "quicksort_depth": quick_depth,
        }
        return Run(out, toks(out), features)


@register
class Minimum(ArrayTask):
    """The index of the minimum key (the first one on ties): ``5 2 9 2 <ans> 1 <eos>``.

    Feature ``updates``: how many times the running minimum was replaced during the scan
    (example: 1 — the scan starts at 5 and moves once, to index 1). Any index of a minimum key
    (``3`` here) is scored correct; the feature describes the scan's own answer, so it is null on
    another one.
    """

    name = "clrs_minimum"
    text_name = "minimum"
    text_outputs = ("min",)
    features = ("updates",)
    align = "prefix"

    def solve(self, inp: dict[str, Any]) -> Run:
        keys = inp["keys"]
        best, updates = 0, 0
        for i in range(1, len(keys)):
            if keys[i] < keys[best]:
                best, updates = i, updates + 1
        return Run(best, [str(best)], {"updates": [updates]})

    def valid_answer(self, instance: dict[str, Any], generated: list[str]) -> bool:
        keys = instance["input"]["keys"]
        index = answer_ints(generated)
        return (
            index is not None
            and len(index) == 1
            and 0 <= index[0] < len(keys)
            and keys[index[0]] == keys[instance["output"]]
        )


@register
class BinarySearch(ArrayTask):
    """Where ``x`` belongs in sorted keys: the smallest ``i`` with ``keys[i] >= x`` (``n`` if none).

    Layout ``keys | x``: ``2 5 5 9 | 5 <ans> 1 <eos>``. Feature ``probes``: midpoints compared with
    ``x`` before the search interval closed (example: 3 — probes at indices 2, 1, 0).
    Half of the targets are drawn from the keys, half uniformly.

    The answer is the insertion point, so it is ``n`` when ``x`` exceeds every key; DeepMind's
    ``binary_search`` searches ``0 … n - 1`` and answers ``n - 1`` there. We keep the insertion
    point (a well-defined answer for every target).
    """

    name = "clrs_binary_search"
    text_name = "binary_search"
    text_inputs = ("key", "target")
    text_outputs = ("return",)
    features = ("probes",)

    def sample_input(self, size: int, rng: np.random.Generator) -> dict[str, Any]:
        keys = sorted(toks_int(rng.integers(0, self.max_value, size=size)))
        target = keys[rng.integers(size)] if rng.random() < 0.5 else rng.integers(self.max_value)
        return {"keys": keys, "target": int(target)}

    def encode_input(self, inp: dict[str, Any]) -> list[str]:
        return [*toks(inp["keys"]), SEP, str(inp["target"])]

    def text_values(self, inp: dict[str, Any]) -> list[list[str]]:
        return [text.array(inp["keys"]), [str(inp["target"])]]

    def solve(self, inp: dict[str, Any]) -> Run:
        keys, x = inp["keys"], inp["target"]
        low, high, probes = 0, len(keys), 0
        while low < high:
            mid = (low + high) // 2
            probes += 1
            if keys[mid] < x:
                low = mid + 1
            else:
                high = mid
        return Run(low, [str(low)], {"probes": [probes]})


@register
class Quickselect(ArrayTask):
    """The lower median (the ``(n - 1) // 2``-th smallest key, 0-based): ``5 2 9 2 <ans> 2 <eos>``.

    CLRS RANDOMIZED-SELECT with the deterministic last-element pivot of PARTITION. We ask for the
    lower median; DeepMind's ``quickselect`` asks for the upper one (index ``n // 2``) — the two
    coincide for odd ``n``. Features:
    ``partitions`` (PARTITION calls made before the median was found) and ``comparisons`` (key
    comparisons they made). Example: partitions 1, comparisons 3 (pivot 2 lands at index 1 = k).
    """

    name = "clrs_quickselect"
    text_name = "quickselect"
    text_outputs = ("median",)
    features = ("partitions", "comparisons")

    def solve(self, inp: dict[str, Any]) -> Run:
        a = list(inp["keys"])
        k, p, r = (len(a) - 1) // 2, 0, len(a) - 1
        partitions = comparisons = 0
        while p < r:
            q = partition(a, p, r)
            partitions, comparisons = partitions + 1, comparisons + r - p
            if q == k:
                break
            if k < q:
                r = q - 1
            else:
                p = q + 1
        features = {"partitions": [partitions], "comparisons": [comparisons]}
        return Run(a[k], [str(a[k])], features)


@register
class MaxSubarray(ClrsTask):
    """The maximum-sum contiguous subarray (Kadane), as ``start end`` (inclusive, 0-based).

    Keys in ``-max_value + 1 … max_value - 1`` (one token each, e.g. ``-3``). On ties: the earliest
    end, then the earliest start. ``2 -3 4 -1 2 -9 <ans> 2 4 <eos>`` (4 - 1 + 2 = 5).
    Features, per output field, recorded as the scan rewrites it:
    ``overwrites`` (how many times the field took a new value) and ``fixed_at`` (the scan index at
    which it took its final value). Example: start — overwrites 2, fixed_at 2 (0 at index 0,
    then 2 after the reset at index 2); end — overwrites 3, fixed_at 4 (0, 2, then 4).
    Any subarray of maximum sum is scored correct (zeros and cancelling runs make several); the
    features describe the scan's own fields, so they are null from the first token that differs.
    """

    name = "clrs_max_subarray"
    features = ("overwrites", "fixed_at")
    align = "prefix"

    text_name = "find_maximum_subarray_kadane"
    text_inputs = ("key",)
    text_outputs = ("start", "end")
    text_answer = "fields"

    def __init__(self, max_value: int = 10, format: str = "compact") -> None:
        super().__init__(format)
        self.max_value = positive_int("max_value", max_value, 2)

    def text_values(self, inp: dict[str, Any]) -> list[list[str]]:
        return [text.array(inp["keys"])]

    def compact_vocab(self, max_size: int) -> list[str]:
        values = [str(v) for v in range(-self.max_value + 1, 0)]
        return [ANS, EOS, *values, *nums(max(self.max_value, max_size))]

    def sample_input(self, size: int, rng: np.random.Generator) -> dict[str, Any]:
        m = self.max_value
        return {"keys": toks_int(rng.integers(-m + 1, m, size=size))}

    def encode_input(self, inp: dict[str, Any]) -> list[str]:
        return toks(inp["keys"])

    def solve(self, inp: dict[str, Any]) -> Run:
        best: float = -np.inf
        current, start = 0, 0
        field = {"start": None, "end": None}
        overwrites = {"start": 0, "end": 0}
        fixed_at = {"start": 0, "end": 0}
        for i, x in enumerate(inp["keys"]):
            if current < 0:
                current, start = 0, i
            current += x
            if current > best:
                best = current
                for key, value in (("start", start), ("end", i)):
                    if field[key] != value:
                        field[key], overwrites[key], fixed_at[key] = value, overwrites[key] + 1, i
        out = [field["start"], field["end"]]
        features = {
            "overwrites": [overwrites["start"], overwrites["end"]],
            "fixed_at": [fixed_at["start"], fixed_at["end"]],
        }
        return Run(out, toks(out), features)

    def valid_answer(self, instance: dict[str, Any], generated: list[str]) -> bool:
        keys = instance["input"]["keys"]
        span = answer_ints(generated)
        if span is None or len(span) != 2 or not 0 <= span[0] <= span[1] < len(keys):
            return False
        start, end = instance["output"]
        return sum(keys[span[0] : span[1] + 1]) == sum(keys[start : end + 1])
