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
import json
import logging
import math
import os
import queue
import random
import threading
import time
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import BackendError, InvalidInputError, MissingDependencyError
from .._types import SamplingParams
from ._base import Backend, Generation, GenerationRequest, check_options, loader_options
from ._secrets import Hidden, Secrets, check_header_value, is_secret_header, split_urls

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "SERVER_PROFILES",
    "OpenAIBackend",
    "OpenAIStats",
    "RequestsFailedError",
    "ServerProfile",
]

logger = logging.getLogger(__name__)

#: HTTP statuses worth retrying: rate limits, overload, gateway trouble, server errors
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

#: default bound on one response body (decoded bytes): a ReasonRank answer is ~15 KB, so 8 MiB leaves room for
#: long reasoning and logprobs while a runaway or hostile server cannot fill memory, the cache or the traces
DEFAULT_MAX_RESPONSE_BYTES = 8 * 2**20

#: token counts above this are not believed (no context is this long): recorded as unknown
_MAX_TOKEN_COUNT = 100_000_000


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


class _Retry(Exception):
    """An answer that is a server fault worth retrying (HTTP 200 with an error body)."""


class _TooLarge(Exception):
    """The answer exceeded ``max_response_bytes`` (retried: another attempt or server may answer sanely)."""


class OpenAIBackend(Backend):
    """Generate with any OpenAI-compatible server.

    ``base_url`` is the API root including ``/v1`` (one URL or a list: requests go to the least-loaded server and
    fail over when one errors). The API key comes from ``api_key`` or the environment variable ``api_key_env``
    (``OPENAI_API_KEY``); surrounding whitespace is stripped (a key read from a file keeps its newline), a key that
    cannot be an HTTP header value is refused without being shown, and it is sent as a bearer token. Neither the
    key, nor ``headers`` values whose names hold ``auth``/``key``/``token``/``secret``/``password``/``cookie``,
    nor credentials in a URL (``http://user:pass@host/v1``, sent as basic auth) appear in logs (httpx's
    included), reprs, errors, traces or caches, even when a server quotes them back.

    ``timeout`` (seconds) bounds each attempt as a whole, connection to last byte, so a server trickling bytes
    cannot hold a request past it; ``connect_timeout`` bounds connecting. ``max_response_bytes`` (default
    :data:`DEFAULT_MAX_RESPONSE_BYTES`, 8 MiB, decompressed) bounds each answer: a larger one is dropped and the
    request retried, then reported. Timeouts, dropped connections, 408/409/425/429/5xx and HTTP 200 answers whose
    body is ``{"error": ...}`` are retried ``max_retries`` times with jittered exponential backoff (honouring
    ``Retry-After``). Token counts a server reports that are no count (a string, negative, fractional,
    non-finite or above 10**8) are recorded as unknown (``None``) with a warning.
    ``server`` names the extra sampling fields the server understands (:data:`SERVER_PROFILES`: ``vllm``,
    ``sglang``, ``llama.cpp``, ``openai``); every decoding field is sent explicitly so the server's own defaults
    (or the checkpoint's ``generation_config``) cannot change decoding. ``tokenizer`` (a Hugging Face tokenizer
    or its name/path) renders the chat template and truncates passages; without one the reranker renders with
    the built-in Qwen2.5 ChatML template, which is exact for ReasonRank-7B/32B and REARANK-7B.

    Examples:
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
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise InvalidInputError("model must be the model name the server serves, e.g. 'liuwenhan/reasonrank-7B'")
        urls, url_secrets, url_auth = split_urls(base_url)
        if mode not in ("completions", "chat"):
            raise InvalidInputError(f"mode must be 'completions' (byte-exact prompts) or 'chat', got {mode!r}")
        if server not in SERVER_PROFILES:
            raise InvalidInputError(f"unknown server {server!r}; use one of {', '.join(SERVER_PROFILES)}")
        for name, value, low in (
            ("max_concurrency", max_concurrency, 1),
            ("max_retries", max_retries, 0),
            ("max_response_bytes", max_response_bytes, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInputError(f"{name} must be an int >= {low}, got {value!r}")
        for name, number, zero_ok in (
            ("timeout", timeout, False),
            ("connect_timeout", connect_timeout, False),
            ("retry_backoff", retry_backoff, True),
            ("retry_backoff_max", retry_backoff_max, True),
        ):
            finite = not isinstance(number, bool) and isinstance(number, (int, float)) and math.isfinite(number)
            if not finite or number < 0 or (number == 0 and not zero_ok):
                raise InvalidInputError(
                    f"{name} must be a finite number {'>=' if zero_ok else '>'} 0 seconds, got {number!r}"
                )
        if add_special_tokens is not None and not SERVER_PROFILES[server].takes_add_special_tokens:
            raise InvalidInputError(f"add_special_tokens is a vLLM field; server={server!r} does not take it")
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        if key is not None:
            key = check_header_value("API key", key, secret=True) or None
        headers = dict(headers or {})
        header_secrets = []
        for name in list(headers):
            secret = is_secret_header(name)
            headers[name] = check_header_value(f"{name!s:.40} header", headers[name], secret=secret)
            if secret:
                header_secrets.append(headers[name])
        _import_httpx()
        self.model = model
        self.base_urls = urls
        self.mode = mode
        self.profile = SERVER_PROFILES[server]
        self.max_concurrency = max_concurrency
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_retries = max_retries
        self.retry_backoff = float(retry_backoff)
        self.retry_backoff_max = float(retry_backoff_max)
        self.max_response_bytes = max_response_bytes
        self.add_special_tokens = add_special_tokens
        self.extra_body = dict(extra_body or {})
        self.stats = OpenAIStats()
        # The raw value given (newline included) is hidden too: a message may quote what was passed.
        raw = [v for v in (api_key, os.environ.get(api_key_env)) if isinstance(v, str)]
        self._api_key = Secrets(key, *raw, *header_secrets, *url_secrets)
        self._headers = Hidden(headers)  # may hold credentials: no repr shows them
        self._url_auth = Hidden(url_auth)
        self._http_options = dict(http_options or {})
        self._transport = transport
        self._warned_counts = False
        self._tokenizer = _load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        self._connections: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Connection] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_pretrained(
        cls, model: str, *, tokenizer: Any = "auto", served_model_name: str | None = None, **options: Any
    ) -> OpenAIBackend:
        """``OpenAIBackend(served_model_name or model, ...)``; ``tokenizer="auto"`` loads ``model``'s tokenizer.

        The tokenizer (needed to truncate passages by tokens as official) is loaded with transformers when it is
        installed and ``model`` is a hub id or local path it can read; otherwise a warning is logged and prompts
        are rendered with the built-in Qwen2.5 ChatML template, without truncation.
        """
        check_options(cls, options)
        if isinstance(tokenizer, str) and tokenizer == "auto":
            tokenizer = _auto_tokenizer(model)
        return cls(served_model_name or model, tokenizer=tokenizer, **options)

    @classmethod
    def option_names(cls, *, loading: bool = True) -> frozenset[str] | None:
        return loader_options(cls) if loading else super().option_names(loading=False)

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
        if isinstance(data, dict) and "error" in data and "choices" not in data:
            # Some servers (and proxies) answer overload or a crashed worker with HTTP 200 and an error body.
            raise _Retry(f"HTTP 200 with an error instead of an answer: {self._redact(str(data['error']))[:300]}")
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
                    if not isinstance(reasoning, str):
                        raise TypeError
                    text = f"<think>{reasoning}</think>{text}"
            usage = data.get("usage") or {}
            if not isinstance(usage, dict):
                usage = {}
        except (KeyError, IndexError, TypeError, AttributeError):
            shown = self._redact(str(data)[: 300 + 4096])[:300]
            raise _Fatal(f"the server's answer is not an OpenAI {self.mode} response: {shown}") from None
        if not isinstance(text, str):
            raise _Fatal(f"the server's answer has no text: {self._redact(str(data)[: 300 + 4096])[:300]}")
        finish = choice.get("finish_reason")
        return Generation(
            # A server echoing the key must not put it in traces or the cache. Model text is only touched for
            # secrets as long as real keys, so that a short test key ("x") cannot change outputs.
            text=self._api_key.redact(text, min_length=12),
            output_tokens=self._token_count(usage, "completion_tokens"),
            prompt_tokens=self._token_count(usage, "prompt_tokens"),
            finish_reason=finish if isinstance(finish, str) else None,
        )

    def _token_count(self, usage: dict[str, Any], name: str) -> int | None:
        """A usage count as an int, or None (unknown) when the server sent something no count can be: a string,
        a negative, fractional or non-finite number, or more than :data:`_MAX_TOKEN_COUNT`."""
        value = usage.get(name)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, bool) and isinstance(value, int) and 0 <= value <= _MAX_TOKEN_COUNT:
            return value
        if not self._warned_counts:
            self._warned_counts = True
            logger.warning(
                "the server sent usage.%s = %s, which is no token count; recorded as unknown (None)",
                name,
                self._redact(repr(value))[:60],
            )
        return None

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

    async def _send(self, client: Any, servers: _Servers, body: dict[str, Any], key: str) -> Generation:
        """POST one request with retries and failover; :class:`_Fatal` when it will not succeed."""
        httpx = _import_httpx()
        b = self
        path = "/completions" if b.mode == "completions" else "/chat/completions"
        last_url = None
        reason = ""
        for attempt in range(b.max_retries + 1):
            url = servers.acquire(avoid=last_url)
            last_url = url
            delay = min(b.retry_backoff_max, b.retry_backoff * 2**attempt) * random.uniform(0.5, 1.0)
            b.stats.attempts += 1
            try:
                # `timeout` bounds the whole request: a server trickling bytes cannot hold it past the deadline.
                status, headers, raw = await asyncio.wait_for(self._post(client, url, path, body), b.timeout)
            except (asyncio.TimeoutError, httpx.TimeoutException):
                reason = f"POST {url}{path} timed out (timeout={b.timeout:g}s for the whole request)"
            except _TooLarge as e:
                reason = f"POST {url}{path}: {e}"
            except httpx.TransportError as e:
                reason = f"POST {url}{path} failed: {type(e).__name__}: {e}"
            else:
                if status == 200:
                    try:
                        generation = b._parse(json.loads(raw))
                    except (ValueError, RecursionError):  # not JSON, or nested deeper than json can read
                        servers.release(url, failed=False)
                        shown = b._redact(raw[:4096].decode("utf-8", "replace"))[:300]
                        raise _Fatal(f"POST {url}{path}: the answer is not JSON: {shown!r}") from None
                    except _Retry as e:
                        reason = f"POST {url}{path}: {e}"
                    except _Fatal:
                        servers.release(url, failed=False)
                        raise
                    else:
                        servers.release(url, failed=False)
                        b.stats.per_server[url] = b.stats.per_server.get(url, 0) + 1
                        return generation
                else:
                    detail = b._redact(raw[:4096].decode("utf-8", "replace"))[:300].strip()
                    reason = f"POST {url}{path} -> HTTP {status}: {detail}"
                    if status not in RETRY_STATUSES:
                        servers.release(url, failed=False)
                        raise _Fatal(reason + _hint(status))
                    retry_after = _retry_after(headers.get("retry-after"))
                    if retry_after is not None:
                        delay = min(b.retry_backoff_max, max(delay, retry_after))
            servers.release(url, failed=True, cooldown=delay)
            if attempt == b.max_retries:
                break
            b.stats.retries += 1
            logger.info("%s: %s; retry %d/%d in %.2fs", key, b._redact(reason), attempt + 1, b.max_retries, delay)
            await asyncio.sleep(delay)
        raise _Fatal(f"gave up after {b.max_retries + 1} attempts; last: {b._redact(reason)}")

    async def _post(self, client: Any, base_url: str, path: str, body: dict[str, Any]) -> tuple[int, Any, bytes]:
        """POST one body; the status, headers and at most ``max_response_bytes`` of (decoded) body."""
        b = self
        limit = b.max_response_bytes
        auth = b._url_auth.value.get(base_url)  # credentials that were in the URL go as basic auth, out of every log
        options = {"auth": auth} if auth else {}
        async with client.stream("POST", base_url + path, json=body, **options) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit and response.status_code == 200:
                raise _TooLarge(_too_large(int(declared), limit))
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    if response.status_code != 200:  # an error page: its start is enough to report it
                        break
                    raise _TooLarge(_too_large(size, limit))
                chunks.append(chunk)
            return response.status_code, response.headers, b"".join(chunks)

    async def agenerate(self, request: GenerationRequest) -> Generation:
        """Send one request from the running event loop, as soon as fewer than ``max_concurrency`` per server are
        in flight (all callers in the loop share the connections and the bound). Cancelling the awaiting task
        cancels the HTTP request. Raises :class:`RequestsFailedError` when it fails for good."""
        body = self.request_body(request)
        connection = self._connection()
        key = request.key or "request"
        async with connection.gate:
            try:
                generation = await self._send(connection.client, connection.servers, body, key)
            except _Fatal as e:
                self.stats.failed += 1
                reason = self._redact(str(e))
                logger.warning("%s failed: %s", key, reason)
                raise RequestsFailedError(f"{key} did not complete: {reason}", failed={0: reason}) from None
        self.stats.completed += 1
        return generation

    def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = self._connections.get(loop)
        if connection is None:
            connection = self._connections[loop] = _Connection(self)
        return connection

    async def aclose(self) -> None:
        """Close the connections :meth:`agenerate` opened in the running event loop."""
        connection = self._connections.pop(asyncio.get_running_loop(), None)
        if connection is not None:
            await connection.client.aclose()

    def _client_options(self, width: int) -> dict[str, Any]:
        httpx = _import_httpx()
        options: dict[str, Any] = {
            "timeout": httpx.Timeout(self.timeout, connect=self.connect_timeout),
            "limits": httpx.Limits(max_connections=width, max_keepalive_connections=width),
            "headers": self._client_headers(),
            **self._http_options,
        }
        if self._transport is not None:
            options["transport"] = self._transport
        return options

    def _redact(self, text: str) -> str:
        return self._api_key.redact(text)

    def _client_headers(self) -> dict[str, str]:
        headers = dict(self._headers.value)
        key = self._api_key.get()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers


class _Connection:
    """What :meth:`OpenAIBackend.agenerate` keeps per event loop: one client, the servers' loads, the bound."""

    def __init__(self, backend: OpenAIBackend) -> None:
        httpx = _import_httpx()
        width = backend.max_concurrency * len(backend.base_urls)
        self.client = httpx.AsyncClient(**backend._client_options(width))
        self.servers = _Servers(backend.base_urls)
        self.gate = asyncio.Semaphore(width)


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
        gate = asyncio.Semaphore(width)
        async with httpx.AsyncClient(**b._client_options(width)) as client:
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
                generation = await self.backend._send(
                    client, servers, self.bodies[i], self.requests[i].key or f"request {i}"
                )
            except _Fatal as e:
                self.failed[i] = self.backend._redact(str(e))
                self.backend.stats.failed += 1
                self.stopping = True
                logger.warning("%s failed: %s", self.requests[i].key or f"request {i}", self.failed[i])
                return
            self.backend.stats.completed += 1
            self.results.put((i, generation))


def _too_large(size: int, limit: int) -> str:
    return (
        f"the answer is larger than max_response_bytes={limit} ({size} bytes or more) and was dropped; "
        "raise max_response_bytes if this server's answers really are that large"
    )


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
