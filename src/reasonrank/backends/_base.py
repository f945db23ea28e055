"""The backend contract: a batch of generation requests in, one generation per request out, in order."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._types import SamplingParams

__all__ = ["Backend", "Generation", "GenerationRequest"]


@dataclass(frozen=True)
class GenerationRequest:
    """One window's call to the model.

    ``prompt`` is the final prompt string (chat template + ``fix_text``, byte-identical to the official
    pipeline); ``messages`` are the chat messages before the template, for chat-only APIs. ``query``,
    ``docids`` and ``contents`` describe the window (handy for fake and simulated models); ``key`` names the
    window in logs and errors.
    """

    prompt: str
    messages: tuple[Mapping[str, str], ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    query: str = ""
    docids: tuple[str, ...] = ()
    contents: tuple[str, ...] = ()
    key: str = ""


@dataclass(frozen=True)
class Generation:
    """A backend's answer to one request. Token counts are ``None`` when the backend cannot tell."""

    text: str
    output_tokens: int | None = None
    prompt_tokens: int | None = None
    finish_reason: str | None = None  # "stop" (EOS or stop string) or "length" (hit max_tokens)
    #: model time spent on this request, when the backend can tell (a batch's time is shared by its rows);
    #: otherwise the reranker records the time since the previous result arrived
    seconds: float | None = field(default=None, compare=False)


class Backend(ABC):
    """Base class of model backends.

    A backend implements :meth:`generate`; one that can hand results back as they finish (so progress bars
    move and caches fill during a long batch) also overrides :meth:`stream`. One that can take requests one
    at a time while others run (a server, an async engine, continuous batching) overrides :meth:`agenerate`:
    the reranker then streams windows to it (each query advances as soon as its own windows are back)
    instead of sending window rounds in lockstep batches. ``tokenizer`` is the model's
    Hugging Face tokenizer when the backend has one: the reranker uses it to render the chat template and
    truncate passages exactly as the official code does.

    >>> class Echo(Backend):
    ...     name = "echo"
    ...     def generate(self, requests):
    ...         return [Generation("[1] > [2]") for _ in requests]
    >>> Echo().generate([GenerationRequest("p", ())])[0].text
    '[1] > [2]'
    """

    name: ClassVar[str] = "backend"

    @property
    def tokenizer(self) -> Any:
        return None

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Generate one output per request, in request order."""

    def stream(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Generation]]:
        """Yield ``(request_index, generation)`` as results complete; every index exactly once."""
        yield from enumerate(self.generate(requests))

    async def agenerate(self, request: GenerationRequest) -> Generation:
        """Generate one output without blocking the event loop.

        Backends that take requests while others run override this (and :attr:`can_stream` becomes true); the
        default runs ``generate([request])`` in a worker thread. The reranker does not call the default: it
        batches the windows of batch-only backends itself. Cancelling the awaiting task should cancel the
        request where the backend allows it.
        """
        loop = asyncio.get_running_loop()
        return (await loop.run_in_executor(None, self.generate, [request]))[0]

    @property
    def can_stream(self) -> bool:
        """Whether :meth:`agenerate` takes requests one at a time while others run (it is overridden)."""
        return type(self).agenerate is not Backend.agenerate

    async def aclose(self) -> None:
        """Release what :meth:`agenerate` holds in the running event loop (connections). The default does nothing."""

    def close(self) -> None:
        """Release resources (servers, GPU memory). The default does nothing."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def timed_stream(backend: Backend, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Generation, float]]:
    """``backend.stream`` with each result's seconds: the backend's own figure, else the time since the last one."""
    last = time.perf_counter()
    for index, generation in backend.stream(requests):
        now = time.perf_counter()
        seconds = getattr(generation, "seconds", None)
        yield index, generation, seconds if seconds is not None else now - last
        last = now
