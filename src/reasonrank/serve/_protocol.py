"""The wire formats ``reasonrank serve`` speaks: Cohere v1/v2, Jina/vLLM and TEI rerank requests and responses.

Requests are parsed with pydantic (unknown fields are accepted and ignored, as the hosted APIs do, so clients that
send extra settings keep working); responses are plain dicts. Scores are a function of rank only (see
:func:`reasonrank.scores.relevance_score`): a listwise reranker orders passages, it does not score them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .._types import Passage, Ranking, WindowTrace
from ..scores import relevance_score

__all__ = [
    "CohereRequest",
    "RerankBody",
    "cohere_response",
    "jina_response",
    "relevance_score",
    "tei_response",
    "to_passages",
]

Shape = Literal["cohere-v1", "cohere-v2", "jina", "tei"]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class CohereRequest(_Lenient):
    """Body of ``POST /v1/rerank`` and ``/v2/rerank`` (Cohere), also accepted by Jina/vLLM clients."""

    model: str | None = None
    query: str
    documents: list[str | dict[str, Any]]
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool | None = None
    rank_fields: list[str] | None = None
    max_chunks_per_doc: int | None = None  # accepted, not used: documents are never chunked
    max_tokens_per_doc: int | None = None  # accepted, not used: the model's passage limit applies
    #: reasonrank extension: include each window's reasoning in the response (``reasoning``)
    return_reasoning: bool = False


class RerankBody(CohereRequest):
    """Body of ``POST /rerank``: Jina/vLLM (``documents``) or Hugging Face TEI (``texts``)."""

    documents: list[str | dict[str, Any]] | None = None  # type: ignore[assignment]
    texts: list[str] | None = None
    return_text: bool = False  # TEI
    raw_scores: bool = False  # TEI: accepted; scores are rank-based either way
    truncate: bool | None = None  # TEI: accepted; the model's passage limit applies


def _document_text(document: str | Mapping[str, Any], index: int, rank_fields: Sequence[str] | None) -> str:
    if isinstance(document, str):
        return document
    if rank_fields:
        missing = [f for f in rank_fields if f not in document]
        if missing:
            raise ValueError(f"documents[{index}] has no field(s) {missing} named in rank_fields")
        # Cohere ranks object documents as "key: value" lines of the chosen fields.
        return "\n".join(f"{f}: {document[f]}" for f in rank_fields)
    text = document.get("text")
    if not isinstance(text, str):
        raise ValueError(
            f"documents[{index}] is an object without a string 'text' field; add one or name the fields to rank "
            "with rank_fields"
        )
    return text


def to_passages(
    documents: Sequence[str | Mapping[str, Any]], rank_fields: Sequence[str] | None = None
) -> list[Passage]:
    """The documents of a request as passages; docid is the document's index (``"0"``, ``"1"``, ...).

    Examples:
        >>> [p.text for p in to_passages(["a", {"text": "b", "lang": "en"}])]
        ['a', 'b']
        >>> to_passages([{"title": "T", "body": "x"}], rank_fields=["title", "body"])[0].text.splitlines()
        ['title: T', 'body: x']
    """
    return [Passage(text=_document_text(d, i, rank_fields), docid=str(i)) for i, d in enumerate(documents)]


def _top(ranking: Ranking | None, top_n: int | None) -> list[tuple[int, int]]:
    """``(rank, input index)`` pairs, best first, cut to ``top_n``."""
    if ranking is None:
        return []
    pairs = [(rank, p.index) for rank, p in enumerate(ranking.passages, start=1)]
    return pairs if top_n is None else pairs[:top_n]


def _results(
    ranking: Ranking | None, top_n: int | None, documents: Sequence[str | Mapping[str, Any]], include: bool
) -> list[dict[str, Any]]:
    results = []
    for rank, index in _top(ranking, top_n):
        item: dict[str, Any] = {"index": index, "relevance_score": relevance_score(rank)}
        if include:
            doc = documents[index]
            item["document"] = {"text": doc} if isinstance(doc, str) else doc
        results.append(item)
    return results


def reasoning_field(ranking: Ranking | None) -> list[dict[str, Any]]:
    """The ``reasoning`` extension: one entry per window, documents named by their request index."""
    if ranking is None:
        return []
    return [_window(w) for w in ranking.windows]


def _window(trace: WindowTrace) -> dict[str, Any]:
    return {
        "round": trace.round,
        "start": trace.start,
        "end": trace.end,
        "documents": [int(d) for d in trace.docids],  # docids are the request indices (see to_passages)
        "order": [int(trace.docids[i]) for i in trace.order],
        "reasoning": trace.reasoning,
        "answer": trace.answer,
        "repairs": [r.kind for r in trace.repairs],
        "output_tokens": trace.output_tokens,
    }


def _tokens(ranking: Ranking | None) -> tuple[int, int]:
    if ranking is None:
        return 0, 0
    prompt = sum(w.prompt_tokens or 0 for w in ranking.windows)
    output = sum(w.output_tokens or 0 for w in ranking.windows)
    return prompt, output


def cohere_response(
    request_id: str,
    ranking: Ranking | None,
    body: CohereRequest,
    *,
    version: Literal["1", "2"],
    model: str,
) -> dict[str, Any]:
    """Cohere's ``{id, results: [{index, relevance_score, document?}], meta}``, best first, cut to ``top_n``.

    ``document`` is ``{"text": ...}`` for string documents and the object as sent otherwise; v1 includes it
    unless ``return_documents`` is false, v2 only when it is true (as Cohere does).
    """
    documents = body.documents or []
    include = bool(body.return_documents) if version == "2" else body.return_documents is not False
    results = _results(ranking, body.top_n, documents, include)
    prompt, output = _tokens(ranking)
    response: dict[str, Any] = {
        "id": request_id,
        "results": results,
        "meta": {
            "api_version": {"version": version},
            "billed_units": {"search_units": 1 if documents else 0},
            "tokens": {"input_tokens": prompt, "output_tokens": output},
        },
        "model": model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt + output},
    }
    if body.return_reasoning:
        response["reasoning"] = reasoning_field(ranking)
    return response


def jina_response(request_id: str, ranking: Ranking | None, body: RerankBody, *, model: str) -> dict[str, Any]:
    """Jina/vLLM: ``{id, model, usage, results: [{index, relevance_score, document}]}`` (documents by default)."""
    results = _results(ranking, body.top_n, body.documents or [], body.return_documents is not False)
    prompt, output = _tokens(ranking)
    response: dict[str, Any] = {
        "id": request_id,
        "model": model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt + output},
        "results": results,
    }
    if body.return_reasoning:
        response["reasoning"] = reasoning_field(ranking)
    return response


def tei_response(ranking: Ranking | None, body: RerankBody) -> list[dict[str, Any]]:
    """TEI: a bare list ``[{index, score, text?}]``, best first, one entry per text (``top_n`` does not apply:
    TEI has none, and LlamaIndex's TEI client asserts one result per text)."""
    texts = body.texts or []
    results = []
    for rank, index in _top(ranking, None):
        item: dict[str, Any] = {"index": index, "score": relevance_score(rank)}
        if body.return_text:
            item["text"] = texts[index]
        results.append(item)
    return results
