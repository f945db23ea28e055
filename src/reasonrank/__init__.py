"""reasonrank: reasoning-intensive listwise passage reranking.

Examples:
    >>> from reasonrank import Reranker
    >>> from reasonrank.backends import FakeBackend
    >>> ranking = Reranker(FakeBackend(), progress=False).rerank("query", ["passage one", "passage two"])
    >>> [p.docid for p in ranking]
    ['0', '1']

Importing this package is cheap: torch, transformers, vllm and numpy load only when a backend needs them.
"""

import logging as _logging

from ._errors import (
    BackendError,
    InvalidInputError,
    MissingDependencyError,
    ParseError,
    PassageTypeError,
    ReasonRankError,
    UnknownNameError,
    WindowFailedError,
)
from ._types import Passage, RankedPassage, Ranking, Repair, SamplingParams, WindowTrace
from ._version import __version__
from .parsing import ParseResult, parse_ranking
from .reranker import Reranker
from .window import window_schedule

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "BackendError",
    "InvalidInputError",
    "MissingDependencyError",
    "ParseError",
    "ParseResult",
    "Passage",
    "PassageTypeError",
    "RankedPassage",
    "Ranking",
    "ReasonRankError",
    "Repair",
    "Reranker",
    "SamplingParams",
    "UnknownNameError",
    "WindowFailedError",
    "WindowTrace",
    "__version__",
    "parse_ranking",
    "window_schedule",
]
