"""The ASGI app: rerank endpoints in the Cohere, Jina/vLLM and TEI formats over one shared :class:`Reranker`."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._errors import InvalidInputError, ReasonRankError
from .._types import Passage, Ranking
from .._version import __version__
from ..reranker import Reranker
from ..strategies import resolve_strategy
from ..window import check_window_args
from ._guard import Guard
from ._metrics import ServeMetrics
from ._progress import TrackedStrategy
from ._protocol import CohereRequest, RerankBody, cohere_response, jina_response, tei_response, to_passages

__all__ = ["ServeSettings", "create_app"]

logger = logging.getLogger("reasonrank.serve")


@dataclass(frozen=True)
class ServeSettings:
    """A server's settings (see :func:`create_app` for their meaning)."""

    model_name: str = "reasonrank"
    api_key: str | None = None
    window: int = 20
    step: int = 10
    top_k: int | None = None
    strategy: str = "sliding"
    window_mode: str = "fixed"
    max_documents: int = 1000
    max_request_bytes: int = 4 * 1024 * 1024
    max_query_chars: int = 10_000
    max_queue: int = 64
    request_timeout: float | None = 600.0

    def __post_init__(self) -> None:
        check_window_args(self.window, self.step)
        resolve_strategy(self.strategy, self.window_mode)  # fails now on an unknown name
        if self.top_k is not None and (
            isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1
        ):
            raise InvalidInputError(f"top_k must be an int >= 1 or None, got {self.top_k!r}")
        for name in ("max_documents", "max_request_bytes", "max_query_chars", "max_queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
        if self.request_timeout is not None and not self.request_timeout > 0:
            raise InvalidInputError(f"request_timeout must be > 0 seconds or None, got {self.request_timeout!r}")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key.strip()):
            raise InvalidInputError("api_key must be a non-empty string (or None for no authentication)")


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(x) for x in item.get("loc", ())) or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)


async def _wait_for_disconnect(receive: Callable[[], Awaitable[Any]]) -> None:
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("abandoned request failed: %r", task.exception())


class _Server:
    """State shared by every request of one app: the reranker, the admission count and the metrics."""

    def __init__(self, reranker: Reranker, settings: ServeSettings, metrics: ServeMetrics) -> None:
        self.reranker = reranker
        self.settings = settings
        self.metrics = metrics
        self.active = 0
        self.peak_active = 0
        self._latency = 1.0  # seconds, a moving average of recent rerank requests (for Retry-After)
        self.strategy = resolve_strategy(settings.strategy, settings.window_mode)
        metrics.queue_limit.set(settings.max_queue)

    # ---------------------------------------------------------------- reranking

    async def rerank(self, request: Request, query: str, passages: list[Passage]) -> Ranking | None:
        """Rerank within the queue bound and the deadline; ``None`` for no documents."""
        s = self.settings
        if len(passages) > s.max_documents:
            raise _HTTPError(400, f"{len(passages)} documents is more than the server's limit of {s.max_documents}")
        if len(query) > s.max_query_chars:
            raise _HTTPError(
                400,
                f"the query has {len(query)} characters, more than the server's limit of {s.max_query_chars}",
            )
        if not query.strip():
            raise _HTTPError(422, "query is empty: send the search query text")
        if not passages:
            return None
        if self.active >= s.max_queue:
            retry = max(1, math.ceil(self._latency))
            raise _HTTPError(
                429,
                f"the server is busy ({self.active} requests in progress, limit {s.max_queue}); retry in {retry} s",
                {"Retry-After": str(retry)},
            )
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        self.metrics.queue_depth.set(self.active)
        started = time.perf_counter()
        progress = TrackedStrategy(self.strategy)
        # Every request's windows go through the reranker's one dispatcher in this event loop, so concurrent
        # requests are batched together; cancelling the task cancels the request's windows.
        work = asyncio.ensure_future(
            self.reranker.arerank(query, passages, window=s.window, step=s.step, top_k=s.top_k, strategy=progress)
        )
        gone = asyncio.ensure_future(_wait_for_disconnect(request.receive))
        try:
            done, _ = await asyncio.wait({work, gone}, timeout=s.request_timeout, return_when=asyncio.FIRST_COMPLETED)
            if work in done:
                ranking: Ranking = work.result()
                self._latency = 0.8 * self._latency + 0.2 * (time.perf_counter() - started)
                return ranking
            work.cancel()
            work.add_done_callback(_retrieve)
            if gone in done:
                raise _HTTPError(499, f"the client closed the connection; {progress.unfinished()} (cancelled)")
            raise _HTTPError(
                504,
                f"the request's deadline of {s.request_timeout:g} s passed: {progress.unfinished()} "
                "(cancelled); send fewer documents or ask the operator for a longer --request-timeout",
            )
        except (InvalidInputError, ReasonRankError) as e:
            status = 400 if isinstance(e, InvalidInputError) else 502
            raise _HTTPError(status, str(e)) from None
        finally:
            gone.cancel()
            self.active -= 1
            self.metrics.queue_depth.set(self.active)

    def record(self, ranking: Ranking | None, documents: int) -> None:
        m = self.metrics
        m.documents.inc(documents)
        if ranking is None:
            return
        m.windows.inc(len(ranking.windows))
        for w in ranking.windows:
            if w.seconds is not None:
                m.window_seconds.observe(w.seconds)
            if w.prompt_tokens:
                m.tokens.labels("prompt").inc(w.prompt_tokens)
            if w.output_tokens:
                m.tokens.labels("output").inc(w.output_tokens)

    # ---------------------------------------------------------------- routes

    async def _body(self, request: Request, model: type[CohereRequest]) -> Any:
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise _HTTPError(400, f"request body is not valid JSON ({e}); send a JSON object") from None
        except RecursionError:
            raise _HTTPError(
                400, "request body is not valid JSON (nested too deeply); send a flat JSON object"
            ) from None
        if not isinstance(data, dict):
            raise _HTTPError(422, f"request body must be a JSON object, got {type(data).__name__}")
        try:
            return model.model_validate(data)
        except ValidationError as e:
            raise _HTTPError(422, f"invalid request: {_describe(e)}") from None

    async def _handle(self, request: Request, endpoint: str, build: Callable[[Request], Awaitable[Any]]) -> Response:
        started = time.perf_counter()
        try:
            payload = await build(request)
            response: Response = JSONResponse(payload)
        except _HTTPError as e:
            if e.status >= 500 and e.status != 504:
                logger.warning("%s: %s", endpoint, e.message)
            response = _error(e.status, e.message, e.headers)
        except Exception:  # never a stack trace to the client; the log keeps it
            logger.exception("%s: unexpected error", endpoint)
            response = _error(500, "internal error while reranking; the server log has the details")
        self.metrics.requests.labels(endpoint, str(response.status_code)).inc()
        if response.status_code == 200:
            self.metrics.duration.labels(endpoint).observe(time.perf_counter() - started)
        return response

    async def _cohere(self, request: Request, version: Literal["1", "2"]) -> dict[str, Any]:
        body: CohereRequest = await self._body(request, CohereRequest)
        passages = self._passages(body.documents, body.rank_fields)
        ranking = await self.rerank(request, body.query, passages)
        self.record(ranking, len(passages))
        return cohere_response(uuid.uuid4().hex, ranking, body, version=version, model=self.settings.model_name)

    async def _rerank_any(self, request: Request) -> Any:
        body: RerankBody = await self._body(request, RerankBody)
        if body.documents is None and body.texts is None:
            raise _HTTPError(422, "send 'documents' (Cohere/Jina/vLLM format) or 'texts' (TEI format)")
        if body.documents is not None and body.texts is not None:
            raise _HTTPError(422, "send either 'documents' or 'texts', not both")
        documents = body.documents if body.documents is not None else body.texts or []
        passages = self._passages(documents, body.rank_fields)
        ranking = await self.rerank(request, body.query, passages)
        self.record(ranking, len(passages))
        if body.texts is not None:
            return tei_response(ranking, body)
        return jina_response(uuid.uuid4().hex, ranking, body, model=self.settings.model_name)

    @staticmethod
    def _passages(documents: Any, rank_fields: list[str] | None) -> list[Passage]:
        try:
            return to_passages(documents, rank_fields)
        except ValueError as e:
            raise _HTTPError(422, str(e)) from None

    async def v1(self, request: Request) -> Response:
        return await self._handle(request, "/v1/rerank", lambda r: self._cohere(r, "1"))

    async def v2(self, request: Request) -> Response:
        return await self._handle(request, "/v2/rerank", lambda r: self._cohere(r, "2"))

    async def rerank_route(self, request: Request) -> Response:
        return await self._handle(request, "/rerank", self._rerank_any)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": self.settings.model_name, "version": __version__})

    async def models(self, request: Request) -> Response:
        model = {"id": self.settings.model_name, "object": "model", "owned_by": "reasonrank", "created": 0}
        return JSONResponse({"object": "list", "data": [model]})

    async def prometheus(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(
    reranker: Reranker,
    *,
    model_name: str = "reasonrank",
    api_key: str | None = None,
    window: int = 20,
    step: int = 10,
    top_k: int | None = None,
    strategy: str = "sliding",
    window_mode: str = "fixed",
    max_documents: int = 1000,
    max_request_bytes: int = 4 * 1024 * 1024,
    max_query_chars: int = 10_000,
    max_queue: int = 64,
    request_timeout: float | None = 600.0,
    registry: CollectorRegistry | None = None,
) -> Any:
    """An ASGI app that serves ``reranker`` (any :class:`~reasonrank.Reranker`) over HTTP.

    Endpoints: ``POST /v1/rerank`` and ``/v2/rerank`` (Cohere), ``POST /rerank`` (Jina/vLLM with ``documents``,
    Hugging Face TEI with ``texts``), ``GET /health``, ``GET /v1/models`` (``model_name``) and ``GET /metrics``
    (Prometheus, in ``registry`` or a registry of the app's own). ``relevance_score`` is ``1 / rank``.

    Every request is reranked with ``window``/``step``/``top_k``/``strategy``/``window_mode`` (see
    :meth:`Reranker.rerank`). At most ``max_queue`` rerank requests are in progress at once; more get 429 with
    ``Retry-After``. A request not done after ``request_timeout`` seconds gets 504 and its windows are cancelled,
    as are those of a client that disconnects. With ``api_key`` every endpoint but ``/health`` needs
    ``Authorization: Bearer <api_key>``. Requests over ``max_request_bytes`` get 413; over ``max_documents``
    documents or ``max_query_chars`` query characters, 400; malformed JSON, 400; a body of the wrong shape, 422.

    Run it with any ASGI server, e.g. ``uvicorn.run(create_app(reranker), host="127.0.0.1", port=8000)``, or use
    the ``reasonrank serve`` command.

    Examples:
        >>> from reasonrank import Reranker
        >>> from reasonrank.backends import FakeBackend
        >>> app = create_app(Reranker(FakeBackend(), progress=False), model_name="fake")
        >>> sorted(route.path for route in app.routes)
        ['/health', '/metrics', '/rerank', '/v1/models', '/v1/rerank', '/v2/rerank']
    """
    settings = ServeSettings(
        model_name=model_name,
        api_key=api_key,
        window=window,
        step=step,
        top_k=top_k,
        strategy=strategy,
        window_mode=window_mode,
        max_documents=max_documents,
        max_request_bytes=max_request_bytes,
        max_query_chars=max_query_chars,
        max_queue=max_queue,
        request_timeout=request_timeout,
    )
    metrics = ServeMetrics(registry, stats=getattr(reranker, "stats", None))
    server = _Server(reranker, settings, metrics)
    routes = [
        Route("/v1/rerank", server.v1, methods=["POST"]),
        Route("/v2/rerank", server.v2, methods=["POST"]),
        Route("/rerank", server.rerank_route, methods=["POST"]),
        Route("/health", server.health, methods=["GET"]),
        Route("/v1/models", server.models, methods=["GET"]),
        Route("/metrics", server.prometheus, methods=["GET"]),
    ]

    async def not_routed(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        paths = ", ".join(sorted(r.path for r in routes))
        return _error(status, f"{request.method} {request.url.path} is not served here ({status}); endpoints: {paths}")

    app = Starlette(routes=routes, exception_handlers={404: not_routed, 405: not_routed})
    app.state.reasonrank = server

    def refused(path: str, status: int) -> None:
        metrics.requests.labels(path if path in {r.path for r in routes} else "other", str(status)).inc()

    app.add_middleware(
        Guard,
        api_key=settings.api_key,
        max_request_bytes=settings.max_request_bytes,
        on_refused=refused,
    )
    return app
