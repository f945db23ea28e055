"""Credentials of HTTP backends: held out of reprs, checked before sending, hidden from every message.

An API key, a credential-like header value or the ``user:pass`` of a URL must never show in an exception, a log
line (httpx's and httpcore's included: they log what fails to send), a trace or a cache. So values are checked
before anything is sent (a key read from a file keeps its newline, which httpcore would log in full), reprs
show ``<hidden>``, and :meth:`Secrets.redact` removes every spelling of every secret from text a server or an
exception hands back.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Sequence
from typing import Any

from .._errors import InvalidInputError

__all__ = ["Hidden", "Secrets", "check_header_value", "is_secret_header", "split_urls"]

# Header names whose values are credentials (never shown, like the API key).
SECRET_HEADER_WORDS = ("auth", "key", "token", "secret", "password", "cookie", "signature")


def is_secret_header(name: object) -> bool:
    """Whether a header's value is a credential (its name holds auth, key, token, secret, ...)."""
    return any(word in str(name).lower() for word in SECRET_HEADER_WORDS)


class Secrets:
    """Holds credentials (the API key, secret headers, URL passwords) so that no repr, log line or traceback local
    shows them; :meth:`redact` hides each of them, in the spellings an error message may use, from any text."""

    __slots__ = ("_hidden", "_value")

    def __init__(self, value: str | None, *also: str) -> None:
        self._value = value
        variants: set[str] = set()
        for secret in (value, *also):
            if secret:
                variants.update(_spellings(secret))
        # longest first, so that a key is hidden whole before any shorter secret inside it
        self._hidden = tuple(sorted((v for v in variants if v), key=len, reverse=True))

    def get(self) -> str | None:
        return self._value

    def redact(self, text: str, *, min_length: int = 0) -> str:
        """``text`` with every spelling of every secret (of at least ``min_length`` characters) replaced."""
        for secret in self._hidden:
            if len(secret) >= min_length and secret in text:
                text = text.replace(secret, "<hidden>")
        return text

    def __repr__(self) -> str:
        return "<hidden>" if self._value else "None"


class Hidden:
    """A value (the extra headers) that no repr shows."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<hidden>"


def _spellings(secret: str) -> set[str]:
    """``secret`` as a message may show it: raw and stripped, escaped as repr, bytes repr and JSON do (two layers
    deep: a server may put the repr of a header in a JSON error body), and base64 (basic auth)."""
    forms = {secret, secret.strip()}
    for _ in range(2):
        for form in list(forms):
            forms.add(repr(form)[1:-1])
            forms.add(repr(form.encode("utf-8", "backslashreplace"))[2:-1])
            forms.add(json.dumps(form)[1:-1])
            forms.add(json.dumps(form, ensure_ascii=False)[1:-1])
    forms.add(base64.b64encode(secret.strip().encode("utf-8", "backslashreplace")).decode("ascii"))
    return {f for f in forms if len(f) >= 4 or f == secret}


def check_header_value(name: str, value: object, *, secret: bool) -> str:
    """A header value httpx can send, stripped (a key read from a file keeps its newline): visible ASCII, spaces
    and tabs inside. A secret value is never shown, whatever it holds."""
    if not isinstance(value, str):
        raise InvalidInputError(f"the {name} must be a str, got {type(value).__name__}")
    value = value.strip()
    bad = next((i for i, c in enumerate(value) if not (" " <= c <= "~" or c == "\t")), None)
    if bad is None:
        return value
    shown = "the value is not shown" if secret else f"value {value!r:.80}"
    raise InvalidInputError(
        f"the {name} has a character that cannot be sent in an HTTP header (a control or non-ASCII character at "
        f"position {bad} after stripping; {shown}); check what was read"
    )


def split_urls(base_url: Any) -> tuple[list[str], list[str], dict[str, tuple[str, str]]]:
    """Base URLs without credentials (``http://user:pass@host`` would show up in logs and errors), the
    credentials to hide, and each credentialed URL's basic-auth pair."""
    urls = [base_url] if isinstance(base_url, str) else list(base_url) if isinstance(base_url, Sequence) else []
    if not urls or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
        shown = [u.rpartition("@")[2] if isinstance(u, str) else type(u).__name__ for u in urls] or base_url
        raise InvalidInputError(
            f"base_url must be one or more http(s) URLs such as http://host:8000/v1, got {shown!r:.200}"
        )
    clean: list[str] = []
    secrets: list[str] = []
    auth: dict[str, tuple[str, str]] = {}
    for url in urls:
        parts = urllib.parse.urlsplit(url.rstrip("/"))
        if "@" in parts.netloc:
            userinfo, _, host = parts.netloc.rpartition("@")
            user, _, password = userinfo.partition(":")
            user, password = urllib.parse.unquote(user), urllib.parse.unquote(password)
            secrets += [s for s in (userinfo, password, f"{user}:{password}") if s]
            parts = parts._replace(netloc=host)
            auth[parts.geturl()] = (user, password)
        clean.append(parts.geturl())
    return clean, secrets, auth
