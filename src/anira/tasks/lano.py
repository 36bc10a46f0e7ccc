"""LANO: generate a string of a probabilistic context-free grammar (hierarchical structure).

The grammar is a file (``grammar_file``, format in :mod:`anira.tasks.grammar`; a relative path is
read from ``config/``) or a seeded member of a cfg3b-like family
(:func:`anira.tasks.grammar.generate_grammar`), optionally re-rooted at one of its nonterminals
(``start``: the sub-grammar of that symbol). It is saved beside every dataset by
:meth:`Lano.artifacts` so anyone can re-parse the strings; each example records its SHA-256.

The study's grammar is **cfg3b** of *Physics of Language Models, Part 1* (Allen-Zhu & Li, 2023),
shipped as ``config/grammars/cfg3b.pcfg`` from its public transcription: start 22, terminals 1 2 3,
six strictly layered levels, two rules per nonterminal, strings of 138 to 432 terminals, mean
275.6 (exact, from the length dynamic programme). Departures: rule probabilities are not
published, so every rule has probability 1/2 (uniform choice, as the Physics-of-LM generators
draw rules); at scale ``mini`` the sub-grammar rooted at 16 (strings of 30 to 72 terminals, none
of 46 or 47, mean 48.8) stands in for it, since ~276-token strings are too long for a CPU.

Size ``n`` (**ours**) is the string's length in terminals. A string of size ``n`` is a derivation
drawn from the PCFG *conditioned on* its yield having ``n`` terminals (exact, no rejection); sizes
the grammar cannot produce are rejected by :meth:`Lano.check_size`. With ``length_mix: natural``
(default) a dataset's training examples are shared between its sizes in proportion to the
grammar's length distribution (:meth:`Lano.size_weights`), so training on every length of a range
is drawing from the PCFG itself (stratified by length) and the lengths a model samples can be
compared with the grammar's; ``uniform`` gives every size an equal share.

Token layout: the model generates the whole string, so every string token and ``<eos>`` is an
answer token::

    <lano> <ans> w_1 ... w_n <eos>

Per-token features (answer tokens; ``None`` on the prompt, and on ``<eos>`` for the tree features),
read off one parse tree of the string: by default the **Viterbi parse** (the most probable
derivation, found by our Earley parser, ties broken by the rule :meth:`PCFG.parse` states) so that
the features can be recomputed from the string alone; ``parse="sampled"`` uses the derivation
that generated it instead. Both trees and the number of parses are stored in ``instance``.

- ``expansion``: the number of constituents (nonterminal nodes) whose span *starts* at the token;
- ``reduction``: the number of constituents whose span *ends* at the token;
- ``depth``: the number of constituents containing the token (its depth in the tree, root = 1);
- ``entropy``: the true next-token entropy, in bits, of the distribution the token is drawn from:
  H(P(· | w_1..w_{t-1})) under the PCFG over the terminals and the end of the string (``<eos>``),
  from exact prefix probabilities (Stolcke's Earley algorithm). Defined on ``<eos>`` too. It is the
  uncertainty of an ideal model of the grammar that is not told the length.

Worked example, tree ``(S (A a b) (B c (C b a)))`` of the string ``a b c b a``::

    token      a  b  c  b  a  <eos>
    expansion  2  0  1  1  0  None    a opens S and A; c opens B; b opens C
    reduction  0  1  0  0  3  None    b closes A; the last a closes C, B and S
    depth      2  2  2  3  3  None    a is inside S, A; the second b inside S, B, C

Generative evaluation (:mod:`anira.evaluate`): every example has the same prompt, so greedy
decoding would write one string per model; LANO is instead judged on strings *sampled* at
temperature 1, up to the grammar's longest string plus ``<eos>`` (:meth:`Lano.sampling_length`):
their share in the language, share of distinct strings, total-variation distance of their lengths
to the grammar's exact length distribution (:meth:`Lano.length_probability`), completions of gold
prefixes cut at ¼ and ½, and per token of held-out strings the KL between the model's next-token
distribution and the grammar's exact one (:meth:`Lano.answer_distributions`).

Scoring (**ours**). ``is_correct``: the generated answer is ``<eos>``-terminated and the string
before it is in the language (the parser decides); its length is not checked, since the prompt does
not carry it. Per token (:meth:`Lano.token_correct`): a prediction at answer position t is correct
when the gold prefix w_1..w_{t-1} followed by it is still a prefix of some string of the language
(for ``<eos>``: when the prefix is itself a string of the language). Where the grammar's most likely
next token is unique, :meth:`Lano.token_best_match` also reports exact match with it. Both read the
valid and most likely next tokens stored per answer position in ``instance``, so no parser is needed
to score teacher-forced predictions. Validity is lenient: with three terminals most prefixes admit
every terminal (about 88% of answer positions of the default grammar at mini sizes), so a model that
only emits terminals scores high; the exact match with the most likely token is the strict metric.

The generated family's default member (``config/grammars/lano_default.pcfg``, an option, no longer
the study's grammar): 4 levels of 3 nonterminals, 4 rules each, terminals ``a b c``; string lengths
6 to 123; about a third of the strings at mini sizes have more than one parse, and for about one in
ten the Viterbi parse differs from the generating derivation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from anira.compose import CONFIG_DIR
from anira.io import AniraInputError
from anira.tasks.base import ANS, EOS, Example, Task
from anira.tasks.grammar import END, PCFG, ParseResult, Tree, generate_grammar
from anira.tasks.registry import register

BOS = "<lano>"
PROMPT = (BOS, ANS)
PARSES = ("viterbi", "sampled")
LENGTH_MIXES = ("natural", "uniform")
GRAMMAR_ARTIFACT = "grammar.pcfg"
SPACE_ENUMERATION_LIMIT = 20_000  # derivations; above it space_size() reports "unknown"


def tree_features(tree: Tree) -> dict[str, list[int]]:
    """``expansion``, ``reduction`` and ``depth`` of each leaf of ``tree``, left to right."""
    n = len(tree.leaves())
    feats = {"expansion": [0] * n, "reduction": [0] * n, "depth": [0] * n}

    def walk(node: Tree, start: int, depth: int) -> int:
        pos = start
        for child in node.children:
            if isinstance(child, Tree):
                pos = walk(child, pos, depth + 1)
            else:
                feats["depth"][pos] = depth
                pos += 1
        feats["expansion"][start] += 1
        feats["reduction"][pos - 1] += 1
        return pos

    walk(tree, 0, 1)
    return feats


def entropy_bits(dist: dict[str, float]) -> float:
    return max(0.0, float(-sum(p * math.log2(p) for p in dist.values() if p > 0)))


@register
class Lano(Task):
    """Generate a string of a PCFG; complexity from its parse (see the module docstring)."""

    name: ClassVar[str] = "lano"
    features: ClassVar[tuple[str, ...]] = ("expansion", "reduction", "depth", "entropy")
    min_size: ClassVar[int] = 1

    def __init__(
        self,
        levels: int = 4,
        nts_per_level: int = 3,
        n_terminals: int = 3,
        rules_per_nt: int = 4,
        skip_prob: float = 0.3,
        grammar_seed: int = 0,
        grammar_file: str | None = None,
        start: str | int | None = None,
        length_mix: str = "natural",
        parse: str = "viterbi",
    ) -> None:
        if parse not in PARSES:
            raise AniraInputError(f"lano: parse must be one of {PARSES}, got {parse!r}")
        if length_mix not in LENGTH_MIXES:
            raise AniraInputError(
                f"lano: length_mix must be one of {LENGTH_MIXES}, got {length_mix!r}"
            )
        self.parse_choice = parse
        self.length_mix = length_mix
        if grammar_file is not None:
            path = Path(grammar_file)
            if not path.is_absolute():  # shipped grammars: config/grammars/<name>.pcfg
                path = CONFIG_DIR / path
            if not path.is_file():
                raise AniraInputError(f"lano: grammar file not found: {path}")
            self.grammar = PCFG.from_text(path.read_text(encoding="utf-8"), source=str(path))
        else:
            self.grammar = generate_grammar(
                levels=int(levels),
                nts_per_level=int(nts_per_level),
                n_terminals=int(n_terminals),
                rules_per_nt=int(rules_per_nt),
                skip_prob=float(skip_prob),
                seed=int(grammar_seed),
            )
        if start is not None:
            self.grammar = self.grammar.rooted_at(str(start))
        reserved = [t for t in self.grammar.terminals if t.startswith("<")]
        if reserved:
            raise AniraInputError(f"lano: terminal names {reserved} clash with special tokens")
        self.grammar_text = self.grammar.to_text()
        self.grammar_sha256 = self.grammar.sha256

    # ------------------------------------------------------------------------ the interface
    def artifacts(self) -> dict[str, str]:
        """Files to save beside a dataset (name → text): the grammar, re-loadable with
        ``PCFG.from_text`` or ``Lano(grammar_file=...)``."""
        return {GRAMMAR_ARTIFACT: self.grammar_text}

    def vocab_tokens(self, max_size: int) -> list[str]:
        return [BOS, ANS, EOS, *self.grammar.terminals]

    def check_size(self, size: int) -> None:
        super().check_size(size)
        if size > self.grammar.max_length or self.grammar.prob_len[self.grammar.start][size] <= 0:
            lengths = sorted(self.grammar.length_distribution())
            raise AniraInputError(
                f"task lano: the grammar has no string of length {size} (lengths from "
                f"{lengths[0]} to {lengths[-1]}, {len(lengths)} possible)"
            )

    def size_weights(self, sizes: list[int]) -> list[float] | None:
        """``natural``: training lengths in proportion to the grammar's length distribution, so
        the training strings are (stratified) draws of the PCFG itself and a model's sampled
        lengths can be compared with the grammar's; ``uniform``: equal shares."""
        if self.length_mix == "uniform":
            return None
        return [float(self.grammar.prob_len[self.grammar.start][s]) for s in sizes]

    def space_size(self, size: int) -> int | None:
        """Distinct strings of length ``size``, by enumeration when there are few derivations."""
        if self.grammar.count_derivations(size) > SPACE_ENUMERATION_LIMIT:
            return None
        return len(self.grammar.strings_of_length(size))

    def sample(self, size: int, rng: np.random.Generator) -> Example:
        self.check_size(size)
        sampled = self.grammar.sample(int(size), rng)
        string = sampled.leaves()
        result = self.grammar.parse(string)
        assert result.accepted and result.viterbi is not None, "a sampled string must parse"
        tree = result.viterbi if self.parse_choice == "viterbi" else sampled
        answer_feats = self._answer_features(result, tree)
        features = {k: [None] * len(PROMPT) + v for k, v in answer_feats.items()}
        valid_next, best_next = [], []
        for dist in result.next_probs:
            valid_next.append(sorted(_token(a) for a in dist))
            top = max(dist.values())
            best = [a for a, p in dist.items() if p >= top * (1 - 1e-9)]
            best_next.append(_token(best[0]) if len(best) == 1 else None)
        instance = {
            "grammar_sha256": self.grammar_sha256,
            "length": len(string),
            "parse": self.parse_choice,
            "tree": tree.to_bracket(),
            "viterbi_tree": result.viterbi.to_bracket(),
            "sampled_tree": sampled.to_bracket(),
            "n_parses": int(result.n_parses),
            "log2_prob": math.log2(result.inside),
            "valid_next": valid_next,
            "best_next": best_next,
        }
        return Example(
            token_str=[*PROMPT, *string, EOS],
            answer_mask=[False] * len(PROMPT) + [True] * (len(string) + 1),
            size=int(size),
            features=features,
            instance=instance,
        )

    def is_correct(self, example: Example, generated: list[str]) -> bool:
        """The answer is one string of the language followed by ``<eos>`` (any length)."""
        if not generated or generated[-1] != EOS:
            return False
        string = generated[:-1]
        if any(t not in self.grammar.terminals for t in string):
            return False
        return self.grammar.parse(string).accepted

    def answer_features(
        self, instance: dict[str, Any], answer: list[str]
    ) -> dict[str, list[float | None]]:
        """Features along an emitted answer: ``entropy`` wherever the prefix before the token is
        valid; the tree features only when the whole answer is a string of the language plus
        ``<eos>`` (Viterbi parse of the answer, or the stored tree when it is the gold string)."""
        string = answer[:-1] if answer and answer[-1] == EOS else list(answer)
        cut = _first_non_terminal(string, self.grammar.terminals)
        result = self.grammar.parse(string[:cut])
        tree = result.viterbi if cut == len(string) else None
        gold = Tree.from_bracket(instance["tree"]) if "tree" in instance else None
        if tree is not None and gold is not None and gold.leaves() == string:
            tree = gold
        n = len(answer)
        return {k: (v + [None] * n)[:n] for k, v in self._answer_features(result, tree).items()}

    # ------------------------------------------------------------------ generative evaluation
    def sampling_length(self) -> int:
        """Sampled answers may run to the grammar's longest string plus ``<eos>``: no cut-off
        below it."""
        return self.grammar.max_length + 1

    def length_probability(self, length: int) -> float:
        """P(a string of the grammar has ``length`` terminals), exact."""
        dist = self.grammar.prob_len[self.grammar.start]
        return float(dist[length]) if 0 <= length < len(dist) else 0.0

    def answer_distributions(self, example: Example) -> list[dict[str, float]]:
        """The grammar's exact next-token distribution after each prefix of the gold string (one
        per answer token: every terminal and ``<eos>``), from the parser's prefix probabilities."""
        string = example.answer_str[:-1]
        result = self.grammar.parse(string)
        assert result.accepted, "a LANO example's string is in the language"
        return [{_token(a): p for a, p in dist.items()} for dist in result.next_probs]

    # ----------------------------------------------------------------------- token scoring
    def token_correct(self, example: Example, predicted: list[str]) -> list[bool | None]:
        """Per position of ``example.token_str``: whether ``predicted[t]`` (the model's prediction
        of token t from the gold prefix) keeps the prefix valid; ``None`` on prompt positions."""
        return self._score(
            example, predicted, lambda i, tok: tok in example.instance["valid_next"][i]
        )

    def token_best_match(self, example: Example, predicted: list[str]) -> list[bool | None]:
        """Per position: whether ``predicted[t]`` is the grammar's most likely next token; ``None``
        on prompt positions and where that token is not unique."""
        best = example.instance["best_next"]
        return self._score(
            example, predicted, lambda i, tok: None if best[i] is None else tok == best[i]
        )

    def generated_token_validity(self, generated: list[str]) -> list[bool]:
        """Along a generated answer: token i is valid when ``generated[:i + 1]`` is still a prefix
        of some string of the language followed by ``<eos>`` (all tokens after an invalid one are
        invalid)."""
        string = generated[:-1] if generated and generated[-1] == EOS else list(generated)
        cut = _first_non_terminal(string, self.grammar.terminals)
        result = self.grammar.parse(string[:cut])
        valid = [i < result.valid_prefix for i in range(len(string))]
        if generated and generated[-1] == EOS:
            valid.append(result.accepted and cut == len(string))
        return valid

    # ------------------------------------------------------------------------------ helpers
    def _answer_features(self, result: ParseResult, tree: Tree | None) -> dict[str, list]:
        n = len(tree.leaves()) if tree is not None else len(result.tokens)
        feats: dict[str, list] = {
            "expansion": [None] * (n + 1),
            "reduction": [None] * (n + 1),
            "depth": [None] * (n + 1),
        }
        if tree is not None:
            for name, values in tree_features(tree).items():
                feats[name] = [float(v) for v in values] + [None]
        entropy = [entropy_bits(d) for d in result.next_probs]
        feats["entropy"] = entropy + [None] * (n + 1 - len(entropy))
        return feats

    def _score(self, example: Example, predicted: list[str], judge) -> list[bool | None]:
        if len(predicted) != len(example.token_str):
            raise ValueError("predicted must align with example.token_str")
        first = example.answer_mask.index(True)
        return [
            None if not is_answer else judge(t - first, predicted[t])
            for t, is_answer in enumerate(example.answer_mask)
        ]


def _token(symbol: str) -> str:
    return EOS if symbol == END else symbol


def _first_non_terminal(string: list[str], terminals: list[str]) -> int:
    """Index of the first token of ``string`` that is not a terminal (``len(string)`` if none)."""
    return next((i for i, t in enumerate(string) if t not in terminals), len(string))
