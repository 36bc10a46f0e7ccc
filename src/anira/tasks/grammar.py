"""Probabilistic context-free grammars for LANO: the file format, a seeded cfg3b-like family,
exact length-conditioned sampling, and a probabilistic Earley parser.

Notable features:
- **The grammar is data.** A plain-text, NLTK-style format (below) that anyone can re-parse;
  :func:`PCFG.from_text` validates it and names the first problem it finds.
- **Finite languages on purpose.** Grammars are non-recursive (every derivation has bounded
  depth), so the language is finite, every quantity below is exact, and tests can compare against
  brute-force enumeration of the whole language.
- **Exact sampling at a given length.** A dynamic programme over (symbol, yield length) gives the
  probability that each symbol yields a string of each length; sampling draws a derivation from the
  PCFG *conditioned on* the string's length, with no rejection.
- **One parser pass gives everything.** :meth:`PCFG.parse` runs Stolcke's probabilistic Earley
  algorithm and returns, at every prefix, the exact next-token distribution (prefix probabilities),
  plus the inside probability of the string, its number of parses and its Viterbi (most probable)
  parse tree.

Grammar file format (``*.pcfg``, UTF-8)::

    # comments start with '#'; blank lines are ignored
    S -> A1 A2 [0.6]          # one rule per line: LHS -> RHS symbols [probability]
    S -> A2 'b' A1 [0.4]      # terminals are single-quoted, nonterminals are bare names
    A1 -> 'a' 'b' [1.0]
    A2 -> 'b' 'a' 'a' [1.0]

- the start symbol is the left-hand side of the first rule (as in ``nltk.PCFG.fromstring``);
- nonterminal and terminal names match ``[A-Za-z0-9_]+`` (quoting tells them apart, so cfg3b's
  numbered nonterminals ``22 -> 21 20`` and terminals ``'1' '2' '3'`` keep their published names);
- the probabilities of each nonterminal's rules are in (0, 1] and sum to 1 (within 1e-6);
- a right-hand side has at least one symbol; a one-symbol right-hand side must be a terminal (no
  unit rules), and there are no empty rules;
- every nonterminal used is defined, reachable from the start symbol and terminating (derives some
  terminal string), and no nonterminal derives itself (no recursion).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from anira.io import AniraInputError

_RULE_RE = re.compile(r"^(\S+)\s*->\s*(.*?)\s*\[\s*([^\]]*?)\s*\]$")
_NT_RE = re.compile(r"^[A-Za-z0-9_]+$")
_T_RE = re.compile(r"^'([A-Za-z0-9_]+)'$")
PROB_TOLERANCE = 1e-6
VITERBI_TIE = 1e-9  # relative: products of the same rule probabilities in another order


@dataclass(frozen=True)
class Rule:
    lhs: str
    rhs: tuple[str, ...]
    prob: float


@dataclass
class Tree:
    """A parse tree node: a nonterminal ``label`` with children (subtrees or terminal strings)."""

    label: str
    children: list[Tree | str]

    def leaves(self) -> list[str]:
        out: list[str] = []
        for child in self.children:
            out.extend(child.leaves() if isinstance(child, Tree) else [child])
        return out

    def to_bracket(self) -> str:
        """Bracketed form, e.g. ``(S (A a b) (B c))``."""
        inner = " ".join(c.to_bracket() if isinstance(c, Tree) else c for c in self.children)
        return f"({self.label} {inner})"

    @staticmethod
    def from_bracket(text: str) -> Tree:
        tokens = text.replace("(", " ( ").replace(")", " ) ").split()
        pos = 0

        def node() -> Tree:
            nonlocal pos
            if tokens[pos] != "(":
                raise ValueError(f"expected '(' at token {pos} of {text!r}")
            label, pos = tokens[pos + 1], pos + 2
            children: list[Tree | str] = []
            while tokens[pos] != ")":
                if tokens[pos] == "(":
                    children.append(node())
                else:
                    children.append(tokens[pos])
                    pos += 1
            pos += 1
            return Tree(label, children)

        tree = node()
        if pos != len(tokens):
            raise ValueError(f"trailing tokens in {text!r}")
        return tree


@dataclass
class ParseResult:
    """What one Earley pass over a string ``w`` of length n finds.

    ``next_probs[k]`` (k = 0..n, present only while the prefix ``w[:k]`` is a valid prefix) maps
    each possible next symbol after ``w[:k]`` to its probability P(next | w[:k]) under the PCFG; the
    end of the string is the symbol :data:`END`. ``valid_prefix`` is the largest k such that
    ``w[:k]`` is a prefix of some string of the language.
    """

    tokens: list[str]
    next_probs: list[dict[str, float]]
    valid_prefix: int
    inside: float  # P(w) under the PCFG; 0 when w is not in the language
    n_parses: int
    viterbi: Tree | None
    viterbi_prob: float

    @property
    def accepted(self) -> bool:
        return self.inside > 0.0


END = "$END"


class PCFG:
    """A validated, non-recursive probabilistic context-free grammar (see the module docstring).

    ``rules[0].lhs`` is the start symbol; ``terminals`` names the symbols that are terminals (any
    other right-hand-side symbol must be a defined nonterminal).
    """

    def __init__(self, rules: list[Rule], terminals: set[str]) -> None:
        if not rules:
            raise AniraInputError("grammar has no rules")
        self.rules = list(rules)
        self.start = self.rules[0].lhs
        self._validate(set(terminals))
        self._compile()

    # ----------------------------------------------------------------------------------- format
    @classmethod
    def from_text(cls, text: str, source: str = "grammar") -> PCFG:
        rules: list[Rule] = []
        terminals: set[str] = set()
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"{source} line {lineno}"
            match = _RULE_RE.match(line)
            if match is None:
                raise AniraInputError(
                    f"{where}: malformed rule {raw.strip()!r} "
                    "(expected: LHS -> SYMBOLS [probability])"
                )
            lhs, rhs_text, prob_text = match.groups()
            if not _NT_RE.match(lhs):
                raise AniraInputError(f"{where}: bad nonterminal name {lhs!r}")
            try:
                prob = float(prob_text)
            except ValueError:
                raise AniraInputError(f"{where}: bad probability {prob_text!r}") from None
            rhs: list[str] = []
            for sym in rhs_text.split():
                term = _T_RE.match(sym)
                if term is not None:
                    rhs.append(term.group(1))
                    terminals.add(term.group(1))
                elif _NT_RE.match(sym):
                    rhs.append(sym)
                else:
                    raise AniraInputError(f"{where}: bad symbol {sym!r} (terminals are quoted)")
            if not rhs:
                raise AniraInputError(f"{where}: empty right-hand side for {lhs}")
            rules.append(Rule(lhs, tuple(rhs), prob))
        if not rules:
            raise AniraInputError(f"{source}: no rules found")
        return cls(rules, terminals)

    def to_text(self) -> str:
        """The grammar in the file format; ``PCFG.from_text(g.to_text())`` reproduces ``g``."""
        lines = [
            "# LANO probabilistic context-free grammar (anira). Format: LHS -> SYMBOLS [prob];",
            "# terminals quoted, start symbol = LHS of the first rule. See anira.tasks.grammar.",
        ]
        for rule in self.rules:
            rhs = " ".join(s if s in self.rules_of else f"'{s}'" for s in rule.rhs)
            lines.append(f"{rule.lhs} -> {rhs} [{rule.prob!r}]")
        return "\n".join(lines) + "\n"

    def _reachable(self, symbol: str) -> set[str]:
        """``symbol`` and every nonterminal its derivations can use."""
        reachable, stack = {symbol}, [symbol]
        while stack:
            for rule in self.rules_of[stack.pop()]:
                for sym in rule.rhs:
                    if sym in self.rules_of and sym not in reachable:
                        reachable.add(sym)
                        stack.append(sym)
        return reachable

    def rooted_at(self, symbol: str) -> PCFG:
        """The sub-grammar of the nonterminal ``symbol``: its rules first (so it is the start
        symbol), then the rules of every nonterminal it can reach, in this grammar's order."""
        if symbol not in self.rules_of:
            raise AniraInputError(
                f"{symbol!r} is not a nonterminal of the grammar; nonterminals: "
                f"{', '.join(self.nonterminals)}"
            )
        reachable = self._reachable(symbol)
        rules = self.rules_of[symbol] + [
            r for r in self.rules if r.lhs in reachable and r.lhs != symbol
        ]
        return PCFG(rules, set(self.terminals))

    def mean_length(self) -> float:
        """The expected number of terminals of a string (exact, from the length distribution)."""
        return float(sum(m * p for m, p in self.length_distribution().items()))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_text().encode("utf-8")).hexdigest()

    # ------------------------------------------------------------------------------- validation
    def _validate(self, terminals: set[str]) -> None:
        rules_of: dict[str, list[Rule]] = defaultdict(list)
        for rule in self.rules:
            rules_of[rule.lhs].append(rule)
        self.rules_of = dict(rules_of)
        self.nonterminals = list(self.rules_of)
        both = sorted(terminals & set(self.rules_of))
        if both:
            raise AniraInputError(f"symbol(s) used both as terminal and nonterminal: {both}")
        used: set[str] = set()
        seen: set[tuple[str, tuple[str, ...]]] = set()
        for rule in self.rules:
            if (rule.lhs, rule.rhs) in seen:
                raise AniraInputError(f"duplicate rule {rule.lhs} -> {' '.join(rule.rhs)}")
            seen.add((rule.lhs, rule.rhs))
            if not (0.0 < rule.prob <= 1.0) or not math.isfinite(rule.prob):
                raise AniraInputError(
                    f"rule {rule.lhs} -> {' '.join(rule.rhs)}: probability "
                    f"{rule.prob} is not in (0, 1]"
                )
            if len(rule.rhs) == 1 and rule.rhs[0] in self.rules_of:
                raise AniraInputError(f"unit rule {rule.lhs} -> {rule.rhs[0]} is not supported")
            for sym in rule.rhs:
                if sym not in self.rules_of and sym not in terminals:
                    raise AniraInputError(f"undefined nonterminal {sym} (used by {rule.lhs})")
                used.add(sym)
        self.terminals = sorted(terminals & used)
        for lhs, rules in self.rules_of.items():
            total = sum(r.prob for r in rules)
            if abs(total - 1.0) > PROB_TOLERANCE:
                raise AniraInputError(f"probabilities of {lhs}'s rules sum to {total:.6g}, not 1")
        # terminating (productive) symbols: fixed point from the terminals up
        productive = set(self.terminals)
        changed = True
        while changed:
            changed = False
            for rule in self.rules:
                if rule.lhs not in productive and all(s in productive for s in rule.rhs):
                    productive.add(rule.lhs)
                    changed = True
        dead = [nt for nt in self.nonterminals if nt not in productive]
        if dead:
            raise AniraInputError(f"non-terminating nonterminal(s): {', '.join(dead)}")
        reachable = self._reachable(self.start)
        unreachable = [nt for nt in self.nonterminals if nt not in reachable]
        if unreachable:
            raise AniraInputError(
                f"unreachable nonterminal(s) from {self.start}: {', '.join(unreachable)}"
            )
        # topological order (parents before children); a cycle means recursion
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(nt: str, path: list[str]) -> None:
            if state.get(nt) == 2:
                return
            if state.get(nt) == 1:
                cycle = path[path.index(nt) :] + [nt]
                raise AniraInputError(
                    f"recursive nonterminal(s): {' -> '.join(cycle)} "
                    "(LANO grammars must be non-recursive)"
                )
            state[nt] = 1
            for rule in self.rules_of[nt]:
                for sym in rule.rhs:
                    if sym in self.rules_of:
                        visit(sym, path + [nt])
            state[nt] = 2
            order.append(nt)

        visit(self.start, [])
        self.topo = order[::-1]  # start first; every nonterminal before the symbols it uses

    def _compile(self) -> None:
        """Integer tables for the parser and the length DP."""
        self.nt_index = {nt: i for i, nt in enumerate(self.nonterminals)}
        self.rule_lhs = [r.lhs for r in self.rules]
        self.rules_idx_of = {
            nt: [i for i, r in enumerate(self.rules) if r.lhs == nt] for nt in self.nonterminals
        }
        # length DP: prob_len[X][m] = P(X yields a string of length m), m = 0..max_len
        max_len: dict[str, int] = {t: 1 for t in self.terminals}
        for nt in reversed(self.topo):
            max_len[nt] = max(sum(max_len[s] for s in r.rhs) for r in self.rules_of[nt])
        self.max_length = max_len[self.start]
        size = self.max_length + 1
        self.prob_len: dict[str, np.ndarray] = {}
        for t in self.terminals:
            self.prob_len[t] = np.zeros(size)
            self.prob_len[t][1] = 1.0
        # suffix_len[(rule index, d)][m] = P(rhs[d:] yields length m)
        self.suffix_len: dict[tuple[int, int], np.ndarray] = {}
        for nt in reversed(self.topo):
            total = np.zeros(size)
            for ri in self.rules_idx_of[nt]:
                rhs = self.rules[ri].rhs
                acc = np.zeros(size)
                acc[0] = 1.0
                self.suffix_len[(ri, len(rhs))] = acc.copy()
                for d in range(len(rhs) - 1, -1, -1):
                    acc = np.convolve(self.prob_len[rhs[d]], acc)[:size]
                    self.suffix_len[(ri, d)] = acc
                total += self.rules[ri].prob * acc
            self.prob_len[nt] = total

    # --------------------------------------------------------------------------------- lengths
    def length_distribution(self) -> dict[int, float]:
        """P(length = m) for every m with positive probability."""
        dist = self.prob_len[self.start]
        return {m: float(dist[m]) for m in np.flatnonzero(dist > 0)}

    def count_derivations(self, length: int) -> int:
        """The exact number of derivations whose yield has ``length`` terminals."""
        if not hasattr(self, "_count_len"):
            size = self.max_length + 1
            counts: dict[str, list[int]] = {
                t: [int(m == 1) for m in range(size)] for t in self.terminals
            }
            for nt in reversed(self.topo):
                total = [0] * size
                for rule in self.rules_of[nt]:
                    acc = [1] + [0] * (size - 1)
                    for sym in rule.rhs:
                        acc = [
                            sum(acc[i] * counts[sym][m - i] for i in range(m)) for m in range(size)
                        ]
                    total = [a + b for a, b in zip(total, acc, strict=True)]
                counts[nt] = total
            self._count_len = counts
        return self._count_len[self.start][length] if 0 <= length <= self.max_length else 0

    def strings_of_length(self, length: int) -> set[tuple[str, ...]]:
        """Every string of the language with ``length`` terminals (enumerates derivations: use
        only when :meth:`count_derivations` is small)."""
        memo: dict[tuple[str, int], set[tuple[str, ...]]] = {}

        def yields(symbols: tuple[str, ...], m: int) -> set[tuple[str, ...]]:
            if not symbols:
                return {()} if m == 0 else set()
            head, rest = symbols[0], symbols[1:]
            out: set[tuple[str, ...]] = set()
            for k in range(1, m - len(rest) + 1):
                lefts = of(head, k)
                rights = yields(rest, m - k) if lefts else set()
                out.update(left + right for left in lefts for right in rights)
            return out

        def of(sym: str, m: int) -> set[tuple[str, ...]]:
            if sym not in self.rules_of:
                return {(sym,)} if m == 1 else set()
            if (sym, m) not in memo:
                memo[(sym, m)] = set().union(*(yields(r.rhs, m) for r in self.rules_of[sym]))
            return memo[(sym, m)]

        return of(self.start, length)

    # -------------------------------------------------------------------------------- sampling
    def sample(self, length: int, rng: np.random.Generator) -> Tree:
        """A derivation drawn from the PCFG conditioned on its yield having ``length`` terminals."""
        if not (0 < length <= self.max_length) or self.prob_len[self.start][length] <= 0:
            raise AniraInputError(f"the grammar has no string of length {length}")
        return self._sample_nt(self.start, length, rng)

    def _sample_nt(self, nt: str, length: int, rng: np.random.Generator) -> Tree:
        idx = self.rules_idx_of[nt]
        weights = np.array([self.rules[ri].prob * self.suffix_len[(ri, 0)][length] for ri in idx])
        ri = idx[_draw(weights, rng)]
        rhs = self.rules[ri].rhs
        children: list[Tree | str] = []
        remaining = length
        for d, sym in enumerate(rhs):
            if d == len(rhs) - 1:
                m = remaining
            else:  # split: sym takes m, the rest of the rule takes remaining - m
                rest = self.suffix_len[(ri, d + 1)]
                ms = np.arange(1, remaining)
                m = int(ms[_draw(self.prob_len[sym][ms] * rest[remaining - ms], rng)])
            children.append(self._sample_nt(sym, m, rng) if sym in self.rules_of else sym)
            remaining -= m
        return Tree(nt, children)

    # --------------------------------------------------------------------------------- parsing
    def parse(self, tokens: list[str]) -> ParseResult:
        """Stolcke's probabilistic Earley parser on ``tokens`` (terminal strings).

        Chart items are ``(start, rule, dot)`` at each position k with four values: forward
        probability ``alpha`` (probability of all partial leftmost derivations that reach the item
        having generated ``tokens[:k]``), inner probability ``gamma``, Viterbi probability, and
        number of derivations. Since the grammar has no recursion, no unit and no empty rules,
        prediction is a single pass in topological order and completion a single pass by
        decreasing start. P(next = a | tokens[:k]) = sum of alpha over items at k whose next
        symbol is a, divided by the prefix probability; P(end | tokens[:k]) = P(tokens[:k])
        divided by the prefix probability.

        Viterbi ties (probabilities equal within a relative ``VITERBI_TIE``, since equal products
        of thirds can differ in their last bit): each constituent takes the rule listed first;
        within a rule, the split whose last child starts latest, then the second to last, ...
        """
        rules = self.rules
        n = len(tokens)
        # chart[k]: (start, rule, dot) -> [alpha, gamma, viterbi, count, backpointer]
        chart: list[dict[tuple[int, int, int], list]] = [dict() for _ in range(n + 1)]
        # items at k waiting for a nonterminal / expecting a terminal, by that symbol
        waiting: list[dict[str, list[tuple[int, int, int]]]] = [
            defaultdict(list) for _ in range(n + 1)
        ]
        scans: list[dict[str, list[tuple[int, int, int]]]] = [
            defaultdict(list) for _ in range(n + 1)
        ]
        best_done: dict[tuple[str, int, int], tuple[float, int]] = {}  # (nt, j, k) -> (vit, rule)
        next_probs: list[dict[str, float]] = []
        root: dict[int, tuple[float, int, float, int]] = {}  # k -> (inside, count, vit, rule)
        valid_prefix = 0
        for k in range(n + 1):
            items, wait_k = chart[k], waiting[k]
            # ---- prediction
            need: dict[str, float] = defaultdict(float)
            if k == 0:
                need[self.start] = 1.0
            for nt, keys in wait_k.items():
                need[nt] += sum(items[key][0] for key in keys)
            scan = scans[k]
            for nt in self.topo:
                alpha = need.get(nt, 0.0)
                if alpha <= 0.0:
                    continue
                for ri in self.rules_idx_of[nt]:
                    p = rules[ri].prob
                    key = (k, ri, 0)
                    items[key] = [alpha * p, p, p, 1, -1]
                    first = rules[ri].rhs[0]
                    if first in self.rules_of:
                        need[first] += alpha * p
                        wait_k[first].append(key)
                    else:
                        scan[first].append(key)
            # ---- next-token distribution at k
            dist = {a: sum(items[key][0] for key in keys) for a, keys in scan.items()}
            if k in root:
                dist[END] = root[k][0]
            total = sum(dist.values())
            if total <= 0.0:
                break
            next_probs.append({a: v / total for a, v in sorted(dist.items()) if v > 0})
            valid_prefix = k
            if k == n:
                break
            # ---- scan tokens[k]
            nxt = chart[k + 1]
            done_by_start: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
            for key in scan.get(tokens[k], ()):
                a, g, v, c, _ = items[key]
                new = (key[0], key[1], key[2] + 1)
                nxt[new] = [a, g, v, c, -1]
                self._file(new, waiting[k + 1], scans[k + 1], done_by_start)
            # ---- completion at k + 1, by decreasing start
            for j in range(k, -1, -1):
                keys = done_by_start.pop(j, None)
                if not keys:
                    continue
                agg: dict[str, list] = {}
                for key in keys:
                    _, g, v, c, _ = nxt[key]
                    nt = rules[key[1]].lhs
                    cur = agg.get(nt)
                    if cur is None:
                        agg[nt] = [g, v, c, key[1]]
                    else:
                        cur[0] += g
                        cur[2] += c
                        if _beats(v, cur[1]) or (not _beats(cur[1], v) and key[1] < cur[3]):
                            cur[1], cur[3] = v, key[1]
                for nt, (g_b, v_b, c_b, r_b) in agg.items():
                    best_done[(nt, j, k + 1)] = (v_b, r_b)
                    if nt == self.start and j == 0:
                        root[k + 1] = (g_b, c_b, v_b, r_b)
                    for wkey in waiting[j].get(nt, ()):
                        a, g, v, c, _ = chart[j][wkey]
                        new = (wkey[0], wkey[1], wkey[2] + 1)
                        cur = nxt.get(new)
                        if cur is None:
                            nxt[new] = [a * g_b, g * g_b, v * v_b, c * c_b, j]
                            self._file(new, waiting[k + 1], scans[k + 1], done_by_start)
                        else:
                            cur[0] += a * g_b
                            cur[1] += g * g_b
                            cur[3] += c * c_b
                            if _beats(v * v_b, cur[2]):  # a tie keeps the larger j (first seen)
                                cur[2], cur[4] = v * v_b, j
        inside, n_parses, vit_root, root_rule = root.get(n, (0.0, 0, 0.0, -1))
        accepted = valid_prefix == n and n in root
        return ParseResult(
            tokens=list(tokens),
            next_probs=next_probs,
            valid_prefix=valid_prefix,
            inside=inside if accepted else 0.0,
            n_parses=n_parses if accepted else 0,
            viterbi=self._backtrace(chart, best_done, root_rule, 0, n) if accepted else None,
            viterbi_prob=vit_root if accepted else 0.0,
        )

    def _file(self, key: tuple[int, int, int], waiting_k: dict, scan_k: dict, done: dict) -> None:
        """Index a new item by what it needs next: completion, a nonterminal, or a terminal."""
        rhs = self.rules[key[1]].rhs
        if key[2] == len(rhs):
            done[key[0]].append(key)
        elif rhs[key[2]] in self.rules_of:
            waiting_k[rhs[key[2]]].append(key)
        else:
            scan_k[rhs[key[2]]].append(key)

    def _backtrace(self, chart, best_done, rule: int, start: int, end: int) -> Tree:
        rhs = self.rules[rule].rhs
        children: list[Tree | str] = []
        pos = end
        for d in range(len(rhs), 0, -1):
            sym = rhs[d - 1]
            if sym in self.rules_of:
                j = chart[pos][(start, rule, d)][4]
                children.append(
                    self._backtrace(chart, best_done, best_done[(sym, j, pos)][1], j, pos)
                )
                pos = j
            else:
                children.append(sym)
                pos -= 1
        assert pos == start, "backtrace must end at the constituent's start"
        return Tree(self.rules[rule].lhs, children[::-1])

    def tree_prob(self, tree: Tree) -> float:
        """Probability of a derivation (product of its rule probabilities)."""
        rhs = tuple(c.label if isinstance(c, Tree) else c for c in tree.children)
        prob = {r.rhs: r.prob for r in self.rules_of[tree.label]}[rhs]
        for child in tree.children:
            if isinstance(child, Tree):
                prob *= self.tree_prob(child)
        return prob


def _beats(prob: float, incumbent: float) -> bool:
    """Whether a Viterbi candidate is more probable than the incumbent by more than a tie."""
    return prob > incumbent * (1.0 + VITERBI_TIE)


def _draw(weights: np.ndarray, rng: np.random.Generator) -> int:
    cum = np.cumsum(weights)
    return int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))


def generate_grammar(
    levels: int = 4,
    nts_per_level: int = 3,
    n_terminals: int = 3,
    rules_per_nt: int = 4,
    skip_prob: float = 0.3,
    seed: int = 0,
) -> PCFG:
    """A random cfg3b-like grammar, a deterministic function of its arguments.

    Layout: the start symbol ``S`` (level 0), then ``levels`` levels of ``nts_per_level``
    nonterminals each (level 1 is ``A1 A2 …``, level 2 ``B1 B2 …``), then terminals ``'a' 'b' …``.
    Every nonterminal has ``rules_per_nt`` distinct rules of two or three symbols (equally likely);
    each symbol is drawn uniformly from the next level (terminals below the last level) or, with
    probability ``skip_prob``, from all deeper levels and the terminals, so leaves sit at varying
    depths. Each nonterminal of a level is used by at least one rule of the level above (no
    unreachable symbols). Rule probabilities are drawn from a Dirichlet(4) and rounded to three
    decimals. With few terminals and many rules, short substrings are produced by many different
    constituents: the local structure is ambiguous-looking and the hierarchy decides.

    Example: ``generate_grammar(levels=1, nts_per_level=2, n_terminals=2, rules_per_nt=2,
    skip_prob=0)`` is::

        S -> A2 A1 A1 [0.771]
        S -> A2 A2 A2 [0.229]
        A1 -> 'b' 'b' 'a' [0.613]
        A1 -> 'b' 'a' [0.387]
        A2 -> 'a' 'a' 'a' [0.64]
        A2 -> 'a' 'a' [0.36]
    """
    if levels < 0 or nts_per_level < 1 or rules_per_nt < 1:
        raise AniraInputError("grammar needs levels >= 0, nts_per_level >= 1, rules_per_nt >= 1")
    if not 1 <= n_terminals <= 26:
        raise AniraInputError(f"n_terminals must be in 1..26, got {n_terminals}")
    if levels >= 26:
        raise AniraInputError(f"levels must be below 26, got {levels}")
    if not 0.0 <= skip_prob < 1.0:
        raise AniraInputError(f"skip_prob must be in [0, 1), got {skip_prob}")
    rng = np.random.default_rng(seed)
    terminals = [chr(ord("a") + i) for i in range(n_terminals)]
    by_level = [["S"]] + [
        [f"{chr(ord('A') + lvl)}{i + 1}" for i in range(nts_per_level)] for lvl in range(levels)
    ]
    by_level.append(terminals)
    rules: list[Rule] = []
    for lvl in range(levels + 1):
        below = by_level[lvl + 1]
        deeper = [s for group in by_level[lvl + 2 :] for s in group]
        max_distinct = sum(len(below + deeper) ** m for m in (2, 3))
        if rules_per_nt > max_distinct:
            raise AniraInputError(
                f"rules_per_nt={rules_per_nt} exceeds the {max_distinct} "
                f"distinct rules level {lvl} can have"
            )
        for _attempt in range(1000):
            level_rules: list[tuple[str, tuple[str, ...]]] = []
            for lhs in by_level[lvl]:
                bodies: set[tuple[str, ...]] = set()
                while len(bodies) < rules_per_nt:
                    body = tuple(
                        str(rng.choice(deeper))
                        if deeper and rng.random() < skip_prob
                        else str(rng.choice(below))
                        for _ in range(int(rng.integers(2, 4)))
                    )
                    if body not in bodies:
                        bodies.add(body)
                        level_rules.append((lhs, body))
            used = {s for _, body in level_rules for s in body}
            if lvl == levels or set(below) <= used:
                break
        else:
            raise AniraInputError(
                f"could not cover level {lvl + 1} with {rules_per_nt} rules per "
                "nonterminal; raise rules_per_nt"
            )
        for lhs in by_level[lvl]:
            bodies_of = [body for name, body in level_rules if name == lhs]
            weights = rng.dirichlet(np.full(len(bodies_of), 4.0))
            probs = [round(float(w), 3) for w in weights[:-1]]
            probs = [max(p, 0.001) for p in probs]
            probs.append(round(1.0 - sum(probs), 3))
            if probs[-1] <= 0:  # rounding pushed the last one out: fall back to uniform
                probs = [round(1.0 / len(bodies_of), 3)] * (len(bodies_of) - 1)
                probs.append(round(1.0 - sum(probs), 3))
            rules.extend(Rule(lhs, body, p) for body, p in zip(bodies_of, probs, strict=True))
    return PCFG(rules, set(terminals))
