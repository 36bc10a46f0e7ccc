"""Atomic, checksummed file writes and the errors raised for bad inputs.

Every file the pipeline produces is written under a temporary name in the same directory and then
renamed, so a crash never leaves a half-written file under the final name. Directories of outputs
carry a ``manifest.json`` with the SHA-256 of each file so a truncated or mismatched input is
detected before any heavy work. ``provenance`` says what a benchmark result was measured on (the
commit, the date, the machine, the configs it depends on), for every JSON under
``benchmarks/results/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
EXIT_INPUT_ERROR = 2  # the exit status of every entry point for bad input or an unwritable output


class AniraInputError(ValueError):
    """A user-facing problem with inputs or parameters; entry points print it as one line."""


def one_line(message: object) -> str:
    """``message`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(message).split())


def format_duration(seconds: float) -> str:
    """``1h05m`` or ``4m09s``: the durations and ETAs of progress lines."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def report_input_error(err: AniraInputError | str) -> int:
    """Print ``error: <message>`` as one line on stderr; the exit status of every entry point
    (Hydra stages, analyses, figures) for bad input."""
    print(f"error: {one_line(err)}", file=sys.stderr)
    return EXIT_INPUT_ERROR


def write_error(path: str | os.PathLike, err: OSError) -> AniraInputError:
    """One line naming the file and the cause of a failed write (disk full, file too large,
    permission denied); pyarrow's errors carry no ``strerror``, so their message is the cause."""
    cause = err.strerror or one_line(err) or type(err).__name__
    return AniraInputError(f"cannot write {path}: {cause}")


def ensure_writable(directory: str | os.PathLike) -> None:
    """Create ``directory`` and probe it with a one-byte write, so an unwritable output directory or
    a full disk is reported before any work rather than at the first checkpoint."""
    directory = Path(directory)
    atomic_write_bytes(directory / ".write-probe", b"\0")
    (directory / ".write-probe").unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The file gets the permissions the umask gives a new file (mkstemp would leave it 0600, which
    makes datasets unreadable to collaborators on a shared cluster).
    An ``OSError`` inside the block or while renaming (no space left, file too large under
    ``ulimit -f``, permission denied) becomes an :class:`AniraInputError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise write_error(path, err) from err
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        if tmp_path.exists():
            tmp_path.chmod(0o666 & ~umask)
        os.replace(tmp_path, path)
    except OSError as err:
        raise write_error(path, err) from err
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


def write_manifest(
    directory: str | os.PathLike,
    names: list[str],
    manifest: str = MANIFEST_NAME,
    content: dict[str, Any] | None = None,
) -> None:
    """Record the SHA-256 of ``names`` (files inside ``directory``) in its manifest, with
    ``content`` (what a reader checks beyond checksums, e.g. a dataset's row counts) if given."""
    directory = Path(directory)
    entries = {name: sha256_file(directory / name) for name in sorted(names)}
    extra = {} if content is None else {"content": content}
    atomic_write_json(directory / manifest, {"sha256": entries, **extra})


def read_manifest(directory: str | os.PathLike, manifest: str = MANIFEST_NAME) -> dict[str, str]:
    """File name → SHA-256 recorded in the manifest of ``directory``."""
    directory = Path(directory)
    manifest_path = directory / manifest
    if not directory.is_dir():
        raise AniraInputError(f"directory not found: {directory}")
    if not manifest_path.is_file():
        raise AniraInputError(f"no {manifest} in {directory}: incomplete or foreign output")
    try:
        entries = json.loads(manifest_path.read_text())["sha256"]
        if not isinstance(entries, dict):
            raise TypeError("sha256 is not a mapping")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise AniraInputError(f"corrupt manifest {manifest_path}: {err}") from err
    return entries


def checksum_problem(path: Path, expected: str) -> str | None:
    """Why ``path`` fails its recorded SHA-256, or None when it matches."""
    if not path.is_file():
        return "is missing"
    if sha256_file(path) != expected:
        return "does not match its checksum (truncated or modified)"
    return None


def verify_manifest(
    directory: str | os.PathLike, names: list[str] | None = None, manifest: str = MANIFEST_NAME
) -> None:
    """Raise :class:`AniraInputError` if the manifest of ``directory`` is missing or a file
    mismatches it."""
    entries = read_manifest(directory, manifest)
    for name in names if names is not None else list(entries):
        target = Path(directory) / name
        if name not in entries:
            raise AniraInputError(f"{target} is not listed in {Path(directory) / manifest}")
        problem = checksum_problem(target, entries[name])
        if problem:
            raise AniraInputError(f"{target} {problem}")


def failed_files(directory: str | os.PathLike) -> dict[str, str]:
    """Every file of a finished output directory that fails its manifest, with the reason
    (``{manifest.json: reason}`` when the manifest itself is unreadable); empty when the directory
    verifies or has no manifest yet (an unfinished output, which its job rewrites anyway)."""
    directory = Path(directory)
    if not (directory / MANIFEST_NAME).is_file():
        return {}
    try:
        entries = read_manifest(directory)
    except AniraInputError as err:
        return {MANIFEST_NAME: str(err)}
    problems = {name: checksum_problem(directory / name, sha) for name, sha in entries.items()}
    return {name: problem for name, problem in problems.items() if problem}


REPO_ROOT = Path(__file__).resolve().parents[2]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the processor string elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_commit(root: Path = REPO_ROOT) -> str:
    """The checked-out commit, ``-dirty`` when tracked files differ from it; ``unknown`` outside
    a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=root).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def config_digests(patterns: Iterable[str], root: Path = REPO_ROOT) -> dict[str, str]:
    """Repository path → SHA-256 of every file matching ``patterns`` (globs relative to
    ``root``, e.g. ``config/task/*.yaml``)."""
    paths = sorted({path for pattern in patterns for path in root.glob(pattern) if path.is_file()})
    return {str(path.relative_to(root)): sha256_file(path) for path in paths}


def combined_digest(digests: dict[str, str]) -> str:
    """One digest of ``path → SHA-256`` pairs (order-free)."""
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode("utf-8")).hexdigest()


def measured_on(configs: Iterable[str]) -> dict[str, Any]:
    """What a benchmark result was measured on, as two keys of its JSON: ``machine``
    (:func:`machine_info`) and ``provenance``: the commit, the date and time (UTC) and the configs
    it depends on (``configs``: globs relative to the repository), each file's SHA-256 and one
    digest of them all. tests/test_repository.py flags a result quoted in README or docs/ whose
    configs have changed since."""
    patterns = sorted(configs)
    digests = config_digests(patterns)
    return {
        "machine": machine_info(),
        "provenance": {
            "commit": git_commit(),
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "config_patterns": patterns,
            "configs": digests,
            "config_sha256": combined_digest(digests),
        },
    }


def machine_info() -> dict[str, Any]:
    """Where and when a benchmark ran: date (UTC), platform, CPU model, processor, CPU count,
    Python, torch, torch's intra-op threads and the CUDA device (None without one). torch is
    imported here, so importing this module stays light."""
    import torch

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
