"""OpenAI-compatible HTTP backend: vLLM ``serve``, SGLang, TGI, llama.cpp's server, hosted APIs.

Install with ``pip install 'reasonrank[openai]'`` (it needs only ``httpx``). Two modes:

* ``mode="completions"`` (default): ``POST {base_url}/completions`` with the prompt rendered here (chat template
  and ``fix_text`` over the whole string, byte-identical to the official pipeline).
* ``mode="chat"``: ``POST {base_url}/chat/completions`` with the messages; the server applies its own chat
  template and no ``fix_text`` runs over the rendered prompt, so prompts are *not* byte-identical (for hosted
  chat-only APIs).

Windows run concurrently (asyncio, bounded by ``max_concurrency`` per server), spread over several
``base_url`` servers, with retries and backoff on 429/5xx, timeouts and dropped connections.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import random
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import BackendError, InvalidInputError, MissingDependencyError
from .._types import SamplingParams
from ._base import Backend, Generation, GenerationRequest

__all__ = ["SERVER_PROFILES", "OpenAIBackend", "OpenAIStats", "RequestsFailedError", "ServerProfile"]

logger = logging.getLogger(__name__)

#: HTTP statuses worth retrying: rate limits, overload, gateway trouble, server errors
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class ServerProfile:
    """The sampling fields a server takes beyond the OpenAI ones (``fields``: our name -> the server's name).

    ``top_k_off`` is the value that turns top-k off on that server.
    """

    name: str
    fields: Mapping[str, str] = field(default_factory=dict)
    top_k_off: int = -1
    takes_add_special_tokens: bool = False


_VLLM_FIELDS = {
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repetition_penalty",
    "min_tokens": "min_tokens",
}

SERVER_PROFILES: dict[str, ServerProfile] = {
    # vLLM's /v1/completions takes its SamplingParams fields as extra JSON fields, and add_special_tokens.
    "vllm": ServerProfile("vllm", _VLLM_FIELDS, top_k_off=-1, takes_add_special_tokens=True),
    "sglang": ServerProfile("sglang", _VLLM_FIELDS, top_k_off=-1),
    # llama-cpp-python's server (and llama.cpp's llama-server, which ignores min_tokens): its defaults (top_k 40,
    # min_p 0.05, repeat_penalty 1.1) would change decoding, so they are always sent.
    "llama.cpp": ServerProfile(
        "llama.cpp",
        {"top_k": "top_k", "min_p": "min_p", "repetition_penalty": "repeat_penalty", "min_tokens": "min_tokens"},
        top_k_off=0,
    ),
    # Only the OpenAI fields: hosted APIs, TGI, `transformers serve` (which rejects unknown fields).
    "openai": ServerProfile("openai"),
}

_FIELD_DEFAULTS = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0, "min_tokens": 0}


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise MissingDependencyError("httpx", "openai", "The OpenAI-compatible backend") from None
    return httpx


class RequestsFailedError(BackendError):
    """Some requests failed for good; ``failed`` maps each request index to why (the others completed)."""

    def __init__(self, message: str, *, failed: Mapping[int, str]) -> None:
        self.failed = dict(failed)
        super().__init__(message)


@dataclass
class OpenAIStats:
    """Counts over the backend's lifetime: requests sent (attempts included), retries, results per server."""

    attempts: int = 0
    retries: int = 0
    completed: int = 0
    failed: int = 0
    per_server: dict[str, int] = field(default_factory=dict)


class _Secret:
    """Holds the API key so that no repr, log line or traceback local ever shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None) -> None:
        self._value = value

    def get(self) -> str | None:
        return self._value

    def __repr__(self) -> str:
        return "<hidden>" if self._value else "None"


class _Servers:
    """Least-loaded choice among base URLs; a server that just failed cools down and others take over."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = list(urls)
        self.in_flight = dict.fromkeys(self.urls, 0)
        self.cool_until = dict.fromkeys(self.urls, 0.0)
        self._turn = 0

    def acquire(self, avoid: str | None = None) -> str:
        now = time.monotonic()
        self._turn += 1
        n = len(self.urls)

        def rank(k: int) -> tuple[bool, bool, int, int]:
            url = self.urls[k]
            return (self.cool_until[url] > now, url == avoid and n > 1, self.in_flight[url], (k - self._turn) % n)

        url = self.urls[min(range(n), key=rank)]
        self.in_flight[url] += 1
        return url

    def release(self, url: str, *, failed: bool, cooldown: float = 0.0) -> None:
        self.in_flight[url] -= 1
        if failed:
            self.cool_until[url] = time.monotonic() + cooldown


class _Fatal(Exception):
    """A request that will not succeed (a 4xx other than 429, a malformed answer, or out of retries)."""


class OpenAIBackend(Backend):
    """Generate with any OpenAI-compatible server.

    ``base_url`` is the API root including ``/v1`` (one URL or a list: requests go to the least-loaded server and
    fail over when one errors). The API key comes from ``api_key`` or the environment variable ``api_key_env``
    (``OPENAI_API_KEY``); it is sent as a bearer token and never appears in logs, reprs, traces or errors.
    ``server`` names the extra sampling fields the server understands (:data:`SERVER_PROFILES`: ``vllm``,
    ``sglang``, ``llama.cpp``, ``openai``); every decoding field is sent explicitly so the server's own defaults
    (or the checkpoint's ``generation_config``) cannot change decoding. ``tokenizer`` (a Hugging Face tokenizer
    or its name/path) renders the chat template and truncates passages; without one the reranker renders with
    the built-in Qwen2.5 ChatML template, which is exact for ReasonRank-7B/32B and REARANK-7B.

    >>> backend = OpenAIBackend("liuwenhan/reasonrank-7B", base_url=["http://gpu1:8000/v1", "http://gpu2:8000/v1"])
    >>> backend
    <OpenAIBackend 'liuwenhan/reasonrank-7B' completions on 2 servers>
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | Sequence[str] = "http://127.0.0.1:8000/v1",
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        mode: str = "completions",
        server: str = "vllm",
        tokenizer: Any = None,
        max_concurrency: int = 16,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        max_retries: int = 4,
        retry_backoff: float = 0.5,
        retry_backoff_max: float = 20.0,
        add_special_tokens: bool | None = None,
        extra_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        http_options: Mapping[str, Any] | None = None,
        transport: Any = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise InvalidInputError("model must be the model name the server serves, e.g. 'liuwenhan/reasonrank-7B'")
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
            raise InvalidInputError(
                f"base_url must be one or more http(s) URLs such as http://host:8000/v1, got {base_url!r}"
            )
        if mode not in ("completions", "chat"):
            raise InvalidInputError(f"mode must be 'completions' (byte-exact prompts) or 'chat', got {mode!r}")
        if server not in SERVER_PROFILES:
            raise InvalidInputError(f"unknown server {server!r}; use one of {', '.join(SERVER_PROFILES)}")
        for name, value, low in (("max_concurrency", max_concurrency, 1), ("max_retries", max_retries, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInputError(f"{name} must be an int >= {low}, got {value!r}")
        for name, number in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if not number > 0:
                raise InvalidInputError(f"{name} must be > 0 seconds, got {number!r}")
        if add_special_tokens is not None and not SERVER_PROFILES[server].takes_add_special_tokens:
            raise InvalidInputError(f"add_special_tokens is a vLLM field; server={server!r} does not take it")
        _import_httpx()
        self.model = model
        self.base_urls = [u.rstrip("/") for u in urls]
        self.mode = mode
        self.profile = SERVER_PROFILES[server]
        self.max_concurrency = max_concurrency
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_retries = max_retries
        self.retry_backoff = float(retry_backoff)
        self.retry_backoff_max = float(retry_backoff_max)
        self.add_special_tokens = add_special_tokens
        self.extra_body = dict(extra_body or {})
        self.stats = OpenAIStats()
        self._api_key = _Secret(api_key if api_key is not None else os.environ.get(api_key_env))
        self._headers = dict(headers or {})
        self._http_options = dict(http_options or {})
        self._transport = transport
        self._tokenizer = _load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer

    @classmethod
    def from_pretrained(
        cls, model: str, *, tokenizer: Any = "auto", served_model_name: str | None = None, **options: Any
    ) -> OpenAIBackend:
        """``OpenAIBackend(served_model_name or model, ...)``; ``tokenizer="auto"`` loads ``model``'s tokenizer.

        The tokenizer (needed to truncate passages by tokens as official) is loaded with transformers when it is
        installed and ``model`` is a hub id or local path it can read; otherwise a warning is logged and prompts
        are rendered with the built-in Qwen2.5 ChatML template, without truncation.
        """
        if isinstance(tokenizer, str) and tokenizer == "auto":
            tokenizer = _auto_tokenizer(model)
        return cls(served_model_name or model, tokenizer=tokenizer, **options)

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def __repr__(self) -> str:
        where = self.base_urls[0] if len(self.base_urls) == 1 else f"{len(self.base_urls)} servers"
        return f"<OpenAIBackend {self.model!r} {self.mode} on {where}>"

    # ------------------------------------------------------------------ request bodies

    def _sampling_fields(self, sampling: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        unsupported = []
        for ours, default in _FIELD_DEFAULTS.items():
            value = getattr(sampling, ours)
            if ours == "top_k" and value <= 0:
                value = self.profile.top_k_off
            if ours in self.profile.fields:
                body[self.profile.fields[ours]] = value
            elif getattr(sampling, ours) != default and not (ours == "top_k" and sampling.top_k <= 0):
                unsupported.append(f"{ours}={getattr(sampling, ours)}")
        if unsupported:
            raise InvalidInputError(
                f"server={self.profile.name!r} has no field for {', '.join(unsupported)}; pick a server profile "
                f"that has ({', '.join(p for p in SERVER_PROFILES if p != self.profile.name)}), send it yourself "
                "with extra_body=..., or change the sampling settings"
            )
        return body

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body sent for ``request`` (the API key is a header, never part of it)."""
        body: dict[str, Any] = {"model": self.model}
        if self.mode == "completions":
            body["prompt"] = request.prompt
        else:
            body["messages"] = [dict(m) for m in request.messages]
        body.update(self._sampling_fields(request.sampling))
        if self.add_special_tokens is not None:
            body["add_special_tokens"] = self.add_special_tokens
        body.update(self.extra_body)
        return body

    def _parse(self, data: Any) -> Generation:
        try:
            choice = data["choices"][0]
            if self.mode == "completions":
                text = choice["text"]
            else:
                message = choice["message"]
                text = message.get("content") or ""
                # Servers run with a reasoning parser split the thinking out: put it back where the model wrote it.
                reasoning = message.get("reasoning_content") or message.get("reasoning")
                if reasoning:
                    text = f"<think>{reasoning}</think>{text}"
            usage = data.get("usage") or {}
        except (KeyError, IndexError, TypeError, AttributeError):
            raise _Fatal(f"the server's answer is not an OpenAI {self.mode} response: {str(data)[:300]}") from None
        if not isinstance(text, str):
            raise _Fatal(f"the server's answer has no text: {str(data)[:300]}")
        return Generation(
            text=text,
            output_tokens=usage.get("completion_tokens"),
            prompt_tokens=usage.get("prompt_tokens"),
            finish_reason=choice.get("finish_reason"),
        )

    # ------------------------------------------------------------------ running

    def stream(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Generation]]:
        """Yield ``(index, generation)`` as answers arrive.

        After a request fails for good (out of retries, or a 4xx other than 429) no new request starts; those in
        flight finish and are yielded; then :class:`RequestsFailedError` names every request not completed.
        """
        if not requests:
            return
        bodies = [self.request_body(r) for r in requests]  # bad settings fail here, before anything is sent
        run = _Run(self, requests, bodies)
        thread = threading.Thread(target=run.main, name="reasonrank-openai", daemon=True)
        thread.start()
        try:
            while True:
                item = run.results.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            run.cancel()
            thread.join()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        for index, generation in self.stream(requests):
            results[index] = generation
        return results  # type: ignore[return-value]

    def _redact(self, text: str) -> str:
        key = self._api_key.get()
        return text.replace(key, "<hidden>") if key else text

    def _client_headers(self) -> dict[str, str]:
        headers = dict(self._headers)
        key = self._api_key.get()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers


class _Run:
    """One ``stream()`` call: an asyncio loop in a helper thread feeding ``results`` as answers arrive."""

    def __init__(self, backend: OpenAIBackend, requests: Sequence[GenerationRequest], bodies: list[dict[str, Any]]):
        self.backend = backend
        self.requests = requests
        self.bodies = bodies
        self.results: queue.Queue[Any] = queue.Queue()
        self.failed: dict[int, str] = {}
        self.stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None

    def main(self) -> None:
        try:
            asyncio.run(self._main())
        except asyncio.CancelledError:
            self.results.put(None)
        except BaseException as e:  # never leave the consumer waiting
            self.results.put(BackendError(self.backend._redact(f"the request loop failed: {type(e).__name__}: {e}")))

    def cancel(self) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not task.done():
            loop.call_soon_threadsafe(task.cancel)

    async def _main(self) -> None:
        httpx = _import_httpx()
        b = self.backend
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        servers = _Servers(b.base_urls)
        width = b.max_concurrency * len(b.base_urls)
        client_options: dict[str, Any] = {
            "timeout": httpx.Timeout(b.timeout, connect=b.connect_timeout),
            "limits": httpx.Limits(max_connections=width, max_keepalive_connections=width),
            "headers": b._client_headers(),
            **b._http_options,
        }
        if b._transport is not None:
            client_options["transport"] = b._transport
        gate = asyncio.Semaphore(width)
        async with httpx.AsyncClient(**client_options) as client:
            await asyncio.gather(*(self._one(client, servers, gate, i) for i in range(len(self.requests))))
        if self.failed:
            self.results.put(self._error())
        else:
            self.results.put(None)

    def _error(self) -> RequestsFailedError:
        keys = [self.requests[i].key or f"request {i}" for i in sorted(self.failed)]
        first = self.failed[min(self.failed)]
        shown = "; ".join(keys[:5]) + (" ..." if len(keys) > 5 else "")
        message = f"{len(keys)} of {len(self.requests)} requests did not complete ({shown}); first error: {first}"
        return RequestsFailedError(self.backend._redact(message), failed=self.failed)

    async def _one(self, client: Any, servers: _Servers, gate: asyncio.Semaphore, i: int) -> None:
        async with gate:
            if self.stopping:
                self.failed[i] = "not sent: an earlier request failed for good"
                return
            try:
                generation = await self._attempts(client, servers, i)
            except _Fatal as e:
                self.failed[i] = self.backend._redact(str(e))
                self.backend.stats.failed += 1
                self.stopping = True
                logger.warning("%s failed: %s", self.requests[i].key or f"request {i}", self.failed[i])
                return
            self.backend.stats.completed += 1
            self.results.put((i, generation))

    async def _attempts(self, client: Any, servers: _Servers, i: int) -> Generation:
        httpx = _import_httpx()
        b = self.backend
        path = "/completions" if b.mode == "completions" else "/chat/completions"
        key = self.requests[i].key or f"request {i}"
        last_url = None
        reason = ""
        for attempt in range(b.max_retries + 1):
            url = servers.acquire(avoid=last_url)
            last_url = url
            delay = min(b.retry_backoff_max, b.retry_backoff * 2**attempt) * random.uniform(0.5, 1.0)
            b.stats.attempts += 1
            try:
                response = await client.post(url + path, json=self.bodies[i])
            except httpx.TimeoutException:
                reason = f"POST {url}{path} timed out (timeout={b.timeout:g}s)"
            except httpx.TransportError as e:
                reason = f"POST {url}{path} failed: {type(e).__name__}: {e}"
            else:
                status = response.status_code
                if status == 200:
                    servers.release(url, failed=False)
                    try:
                        generation = b._parse(response.json())
                    except ValueError:
                        raise _Fatal(f"POST {url}{path}: the answer is not JSON: {response.text[:300]!r}") from None
                    b.stats.per_server[url] = b.stats.per_server.get(url, 0) + 1
                    return generation
                detail = response.text[:300].strip()
                reason = f"POST {url}{path} -> HTTP {status}: {detail}"
                if status not in RETRY_STATUSES:
                    servers.release(url, failed=False)
                    raise _Fatal(reason + _hint(status))
                retry_after = _retry_after(response.headers.get("retry-after"))
                if retry_after is not None:
                    delay = min(b.retry_backoff_max, max(delay, retry_after))
            servers.release(url, failed=True, cooldown=delay)
            if attempt == b.max_retries:
                break
            b.stats.retries += 1
            logger.info("%s: %s; retry %d/%d in %.2fs", key, b._redact(reason), attempt + 1, b.max_retries, delay)
            await asyncio.sleep(delay)
        raise _Fatal(f"gave up after {b.max_retries + 1} attempts; last: {reason}")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _hint(status: int) -> str:
    if status in (401, 403):
        return " (check the API key: api_key=... or the OPENAI_API_KEY environment variable)"
    if status == 404:
        return " (check that base_url ends with /v1 and that the server serves this model name)"
    if status in (400, 422):
        return (
            " (a server that rejects vLLM's extra sampling fields needs server='openai'; a prompt longer than the "
            "server's context needs a smaller max_passage_tokens or a larger --max-model-len)"
        )
    return ""


def _load_tokenizer(name: str) -> Any:
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise MissingDependencyError("transformers", "hf", "Loading a tokenizer by name") from None
    return AutoTokenizer.from_pretrained(name)


def _auto_tokenizer(model: str) -> Any:
    try:
        return _load_tokenizer(model)
    except Exception as e:  # no transformers, offline, or a served name that is no hub id
        warnings.warn(
            f"could not load a tokenizer for {model!r} ({type(e).__name__}: {str(e)[:200]}); prompts use the "
            "built-in Qwen2.5 ChatML template and passages are not truncated by tokens. Pass tokenizer=<name or "
            "path> to fix this.",
            UserWarning,
            stacklevel=3,
        )
        return None
