"""The backend contract: a batch of generation requests in, one generation per request out, in order."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._errors import BackendError, InvalidInputError, UnknownNameError
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

    def __post_init__(self) -> None:
        # A backend that hands back a malformed count would otherwise break summaries (or write invalid JSON)
        # long after the window ran.
        if not isinstance(self.text, str):
            raise InvalidInputError(f"Generation.text must be a str, got {type(self.text).__name__}")
        for name in ("output_tokens", "prompt_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise InvalidInputError(f"Generation.{name} must be an int >= 0 or None, got {value!r:.60}")
        if self.finish_reason is not None and not isinstance(self.finish_reason, str):
            raise InvalidInputError(f"Generation.finish_reason must be a str or None, got {self.finish_reason!r:.60}")
        if self.seconds is not None and (
            isinstance(self.seconds, bool) or not isinstance(self.seconds, (int, float)) or not self.seconds >= 0
        ):
            raise InvalidInputError(f"Generation.seconds must be a number >= 0 or None, got {self.seconds!r:.60}")


class Backend(ABC):
    """Base class of model backends.

    A backend implements :meth:`generate`; one that can hand results back as they finish (so progress bars
    move and caches fill during a long batch) also overrides :meth:`stream`. One that can take requests one
    at a time while others run (a server, an async engine, continuous batching) overrides :meth:`agenerate`:
    the reranker then streams windows to it (each query advances as soon as its own windows are back)
    instead of sending window rounds in lockstep batches. ``tokenizer`` is the model's
    Hugging Face tokenizer when the backend has one: the reranker uses it to render the chat template and
    truncate passages exactly as the official code does.

    Examples:
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

    @classmethod
    def option_names(cls, *, loading: bool = True) -> frozenset[str] | None:
        """The keyword options ``from_pretrained`` (``loading=True``) or the constructor accepts; ``None``: any.

        Read from the signature (``None`` when it takes ``**options``; a backend whose loader passes them on to
        its constructor returns :func:`loader_options`). Used to reject a mistyped option before a model loads.
        """
        if not loading:
            return _keywords(cls.__init__, keyword_only=False)
        loader = getattr(cls, "from_pretrained", None)
        if loader is None:
            return frozenset()
        return _keywords(loader, keyword_only=False, skip_first=True)

    def close(self) -> None:
        """Release resources (servers, GPU memory). The default does nothing."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def timed_stream(backend: Backend, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Generation, float]]:
    """``backend.stream`` with each result's seconds: the backend's own figure, else the time since the last one.

    Checks the backend keeps its contract: each item is an ``(index, Generation)`` pair whose index is an int in
    ``range(len(requests))`` not seen before, or :class:`~reasonrank.BackendError` names the backend.
    """
    last = time.perf_counter()
    seen: set[int] = set()
    for item in backend.stream(requests):
        index, generation = _checked_item(backend, item, len(requests), seen)
        now = time.perf_counter()
        seconds = getattr(generation, "seconds", None)
        yield index, generation, seconds if seconds is not None else now - last
        last = now


def _checked_item(backend: Backend, item: Any, count: int, seen: set[int]) -> tuple[int, Generation]:
    who = f"backend {type(backend).__name__} ({backend.name!r})"
    if not isinstance(item, tuple) or len(item) != 2:
        raise BackendError(f"{who} yielded {item!r:.80} from stream(); expected (request_index, Generation) pairs")
    index, generation = item
    if isinstance(index, bool) or not isinstance(index, int):
        raise BackendError(f"{who} yielded the request index {index!r:.40} ({type(index).__name__}); it must be an int")
    if not 0 <= index < count:
        raise BackendError(f"{who} yielded the request index {index}, out of range for {count} request(s)")
    if index in seen:
        raise BackendError(f"{who} yielded the request index {index} twice; each request gets exactly one result")
    if not isinstance(generation, Generation):
        raise BackendError(f"{who} yielded {generation!r:.80} for request {index}; expected a Generation")
    seen.add(index)
    return index, generation


def _keywords(
    function: Any, *, keyword_only: bool, skip_first: bool = False, open_ok: bool = False
) -> frozenset[str] | None:
    """Names ``function`` takes by keyword (``self``/``cls`` left out); None if it takes ``**kwargs``
    (unless ``open_ok``: then the named ones)."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # a builtin or C signature: cannot tell
        return None
    if parameters and parameters[0].name in ("self", "cls"):
        parameters = parameters[1:]
    if skip_first and parameters and parameters[0].kind is not inspect.Parameter.KEYWORD_ONLY:
        parameters = parameters[1:]  # the model
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters) and not open_ok:
        return None
    kinds: tuple[inspect._ParameterKind, ...] = (inspect.Parameter.KEYWORD_ONLY,)
    if not keyword_only:
        kinds += (inspect.Parameter.POSITIONAL_OR_KEYWORD,)
    return frozenset(p.name for p in parameters if p.kind in kinds)


def check_options(
    backend_cls: type[Backend], options: Mapping[str, Any], *, loading: bool = True, also: Sequence[str] = ()
) -> None:
    """Raise :class:`~reasonrank.UnknownNameError` for an option ``backend_cls`` does not take (a typo), naming
    the closest valid one; ``also`` are other names the caller accepts (shown, and used for the suggestion)."""
    valid = backend_cls.option_names(loading=loading)
    if valid is None:
        return
    unknown = sorted(k for k in options if k not in valid)
    if not unknown:
        return
    where = f"{backend_cls.name} backend option"
    hint = f"also unknown: {', '.join(map(repr, unknown[1:]))}" if len(unknown) > 1 else ""
    raise UnknownNameError(where, unknown[0], sorted(valid | set(also)), hint)


def check_model_path(model: str) -> None:
    """Raise :class:`~reasonrank.InvalidInputError` when ``model`` is written as a local path that does not exist.

    A hub id is ``name`` or ``org/name``; anything starting with ``/``, ``./``, ``../`` or ``~``, holding a
    backslash or more than one ``/``, or naming a ``.gguf`` file is a local path, and loaders would otherwise
    report it as an invalid repo id.
    """
    if not isinstance(model, str) or not model:
        raise InvalidInputError("model must be a hub id (org/name) or a local path")
    looks_local = (
        model.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or "\\" in model
        or model.count("/") > 1
        or model.lower().endswith(".gguf")
        or (len(model) > 1 and model[1] == ":")  # C:\\models
    )
    if looks_local and not os.path.exists(os.path.expanduser(model)):
        raise InvalidInputError(
            f"the local path {model!r} does not exist (a hub id looks like 'org/name'); check the path"
        )


def loader_options(backend_cls: type[Backend]) -> frozenset[str] | None:
    """The options of a ``from_pretrained`` that passes its ``**options`` on to the constructor: its own
    keywords plus the constructor's keyword-only ones."""
    own = _keywords(backend_cls.from_pretrained, keyword_only=False, skip_first=True, open_ok=True)  # type: ignore[attr-defined]
    passed_on = _keywords(backend_cls.__init__, keyword_only=True)
    return None if own is None or passed_on is None else own | passed_on
