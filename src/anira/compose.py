"""Where the configs live and how a command's config is composed from them, checked first.

- :data:`CONFIG_DIR` is the repository's ``config/`` directory (``$ANIRA_CONFIG_DIR`` overrides).
- :func:`compose` builds the config ``python -m anira.<app> <overrides>`` runs with; an option,
  key or value that does not exist or does not parse is one :class:`AniraInputError` line, before
  Hydra's many-line messages (:func:`check_group_choices`, :func:`unknown_key`,
  :func:`unparsable`).
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterator, Sequence
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from anira.io import AniraInputError, one_line

CONFIG_DIR = Path(
    os.environ.get("ANIRA_CONFIG_DIR") or Path(__file__).resolve().parents[2] / "config"
).resolve()


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


def compose(app: str, overrides: Sequence[str], hydra: bool = False) -> DictConfig:
    """The config ``python -m anira.<app> <overrides>`` runs with (``hydra``: with Hydra's own
    node); an override naming a key or an option that does not exist, or a value Hydra cannot
    parse, is one :class:`AniraInputError` line (an unknown key names the closest one)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    check_group_choices(list(overrides))
    try:
        # Hydra's override lexer prints its own trace to stderr before raising: kept out.
        with (
            initialize_config_dir(str(CONFIG_DIR), version_base=None),
            redirect_stderr(io.StringIO()),
        ):
            return hydra_compose(app, overrides=list(overrides), return_hydra_config=hydra)
    except (HydraException, OmegaConfBaseException) as err:
        unknown = unparsable(overrides) or unknown_key(app, overrides)
        if unknown:
            raise AniraInputError(unknown) from err
        raise AniraInputError(f"anira.{app} {' '.join(overrides)}: {one_line(err)}") from err


def unparsable(overrides: Sequence[str]) -> str | None:
    """``cannot parse override …`` for the first override Hydra's grammar rejects (naming its
    non-ASCII characters, such as a fullwidth digit, where it has some), or None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for override in overrides:
        try:
            with redirect_stderr(io.StringIO()):
                parser.parse_override(override)
        except HydraException:
            odd = sorted({c for c in override if not c.isascii()})
            hint = f" (non-ASCII characters {', '.join(map(repr, odd))})" if odd else ""
            return f"cannot parse override {override!r}{hint}; see Hydra's override grammar"
    return None


def unknown_key(app: str, overrides: Sequence[str]) -> str | None:
    """``unknown key K (closest: …)`` for the first override whose key the config of ``app``
    lacks (``+key=`` adds one, so it is never unknown), or None."""
    import difflib

    groups = [o for o in overrides if "=" in o and (CONFIG_DIR / o.split("=")[0]).is_dir()]
    try:
        keys = list(dotted_keys(compose(app, groups, hydra=True)))
    except AniraInputError:
        return None
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("~")
        if "=" not in override or key.startswith("+") or key in keys:
            continue
        close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
        return f"unknown key {key}" + (f" (closest: {close[0]})" if close else "")
    return None


def dotted_keys(node: Any, prefix: str = "") -> Iterator[str]:
    """Every key of a config, nested ones as ``a.b.c``."""
    if isinstance(node, DictConfig):
        for key in node:
            path = f"{prefix}{key}"
            yield path
            yield from dotted_keys(node._get_node(key), f"{path}.")


@functools.cache
def default_choices(app: str) -> dict[str, str]:
    """Group → option ``python -m anira.<app>`` composes when no override names the group (its
    defaults list, as Hydra reads it; Hydra's own groups left out)."""
    choices = compose(app, [], hydra=True).hydra.runtime.choices
    return {g: o for g, o in choices.items() if o is not None and not g.startswith("hydra")}
