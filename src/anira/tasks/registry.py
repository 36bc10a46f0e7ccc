"""Task name → class: each task module registers its class (``@register``); :func:`get_task`
builds one with its parameters. Importing :mod:`anira.tasks` imports every task module."""

from __future__ import annotations

from typing import Any

from anira.io import AniraInputError
from anira.tasks.base import Task

TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


def get_task(name: str, **params: Any) -> Task:
    if name not in TASKS:
        raise AniraInputError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](**params)
