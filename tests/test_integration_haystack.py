"""The Haystack ranker in a real Pipeline after InMemoryBM25Retriever: run, run_async, warm_up, serialization."""

from __future__ import annotations

import asyncio
import os

import pytest

os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"  # before haystack is imported: no telemetry calls from tests
pytest.importorskip("haystack", reason="needs the haystack extra (scripts/test.sh installs it)")

from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.core.errors import DeserializationError, SerializationError
from haystack.document_stores.in_memory import InMemoryDocumentStore

from framework_helpers import EXPECTED, TEXTS, keyword_backend
from reasonrank import InvalidInputError, Reranker
from reasonrank.integrations.haystack import ReasonRankRanker

QUERY = "what is reasonrank? reasonrank reranks passages, rich in reasoning"  # BM25 matches all six
MODULE = "reasonrank.integrations.haystack"


def _store() -> InMemoryDocumentStore:
    store = InMemoryDocumentStore()
    store.write_documents(
        [Document(content=t, id=f"doc-{i}", meta={"source": f"file{i}.txt"}) for i, t in enumerate(TEXTS)]
    )
    return store


def _pipeline(ranker: ReasonRankRanker, store: InMemoryDocumentStore | None = None) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(store or _store(), top_k=len(TEXTS)))
    pipeline.add_component("ranker", ranker)
    pipeline.connect("retriever.documents", "ranker.documents")
    return pipeline


def _inputs(query: str = QUERY, **ranker: object) -> dict:
    return {"retriever": {"query": query}, "ranker": {"query": query, **ranker}}


def _check(docs: list[Document], top_k: int) -> None:
    assert [d.id for d in docs] == [f"doc-{i}" for i in EXPECTED[:top_k]]
    assert [d.score for d in docs] == [1 / r for r in range(1, top_k + 1)]
    assert [d.meta for d in docs] == [{"source": f"file{i}.txt"} for i in EXPECTED[:top_k]]
    assert [d.content for d in docs] == [TEXTS[i] for i in EXPECTED[:top_k]]


def test_pipeline_after_bm25_reranks_and_keeps_documents():
    backend, model = keyword_backend()
    ranker = ReasonRankRanker(reranker=Reranker(backend, progress=False), top_k=3, window=4, step=1)
    store = _store()
    result = _pipeline(ranker, store).run(_inputs())
    _check(result["ranker"]["documents"], 3)
    assert backend.num_requests == 3 and set(model.contents) == set(TEXTS)
    # the store's documents keep their own (BM25-less) scores: the ranker returned copies
    assert all(d.score is None for d in store.filter_documents())


def test_top_k_at_run_time_overrides_the_components():
    backend, _ = keyword_backend()
    ranker = ReasonRankRanker(reranker=Reranker(backend, progress=False), top_k=3)
    _check(_pipeline(ranker).run(_inputs(top_k=2))["ranker"]["documents"], 2)
    with pytest.raises(ValueError, match="top_k must be an int >= 1"):
        ranker.run(query=QUERY, documents=[Document(content="x")], top_k=0)


def test_pipeline_run_async():
    backend, _ = keyword_backend()
    pipeline = _pipeline(ReasonRankRanker(reranker=Reranker(backend, progress=False), top_k=4))

    async def main():
        return await asyncio.gather(pipeline.run_async(_inputs()), pipeline.run_async(_inputs("reasonrank")))

    for result in asyncio.run(main()):
        _check(result["ranker"]["documents"], 4)


def test_concurrent_run_async_calls_share_model_calls_through_the_async_api():
    backend, _ = keyword_backend()
    ranker = ReasonRankRanker(reranker=Reranker(backend, progress=False), top_k=2)
    docs = [Document(content=t, id=f"doc-{i}") for i, t in enumerate(TEXTS)]

    async def main():
        return await asyncio.gather(*(ranker.run_async(query=f"q{i}", documents=docs) for i in range(4)))

    for out in asyncio.run(main()):
        assert [d.id for d in out["documents"]] == [f"doc-{i}" for i in EXPECTED[:2]]
    assert backend.num_requests == 4 and len(backend.calls) < 4  # windows of concurrent calls were batched


def test_warm_up_builds_the_reranker_once_and_empty_input_needs_no_model():
    ranker = ReasonRankRanker(backend="fake", top_k=2, reranker_options={"progress": False})
    assert ranker.reranker is None
    assert ranker.run(query=QUERY, documents=[]) == {"documents": []}
    assert asyncio.run(ranker.run_async(query=QUERY, documents=[])) == {"documents": []}
    assert ranker.reranker is None  # nothing to rank: the model was not loaded
    pipeline = _pipeline(ranker, InMemoryDocumentStore())  # an empty store: BM25 finds nothing
    assert pipeline.run(_inputs())["ranker"]["documents"] == []
    loaded = ranker.reranker
    assert loaded is not None and loaded.backend.name == "fake"  # Pipeline.run called warm_up
    ranker.warm_up()
    assert ranker.reranker is loaded
    # the fake backend keeps the input order
    docs = ranker.run(query=QUERY, documents=[Document(content=t) for t in TEXTS])["documents"]
    assert [d.content for d in docs] == TEXTS[:2]


def test_to_dict_from_dict_and_pipeline_yaml_with_allowed_modules():
    ranker = ReasonRankRanker(
        backend="fake", top_k=3, window=8, step=4, strategy="tdpart", reranker_options={"progress": False}
    )
    data = ranker.to_dict()
    assert data == {
        "type": f"{MODULE}.ReasonRankRanker",
        "init_parameters": {
            "model": None,
            "backend": "fake",
            "template": None,
            "top_k": 3,
            "window": 8,
            "step": 4,
            "strategy": "tdpart",
            "reranker_options": {"progress": False},
        },
    }
    assert ReasonRankRanker.from_dict(data).to_dict() == data

    yaml_text = _pipeline(ranker).dumps()
    with pytest.raises(DeserializationError, match="allowlist"):
        Pipeline.loads(yaml_text)  # Haystack refuses classes outside its own namespaces by default
    loaded = Pipeline.loads(yaml_text, allowed_modules=[MODULE])
    restored = loaded.get_component("ranker")
    assert isinstance(restored, ReasonRankRanker) and restored.to_dict() == data
    docs = loaded.run(_inputs())["ranker"]["documents"]  # warm_up, then the fake backend keeps BM25's order
    assert len(docs) == 3 and [d.score for d in docs] == [1.0, 0.5, 1 / 3]


def test_a_component_built_from_an_instance_says_it_cannot_be_serialized():
    backend, _ = keyword_backend()
    ranker = ReasonRankRanker(reranker=Reranker(backend, progress=False))
    with pytest.raises(SerializationError, match=r"model=\.\.\., backend=\.\.\."):
        ranker.to_dict()
    with pytest.raises(InvalidInputError, match=r"either model= .* or reranker="):
        ReasonRankRanker("some/model", reranker=Reranker(backend, progress=False))


def test_documents_without_text_are_refused_by_id():
    ranker = ReasonRankRanker(backend="fake", reranker_options={"progress": False})
    docs = [Document(content="text", id="a"), Document(id="no-text")]
    with pytest.raises(InvalidInputError, match="document 1 \\(id 'no-text'\\) has no text content"):
        ranker.run(query=QUERY, documents=docs)


@pytest.mark.slow
def test_real_smollm2_loaded_by_warm_up(smollm2_gguf):
    path = os.path.join(*smollm2_gguf)
    options = {"max_tokens": 16, "max_passage_tokens": 40, "batch_size": 1, "progress": False}
    ranker = ReasonRankRanker(path, template="reasonrank", top_k=3, window=6, step=3, reranker_options=options)
    pipeline = _pipeline(ranker)
    result = pipeline.run(_inputs(), include_outputs_from={"retriever"})
    reranker = ranker.reranker
    assert reranker is not None and reranker.backend.name == "hf" and reranker.max_passage_tokens == 40
    # the same model through the plain API, on the candidates in the order BM25 gave them
    candidates = result["retriever"]["documents"]
    direct = reranker.rerank(QUERY, [d.content for d in candidates], window=6, step=3)
    assert len(direct.windows) == 1 and direct.windows[0].output_tokens > 0
    assert [d.id for d in result["ranker"]["documents"]] == [candidates[p.index].id for p in direct.passages[:3]]
