"""Crash-safe generation cache: any backend, resumable after a crash, a ``kill -9`` or a failed server.

:class:`CachedBackend` wraps a :class:`~reasonrank.backends.Backend`. Each request is keyed by the sha256 of
(model identity, rendered prompt, decoding settings); a request whose key is in the cache is answered from
it, every other request goes to the wrapped backend, and each generation is appended to a JSONL file and
``fsync``-ed the moment it arrives (through the backend's ``stream()``). A rerun with the same inputs
therefore calls the model only for windows that never completed. Because a window's prompt depends on the
outputs of earlier windows, replaying cached outputs reproduces the rankings exactly.

The file starts with a header naming the model identity; opening it for another model is refused, so cached
outputs are never served for a model that did not produce them. A torn last line (the process died while
writing it) is dropped and that window is simply generated again. One process at a time may use a cache
file (an advisory lock, released by the OS even after ``kill -9``).

>>> import os, tempfile
>>> from reasonrank.backends import FakeBackend, GenerationRequest
>>> path = os.path.join(tempfile.mkdtemp(), "cache.jsonl")
>>> inner = FakeBackend(lambda request: "[2] > [1]")
>>> with CachedBackend(inner, path, model_id="fake") as cached:
...     first = cached.generate([GenerationRequest("prompt", ())])
>>> with CachedBackend(inner, path, model_id="fake") as cached:
...     again = cached.generate([GenerationRequest("prompt", ())])
...     print(again[0].text, cached.hits, cached.misses, inner.num_requests)
[2] > [1] 1 0 1
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ._errors import BackendError, InvalidInputError
from ._types import SamplingParams
from .backends._base import Backend, Generation, GenerationRequest

__all__ = ["CacheRecord", "CachedBackend"]

logger = logging.getLogger(__name__)

_FORMAT = "reasonrank-generation-cache"
_VERSION = 1


@dataclass(frozen=True)
class CacheRecord:
    """One stored generation. ``seconds`` is how long the model took when it was generated."""

    key: str
    text: str
    output_tokens: int | None = None
    prompt_tokens: int | None = None
    finish_reason: str | None = None
    seconds: float | None = None
    window: str = ""  # the request's key, for people reading the file

    def generation(self) -> Generation:
        return Generation(self.text, self.output_tokens, self.prompt_tokens, self.finish_reason, self.seconds)


def _lock(fd: int, path: str) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InvalidInputError(
            f"the cache {path} is in use by another process (another run with the same output directory?); "
            "wait for it to finish or use another output directory"
        ) from None


class CachedBackend(Backend):
    """A backend that answers repeated requests from a JSONL cache and stores new generations at once.

    ``model_id`` names the model and everything else that changes its outputs for the same prompt and
    decoding settings (weights, quantization, dtype); it is part of every key and of the file header.
    ``hits`` and ``misses`` count the requests answered without and with a model call in this session.
    """

    name = "cached"

    def __init__(self, inner: Backend, path: str | os.PathLike[str], *, model_id: str) -> None:
        if not isinstance(inner, Backend):
            raise InvalidInputError(f"inner must be a reasonrank Backend, got {type(inner).__name__}")
        if not isinstance(model_id, str) or not model_id:
            raise InvalidInputError("model_id must be a non-empty string naming the model")
        self.inner = inner
        self.model_id = model_id
        self.path = os.fspath(path)
        self.hits = 0
        self.misses = 0
        self._records: dict[str, CacheRecord] = {}
        self._fd: int | None = None
        self._open()

    # ------------------------------------------------------------------ file

    def _open(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        _lock(fd, self.path)
        try:
            with open(self.path, "rb") as f:
                data = f.read()
            good = self._load(data)
            if good < len(data):  # a torn last line: cut it off before appending after it
                logger.warning("%s: dropped an incomplete last line (the previous run was interrupted)", self.path)
                os.ftruncate(fd, good)
            if good == 0:
                header = {"format": _FORMAT, "version": _VERSION, "model_id": self.model_id}
                self._append_line(fd, header)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _load(self, data: bytes) -> int:
        """Parse the file; return how many bytes hold complete lines (a torn last line is not counted)."""
        end = data.rfind(b"\n") + 1
        lines = data[:end].split(b"\n")[:-1]
        for number, raw in enumerate(lines, start=1):
            try:
                obj = json.loads(raw)
            except ValueError:
                raise InvalidInputError(
                    f"{self.path}:{number}: the cache is corrupted (not JSON); delete the file to start over"
                ) from None
            if number == 1:
                self._check_header(obj)
            else:
                record = CacheRecord(**obj)
                self._records[record.key] = record
        return end

    def _check_header(self, header: Any) -> None:
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            raise InvalidInputError(f"{self.path} is not a reasonrank generation cache; use another path")
        if header.get("version") != _VERSION:
            raise InvalidInputError(f"{self.path} has cache version {header.get('version')}, expected {_VERSION}")
        if header.get("model_id") != self.model_id:
            raise InvalidInputError(
                f"{self.path} holds generations of model {header.get('model_id')!r}, not {self.model_id!r}; "
                "use another cache path (output directory) for another model"
            )

    @staticmethod
    def _append_line(fd: int, obj: Any) -> None:
        data = (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        while data:  # os.write may write less than asked
            written = os.write(fd, data)
            data = data[written:]
        os.fsync(fd)

    def _store(self, record: CacheRecord) -> None:
        if self._fd is None:
            raise InvalidInputError(f"the cache {self.path} is closed")
        self._append_line(self._fd, asdict(record))
        self._records[record.key] = record

    # ------------------------------------------------------------------ keys and lookups

    def _record(self, key: str, request: GenerationRequest, generation: Any, seconds: float) -> Generation:
        """Store a fresh generation; the model time is part of the record, and what a replay of it reports."""
        own = getattr(generation, "seconds", None)
        generation = Generation(
            generation.text,
            getattr(generation, "output_tokens", None),
            getattr(generation, "prompt_tokens", None),
            getattr(generation, "finish_reason", None),
            own if own is not None else seconds,
        )
        self.misses += 1
        self._store(
            CacheRecord(
                key=key,
                text=generation.text,
                output_tokens=generation.output_tokens,
                prompt_tokens=generation.prompt_tokens,
                finish_reason=generation.finish_reason,
                seconds=generation.seconds,
                window=request.key,
            )
        )
        return generation

    def key(self, prompt: str, sampling: SamplingParams) -> str:
        """The cache key of a prompt decoded with ``sampling`` by this model."""
        payload = json.dumps(
            [self.model_id, prompt, asdict(sampling)], ensure_ascii=False, separators=(",", ":"), sort_keys=True
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def request_key(self, request: GenerationRequest) -> str:
        # The rendered prompt contains the messages; a request without one is keyed by its messages.
        prompt = request.prompt or json.dumps([dict(m) for m in request.messages], ensure_ascii=False)
        return self.key(prompt, request.sampling)

    def get(self, key: str) -> CacheRecord | None:
        return self._records.get(key)

    def __len__(self) -> int:
        return len(self._records)

    # ------------------------------------------------------------------ Backend

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    def stream(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Generation]]:
        keys = [self.request_key(r) for r in requests]
        pending: dict[str, list[int]] = {}  # identical requests go to the model once
        for i, key in enumerate(keys):
            record = self._records.get(key)
            if record is not None:
                self.hits += 1
                yield i, record.generation()
            else:
                pending.setdefault(key, []).append(i)
        if not pending:
            return
        send = list(pending.values())
        done = [False] * len(send)
        last = time.perf_counter()
        for j, generation in self.inner.stream([requests[group[0]] for group in send]):
            now = time.perf_counter()
            seconds, last = now - last, now
            if not 0 <= j < len(send) or done[j]:
                raise BackendError(f"backend {self.inner!r} returned result index {j} twice or out of range")
            done[j] = True
            group = send[j]
            if isinstance(getattr(generation, "text", None), str):  # never store what the reranker will reject
                generation = self._record(keys[group[0]], requests[group[0]], generation, seconds)
            self.hits += len(group) - 1  # identical requests in the batch share the one generation
            for i in group:
                yield i, generation

    @property
    def can_stream(self) -> bool:
        return self.inner.can_stream

    async def agenerate(self, request: GenerationRequest) -> Generation:
        """A stored generation, or the inner backend's (stored the moment it arrives)."""
        key = self.request_key(request)
        record = self._records.get(key)
        if record is not None:
            self.hits += 1
            return record.generation()
        started = time.perf_counter()
        generation = await self.inner.agenerate(request)
        if isinstance(getattr(generation, "text", None), str):  # never store what the reranker will reject
            generation = self._record(key, request, generation, time.perf_counter() - started)
        return generation

    async def aclose(self) -> None:
        await self.inner.aclose()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        for i, generation in self.stream(requests):
            results[i] = generation
        return results  # type: ignore[return-value]

    def close(self, *, inner: bool = True) -> None:
        """Close the cache file (releasing its lock) and, unless ``inner=False``, the wrapped backend."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if inner:
            self.inner.close()

    def __enter__(self) -> CachedBackend:
        return self

    def __repr__(self) -> str:
        return f"<CachedBackend {self.path!r} ({len(self)} generations) over {self.inner!r}>"
