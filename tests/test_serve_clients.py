"""Real clients against ``reasonrank serve`` on 127.0.0.1: the Cohere SDK (v1, v2, async), LangChain's
CohereRerank, Haystack's CohereRanker and HuggingFaceTEIRanker, LlamaIndex's TEI postprocessor, and the server
with the real SmolLM2 model."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from reasonrank import Reranker
from reasonrank.backends import FakeBackend, answer
from reasonrank.serve import create_app
from serve_server import running

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

KEY = "client-test-key"
DOCS = [
    "Carson City is the capital of Nevada.",
    "Washington, D.C. is the capital of the United States.",
    "Capital punishment exists in some states.",
    "The Northern Mariana Islands' capital is Saipan.",
]


def reverse(request):
    return answer(list(reversed(range(len(request.docids)))))


class Recorder:
    """ASGI wrapper that keeps the JSON body of every request (what the clients really send)."""

    def __init__(self, app):
        self.app = app
        self.requests: list[tuple[str, dict]] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        self.requests.append((scope["path"], json.loads(body)))
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


@pytest.fixture(scope="module")
def server():
    recorder = Recorder(create_app(Reranker(FakeBackend(reverse), progress=False), api_key=KEY, model_name="rr"))
    with running(recorder) as url:
        yield url, recorder


def test_cohere_client_v2(server):
    import cohere

    url, recorder = server
    co = cohere.ClientV2(api_key=KEY, base_url=url)
    response = co.rerank(model="rerank-v3.5", query="capital of the US?", documents=DOCS, top_n=2)
    assert [r.index for r in response.results] == [3, 2]  # the fake model reverses: the server sorts and cuts
    assert [r.relevance_score for r in response.results] == [1.0, 0.5]
    assert recorder.requests[-1][0] == "/v2/rerank"
    bad = cohere.ClientV2(api_key="wrong", base_url=url)
    with pytest.raises(cohere.core.ApiError) as info:
        bad.rerank(model="m", query="q", documents=DOCS)
    assert info.value.status_code == 401


def test_cohere_client_v1_with_documents(server):
    import cohere

    url, _ = server
    co = cohere.Client(api_key=KEY, base_url=url)
    response = co.rerank(
        model="rerank-english-v3.0",
        query="capital of the US?",
        documents=[{"text": d} for d in DOCS],
        top_n=3,
        return_documents=True,
    )
    assert [r.index for r in response.results] == [3, 2, 1]
    assert response.results[0].document.text == DOCS[3]


def test_cohere_async_client_concurrent(server):
    import cohere

    url, _ = server

    async def main():
        co = cohere.AsyncClientV2(api_key=KEY, base_url=url)
        return await asyncio.gather(
            *(co.rerank(model="m", query=f"query {i}", documents=DOCS[: 2 + i % 3]) for i in range(8))
        )

    responses = asyncio.run(main())
    for i, response in enumerate(responses):
        n = 2 + i % 3
        assert [r.index for r in response.results] == list(reversed(range(n)))


def test_langchain_cohere_rerank(server):
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    url, recorder = server
    reranker = CohereRerank(base_url=url, cohere_api_key=KEY, model="rr", top_n=2)
    docs = [Document(page_content=d, metadata={"n": i}) for i, d in enumerate(DOCS)]
    out = reranker.compress_documents(docs, "capital of the US?")
    assert [d.metadata["n"] for d in out] == [3, 2]
    assert [d.metadata["relevance_score"] for d in out] == [1.0, 0.5]
    path, body = recorder.requests[-1]
    assert path == "/v2/rerank" and body["top_n"] == 2
    assert "max_tokens_per_doc" in body and body["max_tokens_per_doc"] is None  # langchain-cohere sends null
    assert reranker.compress_documents([], "q") == []


def test_haystack_cohere_ranker(server):
    from haystack import Document
    from haystack.utils import Secret
    from haystack_integrations.components.rankers.cohere import CohereRanker

    url, recorder = server
    ranker = CohereRanker(model="rr", api_key=Secret.from_token(KEY), api_base_url=url, top_k=2)
    ranker.warm_up()
    out = ranker.run(query="capital of the US?", documents=[Document(content=d) for d in DOCS])["documents"]
    assert [d.content for d in out] == [DOCS[3], DOCS[2]]
    assert [d.score for d in out] == [1.0, 0.5]
    assert recorder.requests[-1][1]["max_tokens_per_doc"] == 4096  # Haystack's default, accepted


def test_haystack_tei_ranker_drops_the_url_path(server):
    from haystack import Document
    from haystack.utils import Secret
    from haystack_integrations.components.rankers.huggingface_api import HuggingFaceTEIRanker

    url, recorder = server
    # Haystack joins "/rerank" onto the URL root: the "/some/prefix" is dropped, so /rerank must be at the root.
    ranker = HuggingFaceTEIRanker(url=f"{url}/some/prefix/", top_k=3, token=Secret.from_token(KEY))
    out = ranker.run(query="capital of the US?", documents=[Document(content=d) for d in DOCS])["documents"]
    assert [d.content for d in out] == [DOCS[3], DOCS[2], DOCS[1]]
    assert [d.score for d in out] == pytest.approx([1.0, 0.5, 1 / 3])
    path, body = recorder.requests[-1]
    assert path == "/rerank" and body["texts"] == DOCS


@pytest.mark.slow
def test_real_smollm2_model_behind_the_cohere_sdk(smollm2_gguf):
    import cohere
    import httpx

    from reasonrank._demo import load_noveleval, smollm2_gguf_path

    item = load_noveleval()["queries"][2]
    docs = [p["text"] if isinstance(p, dict) else p for p in item["passages"]][:4]
    # Small on purpose (CPU CI): one window of 4 passages per request, 8 generated tokens.
    rr = Reranker.from_pretrained(
        smollm2_gguf_path(), template="reasonrank", max_tokens=8, max_passage_tokens=32, progress=False
    )
    with running(create_app(rr, model_name="smollm2", window=4, step=2)) as url:
        co = cohere.ClientV2(api_key="unused", base_url=url, timeout=600)
        response = co.rerank(model="smollm2", query=item["query"], documents=docs)
        assert sorted(r.index for r in response.results) == list(range(len(docs)))
        body = {"query": item["query"], "documents": docs, "return_reasoning": True}
        raw = httpx.post(f"{url}/v2/rerank", json=body, timeout=600).json()
        assert len(raw["reasoning"]) == 1 and raw["reasoning"][0]["output_tokens"] > 0
        assert raw["meta"]["tokens"]["input_tokens"] > 0
        # the same model, prompt and greedy decoding: the same order as in-process
        assert [r["index"] for r in raw["results"]] == rr.rerank(item["query"], docs, window=4, step=2).order
        metrics = httpx.get(f"{url}/metrics").text
        assert 'reasonrank_tokens_total{kind="output"}' in metrics


def test_llama_index_tei_rerank(server):
    from llama_index.core.schema import NodeWithScore, TextNode
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

    url, recorder = server
    rerank = TextEmbeddingInference(base_url=url, top_n=2, auth_token=f"Bearer {KEY}")
    nodes = [NodeWithScore(node=TextNode(text=d), score=0.1) for d in DOCS]
    # the client asserts one result per text, then sorts by score and keeps top_n itself
    out = rerank.postprocess_nodes(nodes, query_str="capital of the US?")
    assert [n.node.text for n in out] == [DOCS[3], DOCS[2]]
    assert [n.score for n in out] == [1.0, 0.5]
    assert recorder.requests[-1] == ("/rerank", {"query": "capital of the US?", "texts": DOCS})
    assert rerank.postprocess_nodes([], query_str="q") == []
