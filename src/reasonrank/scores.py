"""The ``relevance_score`` that reasonrank reports to frameworks and HTTP clients.

A listwise reranker outputs an order, not calibrated scores. Where an API needs a number per document
(Cohere-style ``relevance_score``, LangChain's ``metadata["relevance_score"]``, LlamaIndex's
``NodeWithScore.score``, Haystack's ``Document.score``), reasonrank gives the reciprocal of the 1-based rank:

    relevance_score(rank) = 1 / rank        (1.0, 0.5, 0.333..., 0.25, ...)

It is in (0, 1], strictly decreasing in rank, and does not depend on how many candidates were reranked, so
cutting a list to its ``top_n`` does not change the scores kept. It is *not* a probability of relevance:
compare scores within one ranking, and do not threshold them across queries.
"""

from __future__ import annotations

from ._errors import InvalidInputError

__all__ = ["relevance_score"]


def relevance_score(rank: int) -> float:
    """The reported score of the document at 1-based position ``rank``: ``1 / rank``, in (0, 1].

    Examples:
        >>> [relevance_score(r) for r in (1, 2, 4)]
        [1.0, 0.5, 0.25]

    Raises :class:`~reasonrank.InvalidInputError` unless ``rank`` is an int >= 1.
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise InvalidInputError(f"rank must be an int >= 1 (1 is the best), got {rank!r}")
    return 1.0 / rank
