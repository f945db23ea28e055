"""Crash-safe generation cache: any backend, resumable after a crash, a ``kill -9`` or a failed server.

:class:`CachedBackend` wraps a :class:`~reasonrank.backends.Backend`. Each request is keyed by the sha256 of
(model identity, rendered prompt, decoding settings); a request whose key is in the cache is answered from
it, every other request goes to the wrapped backend, and each generation is appended to a JSONL file and
``fsync``-ed the moment it arrives (through the backend's ``stream()``). A rerun with the same inputs
therefore calls the model only for windows that never completed. Because a window's prompt depends on the
outputs of earlier windows, replaying cached outputs reproduces the rankings exactly.

The file starts with a header naming the model identity; opening it for another model is refused, so cached
outputs are never served for a model that did not produce them. A torn last line (the process died while
writing it) is cut off and that window is simply generated again; so is a write cut short by a full disk.
A malformed record anywhere else (not JSON, a missing or mistyped field, ``"text": null``) is reported with
its line number and skipped: only its window is generated again. One process at a time may use a cache
file (an advisory lock, released by the OS even after ``kill -9``).

Examples:
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

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ._errors import BackendError, InvalidInputError, ReasonRankError
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


_FIELDS = frozenset(CacheRecord.__dataclass_fields__)


def _record_problem(obj: Any) -> str | None:
    """What makes a decoded line unusable as a :class:`CacheRecord`, or None."""
    if not isinstance(obj, dict):
        return f"a record is a JSON object, this is a {type(obj).__name__}"
    unknown = sorted(set(obj) - _FIELDS)
    if unknown:
        return f"unknown field(s) {', '.join(unknown)}"
    if not isinstance(obj.get("key"), str) or not obj["key"]:
        return "no 'key' string"
    if not isinstance(obj.get("text"), str):
        return f"'text' must be a string, got {obj.get('text')!r:.40}"
    for name in ("output_tokens", "prompt_tokens"):
        value = obj.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            return f"{name!r} must be an int >= 0 or null, got {value!r:.40}"
    seconds = obj.get("seconds")
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf
    ):
        return f"'seconds' must be a number >= 0 or null, got {seconds!r:.40}"
    for name in ("finish_reason", "window"):
        if obj.get(name) is not None and not isinstance(obj[name], str):
            return f"{name!r} must be a string, got {obj[name]!r:.40}"
    return None


def json_line(obj: Any, separators: tuple[str, str] = (",", ":")) -> str:
    """``obj`` as one JSON line that UTF-8 can hold: strings with lone surrogates (``"\\ud800"`` in a model
    output) are written as escapes, which read back as the same string."""
    text = json.dumps(obj, ensure_ascii=False, separators=separators)
    if _SURROGATE.search(text):
        text = json.dumps(obj, ensure_ascii=True, separators=separators)
    return text + "\n"


_SURROGATE = re.compile("[\ud800-\udfff]")


def lock_exclusively(fd: int, in_use: str) -> None:
    """Take an advisory lock on ``fd`` (released by the OS when the process dies); raise ``in_use`` if held."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InvalidInputError(in_use) from None


def _lock(fd: int, path: str) -> None:
    lock_exclusively(
        fd,
        f"the cache {path} is in use by another process (another run with the same output directory?); "
        "wait for it to finish or use another output directory",
    )


def _cut_torn_tail(fd: int, size: int) -> int:
    """Truncate the file after its last newline; return the new size."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    os.ftruncate(fd, end)
    return end


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
        """Parse the file; return how many bytes hold complete lines (a torn last line is not counted).

        A malformed record is logged with its line number and skipped, so only its window is generated again.
        """
        end = data.rfind(b"\n") + 1
        lines = data[:end].split(b"\n")[:-1]
        bad: list[str] = []
        for number, raw in enumerate(lines, start=1):
            problem: str | None
            try:
                obj = json.loads(raw)
            except (ValueError, RecursionError):
                obj, problem = None, "not JSON"
            else:
                problem = None if number == 1 else _record_problem(obj)
            if number == 1:
                if problem is not None:
                    raise InvalidInputError(
                        f"{self.path}:1: the cache header is corrupted; delete the file to start over"
                    )
                self._check_header(obj)
            elif problem is not None:
                bad.append(f"line {number}: {problem}")
            else:
                record = CacheRecord(**obj)
                self._records[record.key] = record
        if bad:
            logger.warning(
                "%s: skipped %d malformed record(s); their windows will be generated again: %s%s",
                self.path,
                len(bad),
                "; ".join(bad[:5]),
                " ..." if len(bad) > 5 else "",
            )
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

    def _append_line(self, fd: int, obj: Any) -> None:
        data = json_line(obj).encode("utf-8")
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn line a failed truncation left behind
            size = _cut_torn_tail(fd, size)
            logger.warning("%s: cut off an incomplete last line before appending", self.path)
        try:
            while data:  # os.write may write less than asked
                written = os.write(fd, data)
                data = data[written:]
            os.fsync(fd)
        except OSError as e:
            # Cut off what part of the line was written (a full disk), so the next append starts a new line.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise ReasonRankError(
                f"could not write to the cache {self.path}: {e}. The {len(self._records)} generations stored "
                "before are intact; free space (or fix the error) and rerun to resume"
            ) from e

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

    def key(self, prompt: str, sampling: SamplingParams, context: str | None = None) -> str:
        """The cache key of a prompt decoded with ``sampling`` by this model (``context``: see :meth:`request_key`)."""
        parts: list[Any] = [self.model_id, prompt, asdict(sampling)]
        if context is not None:
            parts.append(context)
        payload = json.dumps(parts, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()

    def request_key(self, request: GenerationRequest) -> str:
        """The key of ``request``: model, prompt, sampling and, when the wrapped backend answers from more than the
        prompt, what else it reads: a backend may define ``cache_context(request) -> str | None`` for that (the
        ``oracle`` backend returns the window's qrels, so new qrels are never answered from old generations)."""
        # The rendered prompt contains the messages; a request without one is keyed by its messages.
        prompt = request.prompt or json.dumps([dict(m) for m in request.messages], ensure_ascii=False)
        context = getattr(self.inner, "cache_context", None)
        return self.key(prompt, request.sampling, context(request) if callable(context) else None)

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
