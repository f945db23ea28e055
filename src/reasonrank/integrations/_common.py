"""What the framework adapters share: rerank a list of texts, keep the best ``top_n``, attach scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._errors import InvalidInputError, MissingDependencyError
from .._types import Ranking
from ..reranker import Reranker
from ..scores import relevance_score

__all__ = ["arank_texts", "check_reranker", "check_top_n", "framework_import_error", "rank_texts"]

Ranked = list[tuple[int, float]]
"""``(input position, relevance_score)`` pairs, best first."""


def framework_import_error(package: str, extra: str, component: str) -> MissingDependencyError:
    return MissingDependencyError(package, extra, f"reasonrank's {component}")


def check_top_n(top_n: Any, name: str = "top_n") -> int | None:
    """``top_n`` as given if it is None or an int >= 1; otherwise an error that says what to pass."""
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise InvalidInputError(f"{name} must be an int >= 1, or None to return every document; got {top_n!r}")
    return top_n


def check_reranker(reranker: Any) -> Reranker:
    if not isinstance(reranker, Reranker):
        raise InvalidInputError(
            f"reranker must be a reasonrank.Reranker, got {type(reranker).__name__}; build one with "
            "Reranker.from_pretrained('liuwenhan/reasonrank-7B') or Reranker(backend)"
        )
    return reranker


def _best(ranking: Ranking, top_n: int | None) -> Ranked:
    kept = ranking.passages if top_n is None else ranking.passages[:top_n]
    return [(p.index, relevance_score(rank)) for rank, p in enumerate(kept, start=1)]


def rank_texts(reranker: Reranker, query: str, texts: Sequence[str], *, top_n: int | None, **options: Any) -> Ranked:
    """Rerank ``texts`` for ``query``: the best ``top_n`` (all if None) as ``(input position, score)``.

    ``options`` go to :meth:`Reranker.rerank` (``window``, ``step``, ``strategy``). An empty ``texts`` gives
    ``[]`` without calling the model (RAG retrievers do return nothing sometimes).
    """
    if not texts:
        return []
    return _best(reranker.rerank(query, list(texts), **options), top_n)


async def arank_texts(
    reranker: Reranker, query: str, texts: Sequence[str], *, top_n: int | None, **options: Any
) -> Ranked:
    """:func:`rank_texts` in the caller's event loop, through :meth:`Reranker.arerank`.

    Concurrent calls on one reranker share its backend: their windows go to the model in the same batches
    (batch-only backends) or the same in-flight pool (streaming backends). Cancelling the caller cancels the
    windows not yet sent.
    """
    if not texts:
        return []
    return _best(await reranker.arerank(query, list(texts), **options), top_n)
