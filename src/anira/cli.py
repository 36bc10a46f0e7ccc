"""Shared plumbing for the Hydra entry points (``python -m anira.<stage> key=value ...``).

- :data:`CONFIG_DIR` is the repository's ``config/`` directory (``$ANIRA_CONFIG_DIR`` overrides).
- :func:`anira_main` turns a ``main(cfg)`` function into a Hydra app whose user-facing errors
  (:class:`~anira.io.AniraInputError`) are printed as one line ``error: ...`` on stderr, exiting
  with status 2, before any heavy work. The command line is composed first
  (:func:`anira.spec.compose`), so an unknown key (with the closest valid one) or a value Hydra
  cannot parse is such a line too, instead of Hydra's multi-line report.

Each primary config (``config/<stage>.yaml``) must keep Hydra from writing anything of its own —
no timestamped ``outputs/`` tree, no ``.hydra/`` directory, no log file::

    defaults:
      - ...
      - _self_
      - override hydra/job_logging: stdout
      - override hydra/hydra_logging: none
    hydra:
      output_subdir: null
      run:
        dir: .

Usage::

    from anira.cli import anira_main

    @anira_main("generate")
    def main(cfg: DictConfig) -> None: ...

    if __name__ == "__main__":
        main()
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from anira.io import EXIT_INPUT_ERROR, AniraInputError, one_line

CONFIG_DIR = Path(
    os.environ.get("ANIRA_CONFIG_DIR") or Path(__file__).resolve().parents[2] / "config"
).resolve()


def fail(message: str) -> None:
    """Print ``error: <message>`` as one line on stderr and exit with status 2."""
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(EXIT_INPUT_ERROR)


def check_group_choices(argv: list[str], config_dir: Path = CONFIG_DIR) -> None:
    """Reject ``group=choice`` overrides naming a config that does not exist, in one line.

    Hydra's own message for ``task=nope`` spans many lines; this check runs first and raises
    :class:`AniraInputError` such as ``unknown task 'nope'; choices: brevo, mano``.
    """
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        group_dir = config_dir / key
        if "/" in key or "." in key or not group_dir.is_dir() or not value:
            continue
        if not (group_dir / f"{value}.yaml").is_file():
            choices = ", ".join(sorted(p.stem for p in group_dir.glob("*.yaml")))
            raise AniraInputError(f"unknown {key} {value!r}; choices: {choices}")


def anira_main(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Decorate ``main(cfg)`` into a Hydra app on ``CONFIG_DIR/<config_name>.yaml``.

    :class:`AniraInputError` raised while checking the command line or inside ``main`` becomes one
    line ``error: ...`` on stderr and exit status 2.
    """

    def decorate(func: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        @functools.wraps(func)
        def guarded(cfg: DictConfig) -> Any:
            try:
                return func(cfg)
            except AniraInputError as err:
                fail(str(err))

        hydra_app = hydra.main(
            config_path=str(CONFIG_DIR), config_name=config_name, version_base=None
        )(guarded)

        @functools.wraps(func)
        def entry() -> Any:
            from anira.spec import compose

            argv = sys.argv[1:]
            try:
                check_group_choices(argv)
                if not any(arg.startswith("-") for arg in argv):  # Hydra's own flags pass
                    compose(config_name, argv, hydra=True)
            except AniraInputError as err:
                fail(str(err))
            return hydra_app()

        entry.__wrapped_main__ = func  # the undecorated function, for tests
        return entry

    return decorate
