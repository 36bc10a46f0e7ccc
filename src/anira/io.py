"""Atomic, checksummed file writes and the errors raised for bad inputs.

Every file the pipeline produces is written under a temporary name in the same directory and then
renamed, so a crash never leaves a half-written file under the final name. Directories of outputs
carry a ``manifest.json`` with the SHA-256 of each file so a truncated or mismatched input is
detected before any heavy work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"


class AniraInputError(ValueError):
    """A user-facing problem with inputs or parameters; entry points print it as one line."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The file gets the permissions the umask gives a new file (mkstemp would leave it 0600, which
    makes datasets unreadable to collaborators on a shared cluster).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        if tmp_path.exists():
            tmp_path.chmod(0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Atomically create ``path`` with ``writer(tmp_path)`` (e.g. ``df.to_parquet``)."""
    with atomic_path(path) as tmp:
        writer(tmp)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: str | os.PathLike, names: list[str]) -> None:
    """Record the SHA-256 of ``names`` (files inside ``directory``) in its manifest."""
    directory = Path(directory)
    entries = {name: sha256_file(directory / name) for name in sorted(names)}
    atomic_write_json(directory / MANIFEST_NAME, {"sha256": entries})


def verify_manifest(directory: str | os.PathLike, names: list[str] | None = None) -> None:
    """Raise :class:`AniraInputError` if the manifest of ``directory`` is missing or a file
    mismatches it."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise AniraInputError(f"directory not found: {directory}")
    if not manifest_path.is_file():
        raise AniraInputError(f"no {MANIFEST_NAME} in {directory}: incomplete or foreign output")
    try:
        entries = json.loads(manifest_path.read_text())["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise AniraInputError(f"corrupt manifest {manifest_path}: {err}") from err
    for name in names if names is not None else list(entries):
        target = directory / name
        if name not in entries:
            raise AniraInputError(f"{target} is not listed in {manifest_path}")
        if not target.is_file():
            raise AniraInputError(f"missing file {target}")
        if sha256_file(target) != entries[name]:
            raise AniraInputError(f"{target} does not match its checksum (truncated or modified)")
