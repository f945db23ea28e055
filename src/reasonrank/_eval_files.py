"""The files of an evaluation directory: names, manifest reading, the directory lock, output writes.

Private to :mod:`reasonrank.evaluation`: everything here protects what a run leaves on disk (one run per
directory at a time, nothing half-written, temporary files of killed runs removed, write failures explained).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ._errors import InvalidInputError, ReasonRankError
from .cache import lock_exclusively
from .io import atomic_writer

__all__ = ["OutputWriteError"]

logger = logging.getLogger("reasonrank.evaluation")

PathLike = str | os.PathLike[str]

MANIFEST, CACHE, RUN, METRICS, TRACES, SUMMARY = (
    "manifest.json",
    "cache.jsonl",
    "run.trec",
    "metrics.json",
    "traces.jsonl",
    "summary.json",
)
_OUTPUTS = (MANIFEST, CACHE, RUN, METRICS, TRACES, SUMMARY)


def _read_manifest(path: Path) -> dict | None:
    """The settings in ``path``, None if there is no manifest; anything else there is an error."""
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError, RecursionError):
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("settings"), dict):
        raise InvalidInputError(
            f"{path} is not a reasonrank manifest; use another output directory (or remove that file)"
        )
    return document["settings"]


def _holds_results(directory: Path) -> bool:
    """Whether an earlier run left anything worth keeping: a cached generation or a final file."""
    if any((directory / name).exists() for name in (RUN, METRICS, TRACES, SUMMARY)):
        return True
    try:
        with open(directory / CACHE, "rb") as f:
            f.readline()  # the header
            return bool(f.readline())
    except FileNotFoundError:
        return False


def _output_directory(output_dir: PathLike) -> Path:
    directory = Path(output_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InvalidInputError(f"output_dir {os.fspath(directory)!r} is a file; give a directory path") from None
    except OSError as e:
        raise InvalidInputError(f"cannot create the output directory {os.fspath(directory)!r}: {e}") from None
    return directory


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """Hold an advisory lock on the output directory: one run (and one ``--overwrite``) at a time."""
    if os.name == "nt":  # pragma: no cover - no advisory locks on directories
        yield
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as e:
        raise InvalidInputError(f"cannot open the output directory {os.fspath(directory)!r}: {e}") from None
    lock_exclusively(
        fd,
        f"{directory} is in use by another run (reasonrank eval with the same output directory); wait for it to "
        "finish or use another output directory",
    )
    try:
        yield
    finally:
        os.close(fd)


def _remove_stale_files(directory: Path) -> None:
    """Remove temporary files of output writes that a killed run (``kill -9``) never finished or removed."""
    stale = [p for name in _OUTPUTS for p in directory.glob(f".{name}.*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        logger.info("%s: removed %d temporary file(s) left by an interrupted run", directory, len(stale))


class OutputWriteError(ReasonRankError, OSError):
    """A final output file of :func:`run_eval` could not be written (e.g. the disk is full); the cache is intact."""


@contextlib.contextmanager
def _output_file(path: Path) -> Iterator[IO[str]]:
    try:
        with atomic_writer(path) as f:
            yield f
    except OSError as e:
        raise OutputWriteError(
            f"could not write {path}: {e.strerror or e}. The generation cache {path.parent / CACHE} is intact: "
            "free space (or fix the cause) and rerun the same command to write the outputs without calling the "
            "model again"
        ) from e
