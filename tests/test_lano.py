"""LANO: grammar format and validation, Earley parser vs brute force, features, scoring."""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
import yaml

from anira.io import AniraInputError
from anira.tasks.base import EOS
from anira.tasks.grammar import END, PCFG, Rule, Tree, generate_grammar
from anira.tasks.lano import GRAMMAR_ARTIFACT, Lano, tree_features
from tests.factories import ROOT
from tests.references import brute_force, brute_next, prefix_mass

# "aba" has three parses: (A a)(B b a), (A a b)(B a) and S -> a b a.
AMBIGUOUS = """
# a tiny ambiguous grammar
S -> A B [0.5]
S -> B A [0.3]
S -> 'a' 'b' 'a' [0.2]
A -> 'a' [0.6]
A -> 'a' 'b' [0.4]
B -> 'b' 'a' [0.7]
B -> 'a' [0.3]
"""


TINY_GRAMMARS = {
    "ambiguous": PCFG.from_text(AMBIGUOUS),
    "gen1": generate_grammar(levels=1, nts_per_level=2, n_terminals=2, rules_per_nt=2, seed=1),
    "gen2": generate_grammar(
        levels=2, nts_per_level=2, n_terminals=2, rules_per_nt=2, skip_prob=0.4, seed=5
    ),
    "gen3": generate_grammar(
        levels=2, nts_per_level=2, n_terminals=2, rules_per_nt=3, skip_prob=0.3, seed=2
    ),
}


@pytest.mark.parametrize("name", sorted(TINY_GRAMMARS))
def test_parser_agrees_with_brute_force(name):
    grammar = TINY_GRAMMARS[name]
    lang = brute_force(grammar)
    mass = prefix_mass(lang)
    assert sum(p for p, _, _ in lang.values()) == pytest.approx(1.0)
    max_len = max(len(s) for s in lang)
    # every string up to the longest length: accepted exactly when it is in the language
    for length in range(1, max_len + 1):
        for string in itertools.product(grammar.terminals, repeat=length):
            if length > 9 and string not in lang:
                continue  # keep the test fast: out-of-language strings are covered up to 9
            result = grammar.parse(list(string))
            assert result.accepted == (string in lang), string
            if string not in lang:
                assert result.inside == 0 and result.n_parses == 0 and result.viterbi is None
                continue
            prob, count, best = lang[string]
            assert result.inside == pytest.approx(prob, rel=1e-12)
            assert result.n_parses == count
            assert result.viterbi_prob == pytest.approx(best, rel=1e-12)
            assert result.viterbi.leaves() == list(string)
            assert grammar.tree_prob(result.viterbi) == pytest.approx(best, rel=1e-12)
            # exact next-token distributions at every prefix, the end of string included
            assert len(result.next_probs) == length + 1
            for k, dist in enumerate(result.next_probs):
                expected = brute_next(mass, string[:k])
                assert dist.keys() == expected.keys(), (string, k)
                for sym, p in expected.items():
                    assert dist[sym] == pytest.approx(p, rel=1e-9, abs=1e-12)


def test_ambiguous_grammar_counts_parses():
    grammar = TINY_GRAMMARS["ambiguous"]
    result = grammar.parse(["a", "b", "a"])
    assert result.n_parses == 3
    # derivations: .5*.6*.7 = .21, .5*.4*.3 = .06, .2 → Viterbi is (S (A a) (B b a))
    assert result.inside == pytest.approx(0.21 + 0.06 + 0.2)
    assert result.viterbi.to_bracket() == "(S (A a) (B b a))"


def test_valid_prefix_of_rejected_strings():
    grammar = TINY_GRAMMARS["ambiguous"]
    lang = brute_force(grammar)
    prefixes = {s[:k] for s in lang for k in range(len(s) + 1)}
    for length in range(1, 6):
        for string in itertools.product(grammar.terminals, repeat=length):
            result = grammar.parse(list(string))
            longest = max(k for k in range(length + 1) if string[:k] in prefixes)
            assert result.valid_prefix == longest, string


def test_length_conditioned_sampling_matches_enumeration():
    grammar = TINY_GRAMMARS["gen3"]
    lang = brute_force(grammar)
    by_len = Counter(len(s) for s in lang)
    length = max(by_len, key=lambda m: (by_len[m], m))
    target = {s: p for s, (p, _, _) in lang.items() if len(s) == length}
    total = sum(target.values())
    assert grammar.length_distribution()[length] == pytest.approx(total)
    rng = np.random.default_rng(0)
    n = 4000
    counts = Counter(tuple(grammar.sample(length, rng).leaves()) for _ in range(n))
    assert set(counts) <= set(target)
    for string, p in target.items():
        expected = p / total
        assert (
            abs(counts[string] / n - expected) < 4 * math.sqrt(expected * (1 - expected) / n) + 1e-3
        )


def test_counts_and_space_size_match_enumeration():
    grammar = TINY_GRAMMARS["gen3"]
    lang = brute_force(grammar)
    for length in range(0, grammar.max_length + 2):
        strings = {s for s in lang if len(s) == length}
        derivations = sum(c for s, (_, c, _) in lang.items() if len(s) == length)
        assert grammar.count_derivations(length) == derivations
        assert grammar.strings_of_length(length) == strings


def test_entropy_feature_matches_brute_force(tmp_path):
    path = tmp_path / "g.pcfg"
    path.write_text(TINY_GRAMMARS["gen3"].to_text())
    task = Lano(grammar_file=str(path))
    mass = prefix_mass(brute_force(task.grammar))
    rng = np.random.default_rng(3)
    for size in sorted(task.grammar.length_distribution()):
        example = task.sample(size, rng)
        string = tuple(example.answer_str[:-1])
        for k in range(len(string) + 1):
            dist = brute_next(mass, string[:k])
            expected = -sum(p * math.log2(p) for p in dist.values())
            assert example.features["entropy"][2 + k] == pytest.approx(expected, abs=1e-9)


# ---------------------------------------------------------------------------------- features
def test_tree_features_worked_example():
    tree = Tree.from_bracket("(S (A a b) (B c (C b a)))")
    assert tree.to_bracket() == "(S (A a b) (B c (C b a)))"
    assert tree_features(tree) == {
        "expansion": [2, 0, 1, 1, 0],
        "reduction": [0, 1, 0, 0, 3],
        "depth": [2, 2, 2, 3, 3],
    }
    flat = Tree.from_bracket("(S a b c)")
    assert tree_features(flat) == {
        "expansion": [1, 0, 0],
        "reduction": [0, 0, 1],
        "depth": [1, 1, 1],
    }


HAND = """
S -> A B [1.0]
A -> 'a' 'b' [1.0]
B -> 'c' C [0.5]
B -> 'c' 'c' [0.5]
C -> 'b' 'a' [1.0]
"""


def test_example_layout_and_features_on_hand_written_grammar(tmp_path):
    path = tmp_path / "hand.pcfg"
    path.write_text(HAND)
    task = Lano(grammar_file=str(path))
    example = task.sample(5, np.random.default_rng(0))
    assert example.token_str == ["<lano>", "<ans>", "a", "b", "c", "b", "a", "<eos>"]
    assert example.answer_mask == [False, False] + [True] * 6
    f = example.features
    assert f["expansion"] == [None, None, 2, 0, 1, 1, 0, None]
    assert f["reduction"] == [None, None, 0, 1, 0, 0, 3, None]
    assert f["depth"] == [None, None, 2, 2, 2, 3, 3, None]
    # next-token entropy: only after "a b" is there a choice (c C or c c → after c: b or c)
    assert f["entropy"] == [None, None, 0, 0, 0, pytest.approx(1.0), 0, 0]
    inst = example.instance
    assert inst["tree"] == "(S (A a b) (B c (C b a)))" == inst["sampled_tree"]
    assert inst["n_parses"] == 1 and inst["log2_prob"] == pytest.approx(-1.0)
    assert inst["valid_next"] == [["a"], ["b"], ["c"], ["b", "c"], ["a"], ["<eos>"]]
    assert inst["best_next"] == ["a", "b", "c", None, "a", "<eos>"]
    assert inst["grammar_sha256"] == task.grammar.sha256
    assert task.artifacts() == {GRAMMAR_ARTIFACT: task.grammar.to_text()}
    assert task.vocab_tokens(5) == ["<lano>", "<ans>", "<eos>", "a", "b", "c"]


def test_features_come_from_the_chosen_parse():
    rng = np.random.default_rng(1)
    viterbi, sampled = Lano(), Lano(parse="sampled")
    differ = 0
    for _ in range(60):
        state = rng.bit_generator.state
        ex_v = viterbi.sample(36, rng)
        rng.bit_generator.state = state
        ex_s = sampled.sample(36, rng)
        assert ex_v.token_str == ex_s.token_str
        inst = ex_v.instance
        assert inst["tree"] == inst["viterbi_tree"]
        assert ex_s.instance["tree"] == ex_s.instance["sampled_tree"] == inst["sampled_tree"]
        for example in (ex_v, ex_s):
            tree_f = tree_features(Tree.from_bracket(example.instance["tree"]))
            for name in ("expansion", "reduction", "depth"):
                assert example.features[name][2:-1] == tree_f[name]
        differ += inst["viterbi_tree"] != inst["sampled_tree"]
    assert differ > 0  # the default grammar is ambiguous enough for the choice to matter


def uniform(grammar: PCFG) -> PCFG:
    """``grammar`` with every nonterminal's rules equally likely: most strings then have several
    parses of exactly the same probability (cfg3b chooses its rules uniformly too)."""
    rules = [Rule(r.lhs, r.rhs, 1.0 / len(grammar.rules_of[r.lhs])) for r in grammar.rules]
    return PCFG(rules, set(grammar.terminals))


def reference_viterbi(grammar: PCFG, string: tuple[str, ...]) -> tuple[Fraction, str]:
    """The Viterbi parse by its definition, over every (symbol, span) with exact rational
    probabilities, so ties are exact: a constituent takes its most probable rule, ties to the rule
    listed first; within a rule the most probable split, ties to the one whose last child starts
    latest, then the second to last, and so on."""
    index = {id(rule): i for i, rule in enumerate(grammar.rules)}

    @functools.cache
    def symbol(sym: str, i: int, k: int) -> tuple[Fraction, str] | None:
        if sym not in grammar.rules_of:
            return (Fraction(1), sym) if k == i + 1 and string[i] == sym else None
        best = None
        for rule in sorted(grammar.rules_of[sym], key=lambda r: index[id(r)]):
            found = children(rule.rhs, len(rule.rhs), i, k)
            if found is None:
                continue
            prob = Fraction(rule.prob) * found[0]
            if best is None or prob > best[0]:
                best = (prob, f"({sym} {' '.join(found[1])})")
        return best

    @functools.cache
    def children(rhs: tuple[str, ...], d: int, i: int, k: int) -> tuple[Fraction, list] | None:
        if d == 0:
            return (Fraction(1), []) if i == k else None
        best = None
        for j in range(k - 1, i - 1, -1):  # the last child's start, latest first
            head, last = children(rhs, d - 1, i, j), symbol(rhs[d - 1], j, k)
            if head is None or last is None:
                continue
            prob = head[0] * last[0]
            if best is None or prob > best[0]:
                best = (prob, [*head[1], last[1]])
        return best

    return symbol(grammar.start, 0, len(string))


TIES = """
S -> 'a' Y [0.25]
S -> Y 'a' [0.25]
S -> A B [0.5]
Y -> 'a' [1.0]
A -> 'a' [0.5]
A -> 'a' 'a' [0.5]
B -> 'a' 'a' [0.5]
B -> 'a' [0.5]
"""

# "a a" has two parses of probability 1/45: (1/3 · 1/5) · 1/3 for the first rule, but
# (1/3 · 1/3) · 1/5 for the second, which is one unit in the last place larger in floating point.
THIRDS = """
S -> Y X [0.3333333333333333]
S -> X Y [0.3333333333333333]
S -> 'c' [0.3333333333333333]
X -> 'a' [0.3333333333333333]
X -> 'b' [0.3333333333333333]
X -> 'c' 'c' [0.3333333333333333]
Y -> 'a' [0.2]
Y -> 'b' [0.2]
Y -> 'c' [0.2]
Y -> 'a' 'b' [0.2]
Y -> 'b' 'a' [0.2]
"""
HAND_TIES = {"ties": TIES, "thirds": THIRDS}


@pytest.mark.parametrize("name", ["ties", "thirds", "ambiguous", "gen2", "gen3"])
def test_viterbi_tie_break_matches_its_definition(name):
    """On grammars full of exact ties (uniform rules, thirds included, whose floating-point
    products differ in the last bit), the Viterbi tree is the one the tie rule defines."""
    grammar = PCFG.from_text(HAND_TIES[name]) if name in HAND_TIES else uniform(TINY_GRAMMARS[name])
    lang = brute_force(grammar)
    several = sorted(s for s, (_, count, _) in lang.items() if count > 1)
    assert several
    # The strings with several parses (a spread of at most 100 of them) and a few with one.
    checked = several[:: -(-len(several) // 100)] + sorted(lang)[:: -(-len(lang) // 10)]
    for string in checked:
        best = lang[string][2]
        prob, bracket = reference_viterbi(grammar, string)
        result = grammar.parse(list(string))
        assert float(prob) == pytest.approx(best, rel=1e-12)
        assert result.viterbi_prob == pytest.approx(best, rel=1e-12)
        assert result.viterbi.to_bracket() == bracket, string
    if name == "ties":
        # "a a": two rules at 1/4 each, the first listed wins; "a a a": two splits of S -> A B at
        # 1/8 each, the one whose last child starts latest wins.
        assert grammar.parse(["a", "a"]).viterbi.to_bracket() == "(S a (Y a))"
        assert grammar.parse(["a"] * 3).viterbi.to_bracket() == "(S (A a a) (B a))"
    if name == "thirds":
        assert grammar.parse(["a", "a"]).viterbi.to_bracket() == "(S (Y a) (X a))"


def bracket_features(bracket: str) -> dict[str, list[float]]:
    """expansion / reduction / depth of each leaf, by one scan of the bracketed tree: a constituent
    opens at "(" and closes at ")"; a leaf's depth is the number of constituents open around it."""
    feats = {"expansion": [], "reduction": [], "depth": []}
    tokens = bracket.replace("(", " ( ").replace(")", " ) ").split()
    starts, pending_open, i = [], 0, 0
    while i < len(tokens):
        if tokens[i] == "(":
            starts.append(len(feats["depth"]))
            pending_open += 1
            i += 2  # skip the label
            continue
        if tokens[i] == ")":
            starts.pop()
            feats["reduction"][-1] += 1
        else:
            feats["expansion"].append(float(pending_open))
            feats["reduction"].append(0.0)
            feats["depth"].append(float(len(starts)))
            pending_open = 0
        i += 1
    return feats


def test_sampled_parse_features_follow_the_generating_derivation(tmp_path):
    """``parse="sampled"`` reads the features off the derivation that generated the string, the
    default off the Viterbi parse; both checked by a scan of the bracketed tree, the Viterbi tree
    against its definition."""
    grammar = uniform(TINY_GRAMMARS["gen3"])
    path = tmp_path / "uniform.pcfg"
    path.write_text(grammar.to_text())
    by_viterbi, by_sample = (
        Lano(grammar_file=str(path)),
        Lano(grammar_file=str(path), parse="sampled"),
    )
    rules = {(r.lhs, r.rhs) for r in grammar.rules}
    lengths = sorted(grammar.length_distribution())
    rng = np.random.default_rng(3)
    differ = 0
    for i in range(40):
        size = lengths[i % len(lengths)]
        state = rng.bit_generator.state
        viterbi = by_viterbi.sample(size, rng)
        rng.bit_generator.state = state
        sampled = by_sample.sample(size, rng)
        string = sampled.answer_str[:-1]
        assert viterbi.token_str == sampled.token_str and len(string) == size
        tree = Tree.from_bracket(sampled.instance["sampled_tree"])
        assert tree.leaves() == string and sampled.instance["tree"] == tree.to_bracket()
        nodes = [tree]
        while nodes:  # the sampled tree is a derivation of the grammar
            node = nodes.pop()
            children = [c.label if isinstance(c, Tree) else c for c in node.children]
            assert (node.label, tuple(children)) in rules
            nodes += [c for c in node.children if isinstance(c, Tree)]
        expected_viterbi = reference_viterbi(grammar, tuple(string))[1]
        assert viterbi.instance["tree"] == expected_viterbi
        for example, bracket in ((sampled, tree.to_bracket()), (viterbi, expected_viterbi)):
            for name, values in bracket_features(bracket).items():
                assert example.features[name] == [None, None, *values, None], name
            gold = by_sample.answer_features(example.instance, example.answer_str)
            assert gold == {k: v[2:] for k, v in example.features.items()}
        differ += sampled.instance["tree"] != viterbi.instance["tree"]
    assert differ > 0


# ------------------------------------------------------------------------- sampling, default
def test_sampled_strings_parse_and_trees_are_consistent():
    task = Lano()
    rng = np.random.default_rng(0)
    for size in (8, 16, 24, 36, 60):
        for _ in range(15):
            example = task.sample(size, rng)
            string = example.answer_str[:-1]
            assert len(string) == size == example.size
            assert set(string) <= set(task.grammar.terminals)
            inst = example.instance
            sampled = Tree.from_bracket(inst["sampled_tree"])
            viterbi = Tree.from_bracket(inst["viterbi_tree"])
            assert sampled.leaves() == string == viterbi.leaves()
            result = task.grammar.parse(string)
            assert result.accepted and result.n_parses == inst["n_parses"] >= 1
            assert task.grammar.tree_prob(sampled) <= result.viterbi_prob * (1 + 1e-12)
            assert task.grammar.tree_prob(viterbi) == pytest.approx(result.viterbi_prob)
            assert math.log2(result.inside) == pytest.approx(inst["log2_prob"])
            assert all(h is not None and h >= 0 for h in example.features["entropy"][2:])
            assert task.is_correct(example, example.answer_str)


def test_sampling_is_deterministic():
    a = [Lano().sample(20, np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    other = Lano(grammar_seed=1).sample(20, np.random.default_rng(7))
    assert other.instance["grammar_sha256"] != a[0].instance["grammar_sha256"]


def test_shipped_grammar_is_the_default_one():
    shipped = (ROOT / "config/grammars/lano_default.pcfg").read_text()
    assert Lano().grammar_text == shipped
    task = Lano(grammar_file=str(ROOT / "config/grammars/lano_default.pcfg"))
    assert task.grammar_sha256 == Lano().grammar_sha256
    again = PCFG.from_text(shipped)
    assert again.to_text() == shipped


# ------------------------------------------------------------------------------------ scoring
def test_is_correct_and_rejection_of_strings_outside_the_language():
    task = Lano()
    lang8 = task.grammar.strings_of_length(8)
    example = task.sample(8, np.random.default_rng(0))
    for string in itertools.product(task.grammar.terminals, repeat=8):
        assert task.is_correct(example, [*string, EOS]) == (string in lang8)
    good = example.answer_str
    assert not task.is_correct(example, good[:-1])  # no <eos>
    assert not task.is_correct(example, [*good[:-1], EOS, EOS])
    assert not task.is_correct(example, ["<lano>", *good])
    assert not task.is_correct(example, [EOS])
    assert task.is_correct(example, [*sorted(task.grammar.strings_of_length(10))[0], EOS])


def test_token_scoring():
    task = Lano()
    rng = np.random.default_rng(4)
    example = task.sample(10, rng)
    gold = example.token_str
    assert task.token_correct(example, gold) == [None, None] + [True] * 11
    string = tuple(gold[2:-1])
    for t in range(2, len(gold)):
        prefix = string[: t - 2]
        for tok in [*task.grammar.terminals, EOS, "<lano>"]:
            predicted = list(gold)
            predicted[t] = tok
            got = task.token_correct(example, predicted)[t]
            if tok == EOS:
                expected = prefix in task.grammar.strings_of_length(len(prefix))
            elif tok == "<lano>":
                expected = False
            else:
                extended = (*prefix, tok)
                expected = task.grammar.parse(list(extended)).valid_prefix == len(extended)
            assert got == expected, (t, tok)
    best = task.token_best_match(example, gold)
    dists = task.grammar.parse(list(string)).next_probs
    for t in range(2, len(gold)):
        dist = dists[t - 2]
        top = sorted(dist.values())[-2:]
        if len(top) == 2 and math.isclose(top[0], top[1]):
            assert best[t] is None
        else:
            mode = max(dist, key=dist.get)
            assert best[t] == ((EOS if mode == END else mode) == gold[t])


def test_generated_validity_and_answer_features():
    task = Lano()
    example = task.sample(12, np.random.default_rng(5))
    gold = example.answer_str
    assert task.generated_token_validity(gold) == [True] * len(gold)
    gold_feats = task.answer_features(example.instance, gold)
    assert gold_feats == {k: v[2:] for k, v in example.features.items()}
    # stop early: the prefix is valid but is not a whole string of the language
    stopped = [*gold[:3], EOS]
    assert task.generated_token_validity(stopped) == [True, True, True, False]
    feats = task.answer_features(example.instance, stopped)
    assert feats["expansion"] == [None] * 4
    assert feats["entropy"] == example.features["entropy"][2:6]
    # a special token inside the string: entropy up to it, nothing after
    odd = [*gold[:2], "<ans>", gold[2], EOS]
    assert task.generated_token_validity(odd) == [True, True, False, False, False]
    feats = task.answer_features(example.instance, odd)
    assert feats["entropy"][:3] == example.features["entropy"][2:5]
    assert feats["entropy"][3:] == [None, None]
    assert feats["depth"] == [None] * 5


# ---------------------------------------------------------------------------------- bad input
BAD_GRAMMARS = {
    "malformed": ("S -> 'a' 'b' 1.0\n", "malformed rule"),
    "bad probability": ("S -> 'a' [x]\n", "bad probability"),
    "probability range": ("S -> 'a' [1.5]\nS -> 'b' [-0.5]\n", "not in (0, 1]"),
    "sum": ("S -> 'a' [0.5]\nS -> 'b' [0.4]\n", "sum to 0.9"),
    "undefined": ("S -> A 'b' [1.0]\n", "undefined nonterminal A"),
    "unreachable": ("S -> 'a' 'b' [1.0]\nB -> 'a' [1.0]\n", "unreachable nonterminal(s) from S: B"),
    "non-terminating": (
        "S -> 'a' [0.5]\nS -> A 'b' [0.5]\nA -> B 'a' [1.0]\nB -> A 'b' [1.0]\n",
        "non-terminating nonterminal(s): A, B",
    ),
    "recursive": ("S -> 'a' [0.5]\nS -> 'b' S [0.5]\n", "recursive"),
    "unit": ("S -> A [1.0]\nA -> 'a' [1.0]\n", "unit rule S -> A"),
    "duplicate": ("S -> 'a' [0.5]\nS -> 'a' [0.5]\n", "duplicate rule"),
    "empty": ("# nothing\n\n", "no rules"),
    "empty rhs": ("S -> [1.0]\n", "empty right-hand side"),
    "bad symbol": ("S -> 'a b' [1.0]\n", "bad symbol"),
    "clash": ("S -> 'A' A [1.0]\nA -> 'a' [1.0]\n", "both as terminal and nonterminal"),
}


@pytest.mark.parametrize("case", sorted(BAD_GRAMMARS))
def test_bad_grammar_files_are_rejected(tmp_path, case):
    text, message = BAD_GRAMMARS[case]
    path = tmp_path / "bad.pcfg"
    path.write_text(text)
    with pytest.raises(AniraInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Lano(grammar_file=str(path))


def test_bad_parameters_and_sizes(tmp_path):
    with pytest.raises(AniraInputError, match="grammar file not found"):
        Lano(grammar_file=str(tmp_path / "missing.pcfg"))
    with pytest.raises(AniraInputError, match="parse must be one of"):
        Lano(parse="best")
    with pytest.raises(AniraInputError, match="skip_prob"):
        Lano(skip_prob=1.0)
    with pytest.raises(AniraInputError, match="n_terminals"):
        Lano(n_terminals=0)
    task = Lano()
    with pytest.raises(AniraInputError, match="below its minimum"):
        task.check_size(0)
    with pytest.raises(AniraInputError, match="no string of length 500"):
        task.check_size(500)
    path = tmp_path / "even.pcfg"
    path.write_text("S -> A A [1.0]\nA -> 'a' 'b' [0.5]\nA -> 'b' 'b' 'a' 'a' [0.5]\n")
    even = Lano(grammar_file=str(path))
    with pytest.raises(AniraInputError, match="no string of length 5"):
        even.sample(5, np.random.default_rng(0))
    assert even.space_size(6) == 2 and even.space_size(4) == 1


CFG3B = ROOT / "config/grammars/cfg3b.pcfg"


def derives(grammar: PCFG, string: list[str]):
    """An independent recognizer: whether ``sym`` derives ``string[i:j]``, by memoised search
    over every split of the span (no chart, no probabilities)."""
    from functools import cache

    @cache
    def span(sym: str, i: int, j: int) -> bool:
        if sym not in grammar.rules_of:
            return j == i + 1 and string[i] == sym
        return any(seq(rule.rhs, i, j) for rule in grammar.rules_of[sym])

    @cache
    def seq(symbols: tuple[str, ...], i: int, j: int) -> bool:
        if len(symbols) == 1:
            return span(symbols[0], i, j)
        return any(
            span(symbols[0], i, k) and seq(symbols[1:], k, j)
            for k in range(i + 1, j - len(symbols) + 2)
        )

    return span(grammar.start, 0, len(string))


def test_cfg3b_is_the_published_grammar_with_its_length_range():
    grammar = PCFG.from_text(CFG3B.read_text())
    assert grammar.start == "22" and grammar.terminals == ["1", "2", "3"]
    assert len(grammar.nonterminals) == 16
    assert all(len(grammar.rules_of[nt]) == 2 for nt in grammar.nonterminals)
    assert all(rule.prob == 0.5 for rule in grammar.rules)
    lengths = grammar.length_distribution()
    assert min(lengths) == 138 and max(lengths) == 432
    assert grammar.mean_length() == pytest.approx(275.625)
    # strictly layered: every rule of a level uses only symbols of the next level
    levels = [{"22"}, {"19", "20", "21"}, {"16", "17", "18"}, {"13", "14", "15"}]
    levels += [{"10", "11", "12"}, {"7", "8", "9"}, {"1", "2", "3"}]
    for upper, lower in itertools.pairwise(levels):
        for nt in upper:
            assert all(set(rule.rhs) <= lower for rule in grammar.rules_of[nt])


def test_sub_grammar_length_distribution_matches_enumeration():
    """Rooted at 13, the sub-grammar's language is small enough to enumerate every derivation:
    the dynamic programme's length distribution and mean must match it exactly."""
    grammar = PCFG.from_text(CFG3B.read_text()).rooted_at("13")
    assert grammar.start == "13" and set(grammar.nonterminals) == {"13", "11", "12", "7", "8", "9"}
    by_length: Counter = Counter()
    for string, (prob, _, _) in brute_force(grammar).items():
        by_length[len(string)] += prob
    exact = grammar.length_distribution()
    assert set(exact) == set(by_length) == set(range(12, 19))
    for m, prob in by_length.items():
        assert exact[m] == pytest.approx(prob)
    assert grammar.mean_length() == pytest.approx(sum(m * p for m, p in by_length.items()))
    with pytest.raises(AniraInputError, match="not a nonterminal"):
        grammar.rooted_at("22")


def test_parser_membership_agrees_with_an_independent_recognizer():
    """On the mini sub-grammar (root 16): sampled strings and single-token edits of them, the
    Earley parser's verdict equals a memoised span recognizer's."""
    task = Lano(grammar_file=str(CFG3B), start=16)
    rng = np.random.default_rng(3)
    lengths = sorted(task.grammar.length_distribution())
    verdicts = Counter()
    for _ in range(12):
        string = task.grammar.sample(int(rng.choice(lengths)), rng).leaves()
        edited = list(string)
        edited[int(rng.integers(len(edited)))] = str(rng.choice(["1", "2", "3"]))
        for candidate in (string, edited, string[:-1], [*string, "1"]):
            expected = derives(task.grammar, candidate)
            assert task.grammar.parse(candidate).accepted == expected
            assert task.is_correct(None, [*candidate, EOS]) == expected
            verdicts[expected] += 1
    assert verdicts[True] >= 12 and verdicts[False] >= 12


def test_natural_length_weights_and_relative_grammar_file():
    task = Lano(grammar_file="grammars/cfg3b.pcfg", start="16")
    assert task.sampling_length() == 73
    dist = task.grammar.length_distribution()
    assert task.size_weights([30, 37, 60]) == [dist[30], dist[37], dist[60]]
    assert task.length_probability(46) == 0.0 and task.length_probability(60) == dist[60]
    assert Lano(grammar_file=str(CFG3B), length_mix="uniform").size_weights([138]) is None
    with pytest.raises(AniraInputError, match="length_mix"):
        Lano(length_mix="skewed")


def test_answer_distributions_match_brute_force():
    task = Lano(grammar_file=str(CFG3B), start=13)
    mass = prefix_mass(brute_force(task.grammar))
    example = task.sample(15, np.random.default_rng(0))
    string = tuple(example.answer_str[:-1])
    dists = task.answer_distributions(example)
    assert len(dists) == len(string) + 1
    for k, dist in enumerate(dists):
        expected = {EOS if a == END else a: p for a, p in brute_next(mass, string[:k]).items()}
        assert dist.keys() == expected.keys()
        for a, p in expected.items():
            assert dist[a] == pytest.approx(p)


def test_config_uses_cfg3b_and_a_documented_mini_sub_grammar():
    from anira.spec import DatasetSpec

    cfg = yaml.safe_load((ROOT / "config/task/lano.yaml").read_text())
    assert cfg["name"] == "lano" and cfg["params"]["grammar_file"] == "grammars/cfg3b.pcfg"
    spec = DatasetSpec.resolve(cfg, "paper")
    paper, paper_plan = spec.task, spec.plan
    assert paper.grammar.start == "22" and paper.grammar.max_length == 432
    spec = DatasetSpec.resolve(cfg, "mini")
    mini, mini_plan = spec.task, spec.plan
    assert mini.grammar.start == "16"
    lengths = mini.grammar.length_distribution()
    assert (min(lengths), max(lengths)) == (30, 72)
    for plan, task in ((paper_plan, paper), (mini_plan, mini)):
        sizes = {split: [s for sp, s, _ in plan if sp == split] for split in ("train", "extrap")}
        # the largest evaluated size is the grammar's longest string: the model's context then
        # covers every sample, so sampling is never cut below the grammar's maximum length
        assert max(sizes["extrap"]) == task.grammar.max_length
        assert sum(n for sp, _, n in plan if sp == "test") >= 500
