"""LangChain: a document compressor that reranks retrieved documents with a reasonrank :class:`~reasonrank.Reranker`.

Install with ``pip install 'reasonrank[langchain]'`` (langchain-core; ``ContextualCompressionRetriever`` lives in
``langchain-classic``)::

    from langchain_classic.retrievers import ContextualCompressionRetriever
    from reasonrank import Reranker
    from reasonrank.integrations.langchain import ReasonRankRerank

    compressor = ReasonRankRerank(reranker=Reranker.from_pretrained("liuwenhan/reasonrank-7B"), top_n=5)
    retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=my_retriever)
    docs = retriever.invoke("query")         # or: await retriever.ainvoke(...), retriever.batch([...])

The model reads ``Document.page_content`` exactly as given. Each returned document is a copy of its input (the
same ``id``, type and metadata) with ``metadata["relevance_score"]`` set to :func:`reasonrank.scores.relevance_score`
of its new rank (``1 / rank``); the inputs are not modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._common import arank_texts, check_reranker, check_top_n, framework_import_error, rank_texts

try:
    from langchain_core.callbacks import Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
    from pydantic import ConfigDict, field_validator
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    raise framework_import_error("langchain-core", "langchain", "LangChain reranker") from None

from ..reranker import Reranker

__all__ = ["ReasonRankRerank"]


class ReasonRankRerank(BaseDocumentCompressor):
    """Rerank LangChain documents listwise with a reasoning reranker; keep the best ``top_n``.

    Attributes:
        reranker: the :class:`reasonrank.Reranker` to use (any backend).
        top_n: how many documents to return, best first; ``None`` (default) returns them all, reordered.
        window: passages per model call (official ReasonRank setting: 20).
        step: window stride in passages (official: 10).
        strategy: ``"sliding"`` (official) or a lower-latency strategy, see :mod:`reasonrank.strategies`.

    ``compress_documents`` is thread-safe (``retriever.batch`` calls it from several threads);
    ``acompress_documents`` awaits the reranker in the caller's event loop. An empty list gives ``[]``.

    Examples:
        >>> from langchain_core.documents import Document
        >>> from reasonrank import Reranker
        >>> from reasonrank.backends import FakeBackend, answer
        >>> reverse = FakeBackend(lambda req: answer(reversed(range(len(req.docids)))))
        >>> rerank = ReasonRankRerank(reranker=Reranker(reverse, progress=False), top_n=2)
        >>> docs = [Document("first", id="a"), Document("second", id="b"), Document("third", id="c")]
        >>> [(d.id, d.metadata["relevance_score"]) for d in rerank.compress_documents(docs, "query")]
        [('c', 1.0), ('b', 0.5)]
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reranker: Reranker
    top_n: int | None = None
    window: int = 20
    step: int = 10
    strategy: str = "sliding"

    @field_validator("reranker", mode="before")
    @classmethod
    def _check_reranker(cls, value: Any) -> Reranker:
        return check_reranker(value)

    @field_validator("top_n", mode="before")
    @classmethod
    def _check_top_n(cls, value: Any) -> int | None:
        return check_top_n(value)

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """The best ``top_n`` of ``documents`` for ``query``, best first, scored in ``metadata``."""
        ranked = rank_texts(self.reranker, query, [d.page_content for d in documents], **self._options())
        return _scored(documents, ranked)

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """:meth:`compress_documents`, awaiting :meth:`reasonrank.Reranker.arerank` in the caller's event loop."""
        ranked = await arank_texts(self.reranker, query, [d.page_content for d in documents], **self._options())
        return _scored(documents, ranked)

    def _options(self) -> dict[str, Any]:
        return {"top_n": self.top_n, "window": self.window, "step": self.step, "strategy": self.strategy}


def _scored(documents: Sequence[Document], ranked: list[tuple[int, float]]) -> list[Document]:
    # model_copy keeps the id, the subclass and any extra fields; the metadata dict is new, so that the
    # caller's documents (often shared with a vector store's cache) are not modified.
    return [
        documents[i].model_copy(update={"metadata": {**documents[i].metadata, "relevance_score": score}})
        for i, score in ranked
    ]
