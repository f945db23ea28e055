"""The generation cache shared by replicas: one shard file per replica process, every shard readable by all.

A :class:`~reasonrank.cache.CachedBackend` file belongs to one process at a time (an advisory lock). Replicas
on a cluster therefore each append to their own shard in a directory on shared storage, and read the shards of
the others (and the run's main ``cache.jsonl``, left by an earlier single-process run) before every window
round. When a replica dies mid-batch, Ray retries the batch on a restarted replica, which finds every window
the dead one completed in its shard and generates only the rest: no completed window is generated twice.
At the end, :func:`merge_shards` folds the shards into the main cache, so that a later run of either kind
resumes from it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from .._errors import InvalidInputError
from ..backends._base import Backend, Generation, GenerationRequest
from ..cache import CachedBackend, CacheRecord

__all__ = ["SharedCache", "merge_shards", "read_records"]

logger = logging.getLogger(__name__)

SHARD_SUFFIX = ".jsonl"


def read_records(path: Path, offset: int, model_id: str) -> tuple[list[CacheRecord], int]:
    """Complete records of a cache file from byte ``offset`` on, and the offset after the last complete line.

    A torn last line (its writer died mid-write) is not read; the header (at offset 0) must name ``model_id``.
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    records = []
    for number, raw in enumerate(data[:end].split(b"\n")[:-1]):
        try:
            obj = json.loads(raw)
        except ValueError:
            raise InvalidInputError(f"{path}: a cache line is not JSON; delete the file to start over") from None
        if offset == 0 and number == 0:
            if not isinstance(obj, dict) or obj.get("model_id") != model_id:
                got = obj.get("model_id") if isinstance(obj, dict) else obj
                raise InvalidInputError(
                    f"{path} holds generations of model {got!r}, not {model_id!r}; use another output directory"
                )
            continue
        records.append(CacheRecord(**obj))
    return records, offset + end


class SharedCache(CachedBackend):
    """A :class:`CachedBackend` writing its own shard in ``directory`` and reading everyone else's.

    ``main`` is a cache file to read too (never written here). Shards are named after the host and process,
    so a restarted replica starts a new one and never contends for a lock.
    """

    name = "shared-cache"

    def __init__(
        self, inner: Backend, directory: str | os.PathLike[str], *, model_id: str, main: str | os.PathLike[str]
    ) -> None:
        self.directory = Path(directory)
        self.main = Path(main)
        self._offsets: dict[Path, int] = {}
        shard = self.directory / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SHARD_SUFFIX}"
        super().__init__(inner, shard, model_id=model_id)
        self.refresh()

    def refresh(self) -> int:
        """Read what other replicas (and the main cache) stored since the last look; returns how many."""
        added = 0
        own = Path(self.path)
        for path in [self.main, *sorted(self.directory.glob(f"*{SHARD_SUFFIX}"))]:
            if path == own:
                continue
            records, self._offsets[path] = read_records(path, self._offsets.get(path, 0), self.model_id)
            for record in records:
                if record.key not in self._records:
                    self._records[record.key] = record
                    added += 1
        return added

    def stream(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Generation]]:
        self.refresh()  # each window round sees what every replica, living or dead, has completed
        yield from super().stream(requests)


def merge_shards(main: CachedBackend, directory: Path) -> int:
    """Append every shard record the main cache lacks to it, then delete the shards; returns how many."""
    added = 0
    for path in sorted(directory.glob(f"*{SHARD_SUFFIX}")):
        records, _ = read_records(path, 0, main.model_id)
        for record in records:
            if main.get(record.key) is None:
                main._store(record)
                added += 1
        path.unlink()
    try:
        directory.rmdir()
    except OSError:  # something else lives there: leave it
        logger.debug("left %s in place", directory)
    return added
