"""Exceptions raised by reasonrank.

Every exception the library raises on purpose derives from :class:`ReasonRankError`, and the ones that are
about bad input also derive from the built-in type a caller would expect (``ValueError``, ``TypeError``,
``ImportError``), so ``except ValueError`` keeps working::

    ReasonRankError
    ├── InvalidInputError (+ ValueError)      bad query, passages, window/step, top_k, ...
    │   └── UnknownNameError (+ KeyError)     unknown template, backend, parser style or preset
    ├── PassageTypeError (+ TypeError)        a passage or its text is not of a usable type
    ├── MissingDependencyError (+ ImportError)  an optional extra is not installed
    ├── ParseError                            strict parsing found a malformed ranking
    └── BackendError                          the model backend failed for a window
        └── WindowFailedError                 some windows never completed (names them)
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

__all__ = [
    "BackendError",
    "InvalidInputError",
    "MissingDependencyError",
    "ParseError",
    "PassageTypeError",
    "ReasonRankError",
    "UnknownNameError",
    "WindowFailedError",
]


class ReasonRankError(Exception):
    """Base class of every error reasonrank raises on purpose."""


class InvalidInputError(ReasonRankError, ValueError):
    """An argument has a value the library cannot use; the message says what to pass instead."""


class UnknownNameError(InvalidInputError, KeyError):
    """A name (template, backend, parser style, preset) is not registered; the message lists valid names."""

    def __init__(self, kind: str, name: object, valid: Sequence[str], hint: str = "") -> None:
        self.kind = kind
        self.name = name
        self.valid = tuple(valid)
        message = f"unknown {kind} {name!r}"
        close = closest_name(name, self.valid)
        if close is not None:
            message += f" (did you mean {close!r}?)"
        message += f"; valid names: {', '.join(self.valid) or '(none registered)'}"
        if hint:
            message += f". {hint}"
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


def closest_name(name: object, valid: Sequence[str]) -> str | None:
    """The valid name closest to a mistyped one (``difflib``), or None when nothing is close.

    Examples:
        >>> closest_name("rank-gpt", ["rankgpt", "reasonrank", "rearank"])
        'rankgpt'
    """
    if not isinstance(name, str):
        return None
    folded = {v.lower().replace("-", "_"): v for v in valid}
    matches = difflib.get_close_matches(name.lower().replace("-", "_"), list(folded), n=1, cutoff=0.6)
    return folded[matches[0]] if matches else None


class PassageTypeError(ReasonRankError, TypeError):
    """A passage, or a field of it, has a type the library cannot turn into prompt text."""


class MissingDependencyError(ReasonRankError, ImportError):
    """An optional dependency is missing; the message names the ``pip install`` that adds it."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'reasonrank[{extra}]'"
        )


class ParseError(ReasonRankError):
    """Raised by ``parse_ranking(..., strict=True)`` when the model output is not a clean permutation."""

    def __init__(self, message: str, *, text: str, repairs: Sequence[Any] = ()) -> None:
        self.text = text
        self.repairs = tuple(repairs)
        super().__init__(message)


class BackendError(ReasonRankError):
    """The backend raised while generating; ``query`` and ``window`` say where, ``__cause__`` says why."""

    def __init__(self, message: str, *, query: str | None = None, qid: str | None = None, window: Any = None) -> None:
        self.query = query
        self.qid = qid
        self.window = window
        super().__init__(message)


class WindowFailedError(BackendError):
    """Some windows did not complete; ``failed`` lists ``(qid, (start, end))`` for each of them.

    Windows that completed before the failure are not lost: ``completed`` holds their count, and the
    evaluation cache (``reasonrank eval``) keeps their outputs so that a rerun resumes after them.
    """

    def __init__(
        self,
        message: str,
        *,
        failed: Sequence[tuple[str, tuple[int, int]]],
        completed: int,
        query: str | None = None,
        qid: str | None = None,
        window: Any = None,
    ) -> None:
        self.failed = tuple(failed)
        self.completed = completed
        super().__init__(message, query=query, qid=qid, window=window)
