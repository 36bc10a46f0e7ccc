"""Computational-geometry tasks of CLRS-Text: segment intersection and convex hull.

Points have integer coordinates in ``0 … coord_range - 1``, written ``x y``; all arithmetic is exact
(integer cross products), so collinear and touching cases are decided exactly.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from anira.io import AniraInputError
from anira.tasks.base import ANS, EOS
from anira.tasks.clrs import text
from anira.tasks.clrs.common import SEP, ClrsTask, Run, nums, pairs_tokens, positive_int, toks
from anira.tasks.registry import register

Point = tuple[int, int]


def cross(o: Point, a: Point, b: Point) -> int:
    """``(a - o) × (b - o)``: > 0 when ``o → a → b`` turns left (counter-clockwise)."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def on_segment(p: Point, q: Point, r: Point) -> bool:
    """CLRS ON-SEGMENT: ``r`` (collinear with ``p q``) lies in the bounding box of ``p q``."""
    return min(p[0], q[0]) <= r[0] <= max(p[0], q[0]) and min(p[1], q[1]) <= r[1] <= max(p[1], q[1])


def segments_intersect(p1: Point, p2: Point, p3: Point, p4: Point) -> tuple[bool, int, int]:
    """CLRS SEGMENTS-INTERSECT: the answer, the tests evaluated (4 directions + ON-SEGMENT calls)
    and how many of those were ON-SEGMENT calls."""
    d1, d2, d3, d4 = cross(p3, p4, p1), cross(p3, p4, p2), cross(p1, p2, p3), cross(p1, p2, p4)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return True, 4, 0
    checks = 0
    for d, (a, b, r) in zip(
        (d1, d2, d3, d4), ((p3, p4, p1), (p3, p4, p2), (p1, p2, p3), (p1, p2, p4)), strict=True
    ):
        if d == 0:
            checks += 1
            if on_segment(a, b, r):
                return True, 4 + checks, checks
    return False, 4 + checks, checks


@register
class SegmentsIntersect(ClrsTask):
    """For each of ``size`` pairs of segments, whether they intersect (``1``) or not (``0``).

    Input: pairs ``x1 y1 x2 y2 x3 y3 x4 y4`` separated by ``|`` (segments ``p1 p2`` and ``p3 p4``;
    touching counts as intersecting).
    ``0 0 2 2 0 2 2 0 | 0 0 1 0 2 0 3 0 | 0 0 1 0 1 0 1 5 <ans> 1 0 1 <eos>`` (crossing; collinear
    but apart; touching at (1, 0)). Features per answer bit, from CLRS SEGMENTS-INTERSECT:
    ``tests`` (direction computations and ON-SEGMENT calls evaluated before it answered; example
    ``4 8 5``) and ``on_segment_checks`` (the ON-SEGMENT calls among them — the collinear special
    cases; example ``0 4 1``).
    """

    name = "clrs_segments_intersect"
    features = ("tests", "on_segment_checks")

    text_name = "segments_intersect"
    text_inputs = ("x", "y")
    text_outputs = ("intersect",)

    def __init__(self, coord_range: int = 10, format: str = "compact") -> None:
        super().__init__(format)
        self.coord_range = positive_int("coord_range", coord_range, 2)

    def text_values(self, inp: dict[str, Any]) -> list[list[str]]:
        """All segment endpoints' x, then y (pair k: entries 4k … 4k + 3)."""
        return [
            text.array([row[i] for row in inp["pairs"] for i in range(a, 8, 2)]) for a in (0, 1)
        ]

    def compact_vocab(self, max_size: int) -> list[str]:
        return [ANS, EOS, SEP, *nums(self.coord_range)]

    def sample_input(self, size: int, rng: np.random.Generator) -> dict[str, Any]:
        coords = rng.integers(0, self.coord_range, size=(size, 8))
        return {"pairs": [[int(c) for c in row] for row in coords]}

    def encode_input(self, inp: dict[str, Any]) -> list[str]:
        tokens: list[str] = []
        for i, row in enumerate(inp["pairs"]):
            tokens += [SEP] * (i > 0) + toks(row)
        return tokens

    def solve(self, inp: dict[str, Any]) -> Run:
        out: list[int] = []
        features: dict[str, list[int]] = {"tests": [], "on_segment_checks": []}
        for row in inp["pairs"]:
            p1, p2, p3, p4 = (tuple(row[i : i + 2]) for i in range(0, 8, 2))
            hit, tests, checks = segments_intersect(p1, p2, p3, p4)
            out.append(int(hit))
            features["tests"].append(tests)
            features["on_segment_checks"].append(checks)
        return Run(out, toks(out), features)


def graham_scan(points: list[Point]) -> tuple[list[int], dict[int, int]]:
    """CLRS GRAHAM-SCAN: hull indices counter-clockwise from the lowest (then leftmost) point, and
    per hull vertex the stack pops performed before it was pushed (it is never popped after)."""
    p0 = min(range(len(points)), key=lambda i: (points[i][1], points[i][0]))
    origin = points[p0]

    def by_angle(a: int, b: int) -> int:
        turn = cross(origin, points[a], points[b])
        if turn:
            return -1 if turn > 0 else 1
        return dist2(origin, points[a]) - dist2(origin, points[b])

    rest = sorted((i for i in range(len(points)) if i != p0), key=functools.cmp_to_key(by_angle))
    # Of points at the same angle keep only the farthest (the last one in sorted order).
    rest = [
        i
        for k, i in enumerate(rest)
        if k + 1 == len(rest) or cross(origin, points[i], points[rest[k + 1]]) != 0
    ]
    stack, pops, pushed_after = [p0], 0, {p0: 0}
    for i in rest:
        while len(stack) >= 2 and cross(points[stack[-2]], points[stack[-1]], points[i]) <= 0:
            stack.pop()
            pops += 1
        stack.append(i)
        pushed_after[i] = pops
    return stack, {i: pushed_after[i] for i in stack}


def dist2(a: Point, b: Point) -> int:
    return (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2


def ahead(p: Point, q: Point, r: Point) -> bool:
    """For ``r`` collinear with ``p q``: it lies beyond ``q`` seen from ``p``."""
    return (q[0] - p[0]) * (r[0] - q[0]) + (q[1] - p[1]) * (r[1] - q[1]) > 0


def jarvis_march(points: list[Point]) -> tuple[list[int], dict[int, int]]:
    """Jarvis's march (gift wrapping) counter-clockwise from the same start as Graham's scan;
    per hull vertex, the orientation tests performed when it was selected."""
    start = min(range(len(points)), key=lambda i: (points[i][1], points[i][0]))
    hull, tests, selected_after = [start], 0, {start: 0}
    while True:
        p = points[hull[-1]]
        q = next(i for i in range(len(points)) if i != hull[-1])
        for r in range(len(points)):
            if r in (hull[-1], q):
                continue
            tests += 1
            turn = cross(p, points[q], points[r])
            if turn < 0 or (turn == 0 and ahead(p, points[q], points[r])):
                q = r
        if q == start:
            return hull, selected_after
        hull.append(q)
        selected_after[q] = tests


@register
class ConvexHull(ClrsTask):
    """The convex hull of distinct points (Graham scan and Jarvis march merged: same I/O).

    Input: ``size`` points ``x y``. Output: the indices of the hull's vertices (corners only, not
    points inside an edge), counter-clockwise from the lowest point (leftmost on ties); all points
    on one line give the line's two ends. This defines the collinear case, which integer grids make
    common (most inputs have three collinear points), so the answer is unique. DeepMind's sampler
    instead resamples inputs until no three points are collinear; that is impossible here for
    sizes beyond ``2 * coord_range`` (no-three-in-line bound), and the paper's test size 64 on a
    16 × 16 grid exceeds it.
    ``0 0 3 0 2 1 3 3 0 3 <ans> 0 1 3 4 <eos>`` (point 2 is inside). Features per vertex:
    ``graham_pops`` (stack pops Graham's scan had made when it pushed the vertex; example
    ``0 0 1 1``) and ``jarvis_tests`` (orientation tests Jarvis's march had made when it selected
    the vertex; example ``0 3 6 9``).
    """

    name = "clrs_convex_hull"
    features = ("graham_pops", "jarvis_tests")
    min_size = 3
    align = "value"

    text_name = "graham_scan"
    text_inputs = ("x", "y")
    text_outputs = ("in_hull",)
    text_answer = "mask"

    def __init__(self, coord_range: int = 16, format: str = "compact") -> None:
        super().__init__(format)
        self.coord_range = positive_int("coord_range", coord_range, 2)

    def text_values(self, inp: dict[str, Any]) -> list[list[str]]:
        return [text.array([p[a] for p in inp["points"]]) for a in (0, 1)]

    def mask_count(self, inp: dict[str, Any]) -> int:
        return len(inp["points"])

    def mask_order(self, inp: dict[str, Any], items: list[int]) -> list[int]:
        """The hull's own order for its vertices (any other set is wrong anyway)."""
        rank = {v: r for r, v in enumerate(self.solve(inp).output)}
        return sorted(items, key=lambda i: (rank.get(i, len(rank)), i))

    def check_size(self, size: int) -> None:
        super().check_size(size)
        if size > self.coord_range**2:
            raise AniraInputError(
                f"task {self.name}: size {size} exceeds the {self.coord_range**2} distinct points "
                f"of coord_range {self.coord_range}"
            )

    def compact_vocab(self, max_size: int) -> list[str]:
        return [ANS, EOS, *nums(max(self.coord_range, max_size))]

    def sample_input(self, size: int, rng: np.random.Generator) -> dict[str, Any]:
        cells = rng.choice(self.coord_range**2, size=size, replace=False)
        return {"points": [[int(c % self.coord_range), int(c // self.coord_range)] for c in cells]}

    def encode_input(self, inp: dict[str, Any]) -> list[str]:
        return pairs_tokens(inp["points"])

    def solve(self, inp: dict[str, Any]) -> Run:
        points = [tuple(p) for p in inp["points"]]
        graham, pops = graham_scan(points)
        jarvis, tests = jarvis_march(points)
        assert graham == jarvis, "Graham scan and Jarvis march disagree"
        features = {
            "graham_pops": [pops[i] for i in graham],
            "jarvis_tests": [tests[i] for i in graham],
        }
        return Run(graham, toks(graham), features)
