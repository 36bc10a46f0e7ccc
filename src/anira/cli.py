"""Shared plumbing for the Hydra entry points (``python -m anira.<stage> key=value ...``).

- :func:`anira_main` turns a ``main(cfg)`` function into a Hydra app whose user-facing errors
  (:class:`~anira.io.AniraInputError`) are printed as one line ``error: ...`` on stderr, exiting
  with status 2, before any heavy work. The command line is composed first
  (:func:`anira.compose.compose`), so an unknown key (with the closest valid one) or a value Hydra
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
import sys
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

from anira.compose import CONFIG_DIR, check_group_choices, compose
from anira.io import AniraInputError, report_input_error


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
                sys.exit(report_input_error(err))

        hydra_app = hydra.main(
            config_path=str(CONFIG_DIR), config_name=config_name, version_base=None
        )(guarded)

        @functools.wraps(func)
        def entry() -> Any:
            argv = sys.argv[1:]
            try:
                check_group_choices(argv)
                if not any(arg.startswith("-") for arg in argv):  # Hydra's own flags pass
                    compose(config_name, argv, hydra=True)
            except AniraInputError as err:
                sys.exit(report_input_error(err))
            return hydra_app()

        entry.__wrapped_main__ = func  # the undecorated function, for tests
        return entry

    return decorate
