"""The tasks: importing this package registers every task (:mod:`anira.tasks.registry`)."""

from anira.tasks import brevo, clrs, lano, mano  # noqa: F401  (each registers its tasks)
from anira.tasks.base import Example, Task
from anira.tasks.registry import TASKS, get_task

__all__ = ["TASKS", "Example", "Task", "get_task"]
