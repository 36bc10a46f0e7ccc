"""DeepMind's CLRS-Text layout, selectable per task with ``task.params.format: clrs_text``.

CLRS-Text (Markeeva et al., 2024) writes an example as ``algo:`` then the input fields
``name: value`` separated by commas, then the output's field names and ``:``; the answer is the
output value. Arrays are bracketed (``key: [5 2 9 2]``), graphs are dense adjacency matrices
(``A: [[0 1], [1 0]]``, weights for weighted graphs), single positions are bare numbers and node
sets are 0/1 masks (``is_cut: [0 1 0 0]``). Traces are left out, as the paper does. Each token is
a number, a letter, one of ``[ ] ,`` or a field name with its colon, so ``key: [5 2]`` is the
tokens ``key: [ 5 2 ]``.

Field and algorithm names are DeepMind's (a merged task takes the name of its first algorithm,
e.g. ``insertion_sort``). The answer's content is the compact layout's, written in CLRS-Text's
syntax, and scored and featured through it; that content departs from DeepMind's output fields
where our task asks for the natural text answer: a topological order (DeepMind: a linked list of
pointers), bridges and spanning-tree edges as ``u v`` pairs (DeepMind: n × n edge masks), the
interval DPs' trees in preorder (DeepMind: the split/root tables), the common subsequence itself
(DeepMind: the arrow table), every match shift (DeepMind: the first), the median's value
(DeepMind: its position). Node sets that DeepMind writes as masks are masks here too
(articulation points, selected activities and tasks, hull vertices).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from anira.io import AniraInputError

SEP = "|"  # compact layout: separates sections of a prompt (and rows of a matrix answer)

LAYOUTS = ("compact", "clrs_text")
OPEN, CLOSE, COMMA = "[", "]", ","
PUNCTUATION = [OPEN, CLOSE, COMMA]

# How the compact answer is written (ClrsTask.text_answer, the ``kind`` below):
#   "bare": the tokens as they are (a position, a value);
#   "fields": one bare token per output field, comma-separated (``start , end``);
#   "array": one bracketed array; "matrix": rows (split by ``|`` in the compact layout) bracketed;
#   "mask": the answer's items (node or item indices) as a 0/1 mask over all of them.

Origin = list[int | None]  # per text token: the compact answer token it writes, None for syntax


def check_layout(value: Any) -> str:
    if value not in LAYOUTS:
        raise AniraInputError(f"parameter format={value!r} must be one of {', '.join(LAYOUTS)}")
    return str(value)


def array(values: Sequence[Any]) -> list[str]:
    return [OPEN, *(str(v) for v in values), CLOSE]


def matrix(rows: Sequence[Sequence[Any]]) -> list[str]:
    tokens = [OPEN]
    for i, row in enumerate(rows):
        tokens += [COMMA] * (i > 0) + array(row)
    return [*tokens, CLOSE]


def fields(named: list[tuple[str, list[str]]]) -> list[str]:
    """``name: value, name: value`` as tokens."""
    tokens: list[str] = []
    for i, (name, value) in enumerate(named):
        tokens += [COMMA] * (i > 0) + [f"{name}:", *value]
    return tokens


def header(names: Sequence[str]) -> list[str]:
    """The output's field names before the answer: ``start , end:``."""
    tokens: list[str] = []
    for i, name in enumerate(names):
        tokens += [COMMA] * (i > 0) + [name]
    return [*tokens[:-1], f"{tokens[-1]}:"]


def write_answer(kind: str, compact: list[str], count: int) -> tuple[list[str], Origin]:
    """The text tokens of a compact answer and, per text token, the compact token it writes
    (``count``: the number of items a mask covers)."""
    if kind == "bare":
        return list(compact), list(range(len(compact)))
    if kind == "fields":
        tokens: list[str] = []
        origin: Origin = []
        for i, tok in enumerate(compact):
            tokens += [COMMA] * (i > 0) + [tok]
            origin += [None] * (i > 0) + [i]
        return tokens, origin
    if kind == "array":
        return array(compact), [None, *range(len(compact)), None]
    if kind == "matrix":
        rows: list[list[int]] = [[]]
        for i, tok in enumerate(compact):
            if tok == SEP:
                rows.append([])
            else:
                rows[-1].append(i)
        tokens, origin = [OPEN], [None]
        for r, row in enumerate(rows):
            tokens += [COMMA] * (r > 0) + [OPEN, *(compact[i] for i in row), CLOSE]
            origin += [None] * (r > 0) + [None, *row, None]
        return [*tokens, CLOSE], [*origin, None]
    assert kind == "mask", kind
    where = {int(tok): k for k, tok in enumerate(compact)}
    return array(int(i in where) for i in range(count)), [None, *map(where.get, range(count)), None]


def read_answer(kind: str, text: list[str], count: int, order: Callable) -> list[str] | None:
    """The compact answer a text answer (without ``<eos>``) writes; None when it is malformed.

    ``order(items)``: for a mask, the selected item indices in the compact layout's order.
    """
    if kind == "bare":
        return list(text)
    if kind == "fields":
        if len(text) % 2 == 0 or any(t != COMMA for t in text[1::2]):
            return None
        return text[0::2]
    if len(text) < 2 or text[0] != OPEN or text[-1] != CLOSE:
        return None
    inner = text[1:-1]
    if kind == "array":
        return None if any(t in PUNCTUATION for t in inner) else inner
    if kind == "matrix":
        rows: list[list[str]] = []
        rest = inner
        while True:
            if not rest or rest[0] != OPEN or CLOSE not in rest:
                return None
            end = rest.index(CLOSE)
            if any(t in PUNCTUATION for t in rest[1:end]):
                return None
            rows.append(rest[1:end])
            rest = rest[end + 1 :]
            if not rest:
                break
            if rest[0] != COMMA:
                return None
            rest = rest[1:]
        return [tok for r, row in enumerate(rows) for tok in [SEP] * (r > 0) + row]
    assert kind == "mask", kind
    if len(inner) != count or any(t not in ("0", "1") for t in inner):
        return None
    return [str(i) for i in order([i for i, t in enumerate(inner) if t == "1"])]
