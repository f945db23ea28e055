"""The LangChain compressor inside LangChain's real ContextualCompressionRetriever: invoke, ainvoke, batch."""

from __future__ import annotations

import asyncio
import threading

import pytest

pytest.importorskip("langchain_core", reason="needs the langchain extra (scripts/test.sh installs it)")

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore

from framework_helpers import EXPECTED, TEXTS, keyword_backend
from reasonrank import Reranker
from reasonrank.backends import FakeBackend, answer
from reasonrank.integrations.langchain import ReasonRankRerank


def _store() -> InMemoryVectorStore:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    docs = [Document(t, id=f"doc-{i}", metadata={"source": f"file{i}.txt", "page": i}) for i, t in enumerate(TEXTS)]
    store.add_documents(docs)
    return store


def _retriever(compressor: ReasonRankRerank, store: InMemoryVectorStore) -> ContextualCompressionRetriever:
    base = store.as_retriever(search_kwargs={"k": len(TEXTS)})
    return ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)


def _check(docs: list[Document], top_n: int) -> None:
    assert [d.id for d in docs] == [f"doc-{i}" for i in EXPECTED[:top_n]]
    for rank, d in enumerate(docs, start=1):
        i = int(d.id.split("-")[1])
        assert d.page_content == TEXTS[i]
        assert d.metadata == {"source": f"file{i}.txt", "page": i, "relevance_score": 1 / rank}


def test_invoke_reranks_keeps_ids_and_metadata_and_leaves_the_store_alone():
    backend, model = keyword_backend()
    store = _store()
    compressor = ReasonRankRerank(reranker=Reranker(backend, progress=False), top_n=3, window=4, step=1)
    docs = _retriever(compressor, store).invoke("what is reasonrank?")
    _check(docs, 3)
    # 6 passages, window 4, step 1: three windows (the top 3 are exact); the model read every page_content as stored
    assert backend.num_requests == 3
    assert set(model.contents) == set(TEXTS)
    assert all(r.query == "what is reasonrank?" for r in model.requests)
    # the vector store hands out its own metadata dicts: they must not gain a relevance_score
    assert all("relevance_score" not in d.metadata for d in store.get_by_ids([f"doc-{i}" for i in range(6)]))


def test_top_n_none_returns_every_document_reordered():
    backend, _ = keyword_backend()
    compressor = ReasonRankRerank(reranker=Reranker(backend, progress=False))
    docs = _retriever(compressor, _store()).invoke("reasonrank")
    assert len(docs) == len(TEXTS)
    assert [d.id for d in docs][:4] == [f"doc-{i}" for i in EXPECTED[:4]]
    assert [d.metadata["relevance_score"] for d in docs] == [1 / r for r in range(1, 7)]


def test_ainvoke_gives_the_same_documents_and_runs_queries_concurrently():
    backend, _ = keyword_backend()
    compressor = ReasonRankRerank(reranker=Reranker(backend, progress=False), top_n=3, window=4, step=1)
    retriever = _retriever(compressor, _store())

    async def main() -> list[list[Document]]:
        return await asyncio.gather(*(retriever.ainvoke(f"reasonrank question {i}") for i in range(4)))

    results = asyncio.run(main())
    for docs in results:
        _check(docs, 3)
    assert backend.num_requests == 4 * 3
    assert retriever.invoke("reasonrank question 0") == results[0]


def test_concurrent_async_calls_share_model_calls_through_the_async_api():
    # acompress_documents awaits Reranker.arerank: the windows of calls running together in one event loop go
    # to the model in shared batches (a worker thread per call, LangChain's default, would never batch them).
    backend, _ = keyword_backend()
    compressor = ReasonRankRerank(reranker=Reranker(backend, progress=False), top_n=2)
    docs = [Document(t, id=f"doc-{i}") for i, t in enumerate(TEXTS)]

    async def main():
        return await asyncio.gather(*(compressor.acompress_documents(docs, f"reasonrank {i}") for i in range(4)))

    for out in asyncio.run(main()):
        assert [d.id for d in out] == [f"doc-{i}" for i in EXPECTED[:2]]
    assert backend.num_requests == 4 and len(backend.calls) < 4


def test_cancelling_an_async_call_cancels_the_windows_not_yet_sent():
    started, release = threading.Event(), threading.Event()

    def slow(request):
        started.set()
        release.wait(20)
        return answer(range(len(request.docids)))

    backend = FakeBackend(slow)
    # 6 documents, window 4, step 1: three windows, each waiting for the one before it
    compressor = ReasonRankRerank(reranker=Reranker(backend, progress=False), window=4, step=1)
    docs = [Document(t, id=f"doc-{i}") for i, t in enumerate(TEXTS)]

    async def main() -> None:
        task = asyncio.create_task(compressor.acompress_documents(docs, "reasonrank"))
        assert await asyncio.to_thread(started.wait, 20)
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.2)

    asyncio.run(main())
    assert backend.num_requests == 1  # the first window ran; the two after it were never sent


def test_batch_calls_the_compressor_from_several_threads():
    # Each model call waits until a second one arrives: a batch that did not overlap its queries would time out.
    backend, model = keyword_backend(threading.Barrier(2, timeout=20))
    compressor = ReasonRankRerank(reranker=Reranker(backend, progress=False), top_n=2)
    queries = [f"reasonrank query {i}" for i in range(4)]
    results = _retriever(compressor, _store()).batch(queries, config={"max_concurrency": 4})
    assert len(results) == 4
    for docs in results:
        _check(docs, 2)
    assert len(model.threads) >= 2
    assert sorted(r.query for r in model.requests) == queries  # one window per query, each query once


def test_empty_input_gives_empty_output_without_a_model_call():
    backend, _ = keyword_backend()
    compressor = ReasonRankRerank(reranker=Reranker(backend, progress=False), top_n=3)
    assert compressor.compress_documents([], "reasonrank") == []
    assert asyncio.run(compressor.acompress_documents([], "reasonrank")) == []
    empty_store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    assert _retriever(compressor, empty_store).invoke("reasonrank") == []
    assert backend.num_requests == 0


def test_a_single_document_is_returned_with_score_one():
    backend, _ = keyword_backend()
    compressor = ReasonRankRerank(reranker=Reranker(backend, progress=False), top_n=3)
    (doc,) = compressor.compress_documents([Document("only one", id="x")], "q")
    assert doc.id == "x" and doc.metadata == {"relevance_score": 1.0}


@pytest.mark.parametrize("top_n", [0, -1, 2.5, True, "3"])
def test_bad_top_n_is_refused_with_a_message(top_n):
    backend, _ = keyword_backend()
    with pytest.raises(ValueError, match="top_n must be an int >= 1"):
        ReasonRankRerank(reranker=Reranker(backend, progress=False), top_n=top_n)


def test_reranker_must_be_a_reranker():
    with pytest.raises(ValueError, match=r"reranker must be a reasonrank\.Reranker"):
        ReasonRankRerank(reranker="liuwenhan/reasonrank-7B")


@pytest.mark.slow
def test_real_smollm2_in_the_retriever(smollm2_reranker):
    store = _store()
    compressor = ReasonRankRerank(reranker=smollm2_reranker, top_n=3, window=6, step=3)
    retriever = _retriever(compressor, store)
    docs = retriever.invoke("What is reasonrank?")
    # the same model through the plain API, on the candidates in the order the retriever gave them
    candidates = retriever.base_retriever.invoke("What is reasonrank?")
    direct = smollm2_reranker.rerank("What is reasonrank?", [d.page_content for d in candidates], window=6, step=3)
    assert len(direct.windows) == 1 and direct.windows[0].output_tokens > 0
    assert [d.id for d in docs] == [candidates[p.index].id for p in direct.passages[:3]]
    for rank, d in enumerate(docs, start=1):
        i = int(d.id.split("-")[1])
        assert d.page_content == TEXTS[i] and d.metadata["source"] == f"file{i}.txt"
        assert d.metadata["relevance_score"] == 1 / rank
