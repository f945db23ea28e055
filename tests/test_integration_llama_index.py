"""The LlamaIndex postprocessor inside a real query engine (MockLLM, MockEmbedding: nothing downloaded)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("llama_index.core", reason="needs the llama-index extra (scripts/test.sh installs it)")

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.bridge.pydantic import Field
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.schema import NodeWithScore, TextNode

from framework_helpers import EXPECTED, TEXTS, keyword_backend
from reasonrank import Reranker
from reasonrank.integrations.llama_index import ReasonRankRerank

QUERY = "what is reasonrank?"


class Recorder(BaseEventHandler):
    events: list = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event, **kwargs) -> None:
        if isinstance(event, (ReRankStartEvent, ReRankEndEvent)):
            self.events.append(event)


@pytest.fixture
def rerank_events():
    root = get_dispatcher()
    recorder = Recorder(events=[])
    root.add_event_handler(recorder)
    yield recorder.events
    root.event_handlers.remove(recorder)


def _index() -> VectorStoreIndex:
    docs = [Document(text=t, id_=f"doc-{i}", metadata={"source": f"file{i}.txt"}) for i, t in enumerate(TEXTS)]
    return VectorStoreIndex.from_documents(docs, embed_model=MockEmbedding(embed_dim=8))


def _engine(rerank: ReasonRankRerank):
    return _index().as_query_engine(llm=MockLLM(), similarity_top_k=len(TEXTS), node_postprocessors=[rerank])


def _check(nodes: list[NodeWithScore], top_n: int) -> None:
    assert [n.node.get_content() for n in nodes] == [TEXTS[i] for i in EXPECTED[:top_n]]
    assert [n.score for n in nodes] == [1 / r for r in range(1, top_n + 1)]
    assert [n.node.metadata["source"] for n in nodes] == [f"file{i}.txt" for i in EXPECTED[:top_n]]


def test_query_engine_answers_from_the_reranked_nodes(rerank_events):
    backend, model = keyword_backend()
    rerank = ReasonRankRerank(Reranker(backend, progress=False), top_n=3, window=4, step=1)
    response = _engine(rerank).query(QUERY)
    _check(response.source_nodes, 3)
    # MockLLM echoes its prompt: the answer was synthesized from the three best nodes, best first
    positions = [response.response.index(TEXTS[i]) for i in EXPECTED[:3]]
    assert positions == sorted(positions)
    assert all(TEXTS[i] not in response.response for i in EXPECTED[3:])
    assert backend.num_requests == 3 and all(r.query == QUERY for r in model.requests)
    # the rerank start/end instrumentation events, with what went in and what came out
    start, end = rerank_events
    assert isinstance(start, ReRankStartEvent) and isinstance(end, ReRankEndEvent)
    assert start.query.query_str == QUERY and len(start.nodes) == len(TEXTS) and start.top_n == 3
    assert start.model_name == "reasonrank:reasonrank:fake"
    assert [n.node.node_id for n in end.nodes] == [n.node.node_id for n in response.source_nodes]


def test_the_model_reads_node_text_without_metadata_by_default():
    backend, model = keyword_backend()
    _engine(ReasonRankRerank(Reranker(backend, progress=False))).query(QUERY)
    assert sorted(model.contents) == sorted(TEXTS)  # byte-exact node text: no "source: file0.txt" header

    backend, model = keyword_backend()
    _engine(ReasonRankRerank(Reranker(backend, progress=False), metadata_mode="llm")).query(QUERY)
    assert sorted(model.contents) == sorted(f"source: file{i}.txt\n\n{t}" for i, t in enumerate(TEXTS))


def test_async_query_gives_the_same_nodes(rerank_events):
    backend, _ = keyword_backend()
    engine = _engine(ReasonRankRerank(Reranker(backend, progress=False), top_n=4))

    async def main():
        return await asyncio.gather(engine.aquery(QUERY), engine.aquery("reasonrank, again"))

    first, second = asyncio.run(main())
    _check(first.source_nodes, 4)
    _check(second.source_nodes, 4)
    assert [type(e).__name__ for e in rerank_events].count("ReRankEndEvent") == 2


def test_concurrent_async_calls_share_model_calls_through_the_async_api():
    backend, _ = keyword_backend()
    rerank = ReasonRankRerank(Reranker(backend, progress=False), top_n=2)
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i))) for i, t in enumerate(TEXTS)]

    async def main():
        return await asyncio.gather(*(rerank.apostprocess_nodes(nodes, query_str=f"q{i}") for i in range(4)))

    for out in asyncio.run(main()):
        assert [n.node.id_ for n in out] == [str(i) for i in EXPECTED[:2]]
    assert backend.num_requests == 4 and len(backend.calls) < 4  # windows of concurrent calls were batched


def test_top_n_none_keeps_every_node():
    backend, _ = keyword_backend()
    response = _engine(ReasonRankRerank(Reranker(backend, progress=False))).query(QUERY)
    assert len(response.source_nodes) == len(TEXTS)
    assert [n.node.get_content() for n in response.source_nodes][:4] == [TEXTS[i] for i in EXPECTED[:4]]


def test_empty_input_gives_empty_output(rerank_events):
    backend, _ = keyword_backend()
    rerank = ReasonRankRerank(Reranker(backend, progress=False), top_n=2)
    assert rerank.postprocess_nodes([], query_str=QUERY) == []
    assert asyncio.run(rerank.apostprocess_nodes([], query_str=QUERY)) == []
    assert backend.num_requests == 0
    assert [type(e).__name__ for e in rerank_events] == ["ReRankStartEvent", "ReRankEndEvent"] * 2


def test_the_input_nodes_keep_their_scores():
    backend, _ = keyword_backend()
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=0.1 * i) for i, t in enumerate(TEXTS)]
    out = ReasonRankRerank(Reranker(backend, progress=False), top_n=2).postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.id_ for n in out] == ["5", "4"] and [n.score for n in out] == [1.0, 0.5]
    assert [n.score for n in nodes] == [0.1 * i for i in range(6)]


def test_a_query_is_required_and_top_n_is_checked():
    backend, _ = keyword_backend()
    rerank = ReasonRankRerank(Reranker(backend, progress=False))
    with pytest.raises(ValueError, match="needs the query"):
        rerank.postprocess_nodes([NodeWithScore(node=TextNode(text="x"))])
    with pytest.raises(ValueError, match="top_n must be an int >= 1"):
        ReasonRankRerank(Reranker(backend, progress=False), top_n=0)
    with pytest.raises(ValueError, match=r"reranker must be a reasonrank\.Reranker"):
        ReasonRankRerank(backend)


def test_the_postprocessor_serializes_its_settings():
    backend, _ = keyword_backend()
    rerank = ReasonRankRerank(Reranker(backend, progress=False), top_n=3, window=8, step=4)
    data = rerank.to_dict()
    assert data["class_name"] == "ReasonRankRerank"
    assert {k: data[k] for k in ("top_n", "window", "step", "strategy", "metadata_mode")} == {
        "top_n": 3,
        "window": 8,
        "step": 4,
        "strategy": "sliding",
        "metadata_mode": "none",
    }


@pytest.mark.slow
def test_real_smollm2_in_the_query_engine(smollm2_reranker):
    rerank = ReasonRankRerank(smollm2_reranker, top_n=3, window=6, step=3)
    engine = _engine(rerank)
    response = engine.query(QUERY)
    # the same model through the plain API, on the candidates in the order the retriever gave them
    candidates = engine.retriever.retrieve(QUERY)
    texts = [n.node.get_content() for n in candidates]
    direct = smollm2_reranker.rerank(QUERY, texts, window=6, step=3)
    assert len(direct.windows) == 1 and direct.windows[0].output_tokens > 0
    assert [n.node.get_content() for n in response.source_nodes] == [texts[p.index] for p in direct.passages[:3]]
    assert [n.score for n in response.source_nodes] == [1.0, 0.5, 1 / 3]
