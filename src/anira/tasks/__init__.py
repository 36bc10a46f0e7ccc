"""Task registry: task name → class. ``get_task(name, **params)`` builds one with its parameters."""

from __future__ import annotations

from typing import Any

from anira.io import AniraInputError
from anira.tasks.base import Example, Task

TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


def get_task(name: str, **params: Any) -> Task:
    if name not in TASKS:
        raise AniraInputError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](**params)


# Importing the modules registers their tasks.
from anira.tasks import brevo, clrs, lano, mano  # noqa: E402, F401

__all__ = ["TASKS", "Example", "Task", "get_task", "register"]
