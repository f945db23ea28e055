"""LlamaIndex: a node postprocessor that reranks retrieved nodes with a reasonrank :class:`~reasonrank.Reranker`.

Install with ``pip install 'reasonrank[llama-index]'`` (llama-index-core)::

    from reasonrank import Reranker
    from reasonrank.integrations.llama_index import ReasonRankRerank

    rerank = ReasonRankRerank(Reranker.from_pretrained("liuwenhan/reasonrank-7B"), top_n=5)
    query_engine = index.as_query_engine(similarity_top_k=20, node_postprocessors=[rerank])

The model reads each node's text *without* its metadata (``MetadataMode.NONE``), so the prompt holds the
passages exactly as the models were trained on them; pass ``metadata_mode="llm"`` (or ``"embed"``, ``"all"``) to
let LlamaIndex prepend the metadata it formats for that mode. Returned nodes are new ``NodeWithScore`` objects
over the same nodes, scored with :func:`reasonrank.scores.relevance_score` of their new rank (``1 / rank``).
Each call emits LlamaIndex's ``ReRankStartEvent``/``ReRankEndEvent`` instrumentation events and a
``RERANKING`` callback event, as LlamaIndex's own rerankers do.
"""

from __future__ import annotations

from typing import Any

from ._common import arank_texts, check_reranker, check_top_n, framework_import_error, rank_texts

try:
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.callbacks import CBEventType, EventPayload
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    raise framework_import_error("llama-index-core", "llama-index", "LlamaIndex reranker") from None

from ..reranker import Reranker

__all__ = ["ReasonRankRerank"]

dispatcher = get_dispatcher(__name__)


class ReasonRankRerank(BaseNodePostprocessor):
    """Rerank LlamaIndex nodes listwise with a reasoning reranker; keep the best ``top_n``.

    Attributes:
        reranker: the :class:`reasonrank.Reranker` to use (any backend).
        top_n: how many nodes to return, best first; ``None`` (default) returns them all, reordered.
        window: passages per model call (official ReasonRank setting: 20).
        step: window stride in passages (official: 10).
        strategy: ``"sliding"`` (official) or a lower-latency strategy, see :mod:`reasonrank.strategies`.
        metadata_mode: which metadata LlamaIndex puts before the node text (default ``"none"``: the text only).
        model: the name reported in instrumentation events (default: built from the template and backend).

    An empty list of nodes gives ``[]``; a call without a query raises ``ValueError`` (as LlamaIndex's rerankers).

    Examples:
        >>> from llama_index.core.schema import NodeWithScore, TextNode
        >>> from reasonrank import Reranker
        >>> from reasonrank.backends import FakeBackend, answer
        >>> reverse = FakeBackend(lambda req: answer(reversed(range(len(req.docids)))))
        >>> rerank = ReasonRankRerank(Reranker(reverse, progress=False), top_n=2)
        >>> nodes = [NodeWithScore(node=TextNode(text=t, id_=t)) for t in ("first", "second", "third")]
        >>> [(n.node.id_, n.score) for n in rerank.postprocess_nodes(nodes, query_str="query")]
        [('third', 1.0), ('second', 0.5)]
    """

    top_n: int | None = Field(default=None, description="How many nodes to return (None: all of them).")
    window: int = Field(default=20, description="Passages per model call.")
    step: int = Field(default=10, description="How far the sliding window moves.")
    strategy: str = Field(default="sliding", description="Which windows run: sliding, tdpart or tournament.")
    metadata_mode: MetadataMode = Field(default=MetadataMode.NONE, description="Node metadata in the prompt.")
    model: str = Field(default="", description="Model name reported in instrumentation events.")

    _reranker: Reranker = PrivateAttr()

    def __init__(self, reranker: Reranker, *, top_n: int | None = None, **kwargs: Any) -> None:
        reranker = check_reranker(reranker)
        kwargs.setdefault("model", f"reasonrank:{reranker.template.name}:{reranker.backend.name}")
        kwargs["top_n"] = check_top_n(top_n)
        super().__init__(**kwargs)
        self._reranker = reranker

    @property
    def reranker(self) -> Reranker:
        return self._reranker

    @classmethod
    def class_name(cls) -> str:
        return "ReasonRankRerank"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query = self._start(nodes, query_bundle)
        with self.callback_manager.event(CBEventType.RERANKING, payload=self._payload(nodes, query)) as event:
            ranked = rank_texts(self._reranker, query, self._texts(nodes), **self._options())
            return self._end(nodes, ranked, event)

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query = self._start(nodes, query_bundle)
        with self.callback_manager.event(CBEventType.RERANKING, payload=self._payload(nodes, query)) as event:
            ranked = await arank_texts(self._reranker, query, self._texts(nodes), **self._options())
            return self._end(nodes, ranked, event)

    # ------------------------------------------------------------------ internals

    def _start(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> str:
        if query_bundle is None:
            raise ValueError("ReasonRankRerank needs the query: call postprocess_nodes(nodes, query_str=...)")
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle,
                nodes=nodes,
                top_n=len(nodes) if self.top_n is None else self.top_n,
                model_name=self.model,
            )
        )
        return query_bundle.query_str

    def _payload(self, nodes: list[NodeWithScore], query: str) -> dict[str, Any]:
        return {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model,
            EventPayload.QUERY_STR: query,
            EventPayload.TOP_K: self.top_n,
        }

    def _texts(self, nodes: list[NodeWithScore]) -> list[str]:
        return [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes]

    def _options(self) -> dict[str, Any]:
        return {"top_n": check_top_n(self.top_n), "window": self.window, "step": self.step, "strategy": self.strategy}

    @staticmethod
    def _end(nodes: list[NodeWithScore], ranked: list[tuple[int, float]], event: Any) -> list[NodeWithScore]:
        new_nodes = [NodeWithScore(node=nodes[i].node, score=score) for i, score in ranked]
        event.on_end(payload={EventPayload.NODES: new_nodes})
        dispatcher.event(ReRankEndEvent(nodes=new_nodes))
        return new_nodes
