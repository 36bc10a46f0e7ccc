"""The one small interface every task implements, and the example record it produces.

A task turns a difficulty value (``size``) and a NumPy RNG into one :class:`Example`: the token
strings of the whole sequence (prompt and answer), which of them are answer tokens, one per-token
list per complexity feature (``None`` where a feature is undefined, e.g. on prompt tokens), and the
JSON-serialisable instance needed to recompute everything without our code.

Conventions shared by all tasks:
- every sequence ends with ``<eos>``, which is an answer token (the model must learn to stop);
- the answer starts right after ``<ans>``; ``<ans>`` itself is a prompt token;
- the vocabulary is fixed by the task's parameters (never by the sampled data), so every split of a
  dataset shares it; ``<pad>`` is always id 0 and is added by :class:`anira.tasks.vocab.Vocabulary`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from anira.io import AniraInputError

PAD, EOS, ANS = "<pad>", "<eos>", "<ans>"


@dataclass
class Example:
    token_str: list[str]
    answer_mask: list[bool]
    size: int
    features: dict[str, list[float | None]]
    instance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.token_str)
        assert len(self.answer_mask) == n, "answer_mask must align with token_str"
        for name, values in self.features.items():
            assert len(values) == n, f"feature {name} has {len(values)} values for {n} tokens"

    @property
    def answer_str(self) -> list[str]:
        return [t for t, is_answer in zip(self.token_str, self.answer_mask, strict=True) if is_answer]


class Task(abc.ABC):
    """A generator of examples with known per-token complexity.

    Subclasses set ``name``, ``features`` (the per-token feature names, stored as ``f_<name>``) and
    ``min_size``; they take their parameters as keyword arguments and validate them eagerly.
    """

    name: ClassVar[str]
    features: ClassVar[tuple[str, ...]]
    min_size: ClassVar[int] = 1

    @abc.abstractmethod
    def vocab_tokens(self, max_size: int) -> list[str]:
        """Every token string this task can emit for sizes up to ``max_size`` (without ``<pad>``)."""

    @abc.abstractmethod
    def sample(self, size: int, rng: np.random.Generator) -> Example:
        """Draw one example of difficulty ``size``."""

    def is_correct(self, example: Example, generated: list[str]) -> bool:
        """Whether a generated answer (tokens after ``<ans>``, up to and including ``<eos>``) is right.

        Default: exact match with the gold answer. Tasks with several valid answers override this.
        """
        return generated == example.answer_str

    def check_size(self, size: int) -> None:
        if int(size) != size or size < self.min_size:
            raise AniraInputError(f"task {self.name}: size {size} is below its minimum {self.min_size}")
