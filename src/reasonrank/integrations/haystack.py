"""Haystack: a ranker component that reranks documents with a reasonrank :class:`~reasonrank.Reranker`.

Install with ``pip install 'reasonrank[haystack]'`` (haystack-ai)::

    from haystack import Pipeline
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
    from reasonrank.integrations.haystack import ReasonRankRanker

    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(document_store, top_k=20))
    pipeline.add_component("ranker", ReasonRankRanker(model="liuwenhan/reasonrank-7B", top_k=5))
    pipeline.connect("retriever.documents", "ranker.documents")
    result = pipeline.run({"retriever": {"query": q}, "ranker": {"query": q}})

The model loads in ``warm_up()`` (``Pipeline.run`` calls it; a direct ``run`` does too), not in ``__init__``.
The model reads ``Document.content`` exactly as given; returned documents are copies of the inputs (same ``id``,
``meta``, ...) whose ``score`` is :func:`reasonrank.scores.relevance_score` of their new rank (``1 / rank``).

Serialization: ``to_dict``/``from_dict`` (and so ``Pipeline.dumps``/``Pipeline.loads``) keep ``model``,
``backend``, ``template``, ``top_k``, the window settings and ``reranker_options``. Haystack only imports
component classes from its own packages when it loads a pipeline, so loading one that holds this ranker needs::

    Pipeline.loads(yaml_text, allowed_modules=["reasonrank.integrations.haystack"])

(or ``haystack.core.serialization.allow_deserialization_module("reasonrank.integrations.haystack")`` once per
process, or ``HAYSTACK_DESERIALIZATION_ALLOWLIST=reasonrank.integrations.haystack`` in the environment).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from typing import Any

from .._errors import InvalidInputError
from ._common import arank_texts, check_reranker, check_top_n, framework_import_error, rank_texts

try:
    from haystack import Document, component, default_from_dict, default_to_dict
    from haystack.core.errors import SerializationError
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    raise framework_import_error("haystack-ai", "haystack", "Haystack ranker") from None

from ..reranker import Reranker

__all__ = ["ReasonRankRanker"]


@component
class ReasonRankRanker:
    """Rerank Haystack documents listwise with a reasoning reranker; keep the best ``top_k``.

    Args:
        model: a hub id or local path, loaded with :meth:`reasonrank.Reranker.from_pretrained` in ``warm_up``
            (with the model's preset: template, decoding, passage length). ``None`` builds the backend by name
            without a model: ``Reranker(backend, template=template or "reasonrank", **reranker_options)``
            (e.g. ``backend="fake"`` for tests and dry runs).
        backend: ``"hf"`` (default), ``"vllm"``, ``"openai"``, ``"fake"`` or a plugin's name.
        template: the prompt template; needed for a model without a preset.
        top_k: how many documents to return, best first; ``None`` (default) returns them all, reordered.
        window: passages per model call (official ReasonRank setting: 20).
        step: window stride in passages (official: 10).
        strategy: ``"sliding"`` (official) or a lower-latency strategy, see :mod:`reasonrank.strategies`.
        reranker_options: more keyword arguments for ``from_pretrained`` (``max_tokens``, ``dtype``,
            ``batch_size``, ``progress``, ...); they must be YAML-serializable for ``to_dict``.
        reranker: a ready :class:`reasonrank.Reranker` instead of ``model``/``backend`` (such a component runs,
            but cannot be serialized).

    Examples:
        >>> from haystack import Document
        >>> ranker = ReasonRankRanker(backend="fake", top_k=2, reranker_options={"progress": False})
        >>> ranker.warm_up()
        >>> docs = [Document(content=t, id=i) for t, i in (("first", "a"), ("second", "b"), ("x", "c"))]
        >>> [(d.id, d.score) for d in ranker.run(query="query", documents=docs)["documents"]]
        [('a', 1.0), ('b', 0.5)]
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        backend: str = "hf",
        template: str | None = None,
        top_k: int | None = None,
        window: int = 20,
        step: int = 10,
        strategy: str = "sliding",
        reranker_options: dict[str, Any] | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        if reranker is not None and model is not None:
            raise InvalidInputError("pass either model= (loaded in warm_up) or reranker=, not both")
        self.model = model
        self.backend = backend
        self.template = template
        self.top_k = check_top_n(top_k, "top_k")
        self.window = window
        self.step = step
        self.strategy = strategy
        self.reranker_options = dict(reranker_options or {})
        self._given = reranker is not None
        self._reranker: Reranker | None = check_reranker(reranker) if reranker is not None else None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def warm_up(self) -> None:
        """Load the model (once; later calls do nothing)."""
        with self._lock:
            if self._reranker is not None:
                return
            options = dict(self.reranker_options)
            if self.model is None:
                self._reranker = Reranker(self.backend, template=self.template or "reasonrank", **options)
            else:
                self._reranker = Reranker.from_pretrained(
                    self.model, backend=self.backend, template=self.template, **options
                )

    async def warm_up_async(self) -> None:
        """:meth:`warm_up` in a worker thread, so that loading a model does not block the event loop."""
        if self._reranker is None:
            await asyncio.to_thread(self.warm_up)

    @property
    def reranker(self) -> Reranker | None:
        """The loaded reranker (``None`` before ``warm_up``)."""
        return self._reranker

    # ------------------------------------------------------------------ running

    @component.output_types(documents=list[Document])
    def run(self, query: str, documents: list[Document], top_k: int | None = None) -> dict[str, list[Document]]:
        """Rerank ``documents`` for ``query``: ``{"documents": [...]}``, the best ``top_k`` first.

        ``top_k`` overrides the component's. An empty list gives ``{"documents": []}`` without loading the model.
        Raises :class:`~reasonrank.InvalidInputError` for a document without text content.
        """
        top_k = self._top_k(top_k)
        if not documents:
            return {"documents": []}
        self.warm_up()
        assert self._reranker is not None
        ranked = rank_texts(self._reranker, query, _texts(documents), top_n=top_k, **self._window())
        return {"documents": _scored(documents, ranked)}

    @component.output_types(documents=list[Document])
    async def run_async(
        self, query: str, documents: list[Document], top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """:meth:`run` through the reranker's async API, in the caller's event loop."""
        top_k = self._top_k(top_k)
        if not documents:
            return {"documents": []}
        await self.warm_up_async()
        assert self._reranker is not None
        ranked = await arank_texts(self._reranker, query, _texts(documents), top_n=top_k, **self._window())
        return {"documents": _scored(documents, ranked)}

    # ------------------------------------------------------------------ serialization

    def to_dict(self) -> dict[str, Any]:
        """The component as a dictionary (Haystack's ``{"type", "init_parameters"}`` envelope)."""
        if self._given:
            raise SerializationError(
                "this ReasonRankRanker was built from a Reranker instance, which cannot be serialized; build it "
                "with model=..., backend=... and reranker_options=... instead"
            )
        return default_to_dict(
            self,
            model=self.model,
            backend=self.backend,
            template=self.template,
            top_k=self.top_k,
            window=self.window,
            step=self.step,
            strategy=self.strategy,
            reranker_options=self.reranker_options,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReasonRankRanker:
        """Rebuild a component from :meth:`to_dict`'s output (the model loads at ``warm_up``)."""
        return default_from_dict(cls, data)

    # ------------------------------------------------------------------ internals

    def _top_k(self, top_k: int | None) -> int | None:
        return self.top_k if top_k is None else check_top_n(top_k, "top_k")

    def _window(self) -> dict[str, Any]:
        return {"window": self.window, "step": self.step, "strategy": self.strategy}


def _texts(documents: list[Document]) -> list[str]:
    texts = []
    for i, doc in enumerate(documents):
        if not isinstance(doc.content, str):
            raise InvalidInputError(
                f"document {i} (id {doc.id!r}) has no text content; ReasonRankRanker ranks text documents only"
            )
        texts.append(doc.content)
    return texts


def _scored(documents: list[Document], ranked: list[tuple[int, float]]) -> list[Document]:
    # dataclasses.replace copies the document (Haystack warns about in-place changes to a Document).
    return [replace(documents[i], score=score) for i, score in ranked]
