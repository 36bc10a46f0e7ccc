"""String matching (CLRS naive matcher and Knuth–Morris–Pratt merged: same input and output)."""

from __future__ import annotations

from typing import Any

import numpy as np

from anira.tasks.base import ANS, EOS
from anira.tasks.clrs import text
from anira.tasks.clrs.common import SEP, ClrsTask, Run, alphabet, nums, toks
from anira.tasks.registry import register


def naive_matcher(text: list[str], pattern: list[str]) -> dict[int, int]:
    """CLRS NAIVE-STRING-MATCHER: shift → character comparisons made when it was reported."""
    found, comparisons, m = {}, 0, len(pattern)
    for s in range(len(text) - m + 1):
        q = 0
        while q < m:
            comparisons += 1
            if text[s + q] != pattern[q]:
                break
            q += 1
        if q == m:
            found[s] = comparisons
    return found


def kmp_matcher(text: list[str], pattern: list[str]) -> dict[int, int]:
    """CLRS KMP-MATCHER: shift → character comparisons (prefix function included) when reported."""
    m, comparisons = len(pattern), 0

    def advance(q: int, char: str, prefix: list[int]) -> int:
        """One step of the automaton: the longest prefix of the pattern matched after ``char``."""
        nonlocal comparisons
        while q > 0:
            comparisons += 1
            if pattern[q] == char:
                break
            q = prefix[q - 1]
        comparisons += 1
        return q + 1 if pattern[q] == char else q

    prefix = [0] * m
    for q in range(1, m):
        prefix[q] = advance(prefix[q - 1], pattern[q], prefix)
    found, q = {}, 0
    for i, char in enumerate(text):
        q = advance(q, char, prefix)
        if q == m:
            found[i - m + 1] = comparisons
            q = prefix[q - 1]
    return found


@register
class StringMatcher(ClrsTask):
    """Every shift at which a pattern occurs in a text, ascending (possibly none).

    Input ``text | pattern`` over the first ``alphabet_size`` letters; ``size`` = the text length,
    the pattern has ``max(1, size // 4)`` letters and is planted once at a random shift (more
    occurrences happen by chance). Every shift is listed; DeepMind's matchers return the first one
    only — we keep all (the textbook matchers report every shift).
    ``a b a b a | a b a <ans> 0 2 <eos>``. Features per shift:
    ``naive_comparisons`` and ``kmp_comparisons`` — character comparisons each matcher had made
    when it reported the shift (KMP's include the 2 of its prefix function here; the ``while`` test
    and the ``if`` after it each count, as in CLRS's pseudocode); example ``3 7`` and ``7 11``.
    """

    name = "clrs_string_matcher"
    features = ("naive_comparisons", "kmp_comparisons")
    align = "value"

    text_name = "naive_string_matcher"
    text_inputs = ("string", "key")
    text_outputs = ("match",)

    def __init__(self, alphabet_size: int = 4, format: str = "compact") -> None:
        super().__init__(format)
        self.letters = alphabet(alphabet_size)

    def text_values(self, inp: dict[str, Any]) -> list[list[str]]:
        t, pat = inp["text"], inp["pattern"]
        return [text.array([0] * len(t) + [1] * len(pat)), text.array([*t, *pat])]

    def compact_vocab(self, max_size: int) -> list[str]:
        return [ANS, EOS, SEP, *self.letters, *nums(max_size)]

    def sample_input(self, size: int, rng: np.random.Generator) -> dict[str, Any]:
        m = max(1, size // 4)
        text = [self.letters[c] for c in rng.integers(len(self.letters), size=size)]
        pattern = [self.letters[c] for c in rng.integers(len(self.letters), size=m)]
        shift = int(rng.integers(size - m + 1))
        text[shift : shift + m] = pattern
        return {"text": text, "pattern": pattern}

    def encode_input(self, inp: dict[str, Any]) -> list[str]:
        return [*inp["text"], SEP, *inp["pattern"]]

    def solve(self, inp: dict[str, Any]) -> Run:
        naive = naive_matcher(inp["text"], inp["pattern"])
        kmp = kmp_matcher(inp["text"], inp["pattern"])
        assert list(naive) == list(kmp), "naive and KMP matchers disagree"
        out = list(naive)
        features = {
            "naive_comparisons": [naive[s] for s in out],
            "kmp_comparisons": [kmp[s] for s in out],
        }
        return Run(out, toks(out), features)
