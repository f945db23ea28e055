"""ASGI middleware in front of every route: bearer-key auth and the request-size limit.

It runs before any route reads a byte of the body, so an unauthenticated or oversized request costs the server
next to nothing. The key is compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["Guard", "send_json_error"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_json_error(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    """Answer with ``{"message": ...}`` (Cohere's error shape) and ``status``."""
    body = json.dumps({"message": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


class Guard:
    """Refuses requests without the bearer key (401, except on ``open_paths``) and bodies over
    ``max_request_bytes`` (413), then hands the route the body it already read."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key: str | None,
        max_request_bytes: int,
        open_paths: tuple[str, ...] = ("/health",),
        on_refused: Callable[[str, int], None] | None = None,
    ) -> None:
        self.app = app
        self._key = None if api_key is None else api_key.encode()
        self.max_request_bytes = max_request_bytes
        self.open_paths = open_paths
        self.on_refused = on_refused

    def _authorized(self, scope: Scope) -> bool:
        if self._key is None or scope.get("path") in self.open_paths:
            return True
        given = _bearer(scope)
        # compare_digest takes the same time wherever the first difference is (its length still shows).
        return given is not None and hmac.compare_digest(given, self._key)

    async def _refuse(self, scope: Scope, send: Send, status: int, message: str, **headers: str) -> None:
        if self.on_refused is not None:
            self.on_refused(str(scope.get("path", "")), status)
        await send_json_error(send, status, message, {k.replace("_", "-"): v for k, v in headers.items()})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._authorized(scope):
            await self._refuse(
                scope,
                send,
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                www_authenticate="Bearer",
            )
            return
        limit = self.max_request_bytes
        too_big = f"request body is larger than the server's limit of {limit} bytes"
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(scope, send, 413, too_big)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before sending its whole request
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(scope, send, 413, too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            # The route gets the body once; later calls wait on the real channel (that is how it hears a
            # client disconnect while the model is still working).
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
