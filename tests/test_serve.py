"""``reasonrank serve``: the HTTP formats, limits, auth, queue, deadline and metrics, on a real uvicorn server."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
import time

import httpx
import pytest

from reasonrank import Reranker
from reasonrank.backends import FakeBackend, answer
from reasonrank.serve import create_app, relevance_score
from serve_server import running

KEY = "s3cr3t+/=key"  # it must never be echoed or logged
AUTH = {"Authorization": f"Bearer {KEY}"}


def reverse(request):
    return answer(list(reversed(range(len(request.docids)))))


def waits_for(release: threading.Event):
    """A fake model that answers only once ``release`` is set (30 s at most)."""

    def slow(request):
        release.wait(30)
        return reverse(request)

    return slow


def reranker(responder=reverse) -> Reranker:
    return Reranker(FakeBackend(responder), progress=False)


@pytest.fixture(scope="module")
def url():
    app = create_app(reranker(), model_name="fake-model", max_documents=50, max_request_bytes=20_000)
    with running(app) as base:
        yield base


def test_relevance_score_is_reciprocal_rank_in_unit_interval():
    scores = [relevance_score(r) for r in range(1, 200)]
    assert scores[0] == 1.0 and all(0 < s <= 1 for s in scores)
    assert all(a > b for a, b in itertools.pairwise(scores))
    with pytest.raises(ValueError):
        relevance_score(0)


def test_cohere_v2_sorted_best_first_and_cut_to_top_n(url):
    docs = [f"doc {i}" for i in range(7)]
    r = httpx.post(f"{url}/v2/rerank", json={"model": "x", "query": "q", "documents": docs, "top_n": 3})
    assert r.status_code == 200
    body = r.json()
    # the fake model reverses each window, so the last document wins
    assert [x["index"] for x in body["results"]] == [6, 5, 4]
    assert [x["relevance_score"] for x in body["results"]] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert "document" not in body["results"][0]  # v2 returns documents only when asked
    assert body["meta"]["api_version"] == {"version": "2"} and body["id"]


def test_cohere_v1_objects_return_documents_by_default(url):
    docs = [{"text": "alpha", "source": "a.txt"}, "beta", {"text": "gamma"}]
    r = httpx.post(f"{url}/v1/rerank", json={"query": "q", "documents": docs, "max_tokens_per_doc": None})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["index"] for x in results] == [2, 1, 0]
    assert results[1]["document"] == {"text": "beta"}
    assert results[2]["document"] == {"text": "alpha", "source": "a.txt"}  # the object as sent


def test_rank_fields_rank_the_named_fields():
    seen = []
    app = create_app(reranker(lambda req: seen.extend(req.contents) or reverse(req)))
    with running(app) as base:
        body = {"query": "q", "documents": [{"title": "T1", "body": "B1"}, {"title": "T2", "body": "B2"}]}
        r = httpx.post(f"{base}/v1/rerank", json={**body, "rank_fields": ["title", "body"]})
        assert r.status_code == 200
        assert "title: T1\nbody: B1" in seen[0]
        r = httpx.post(f"{base}/v1/rerank", json=body)  # objects without 'text' and no rank_fields
        assert r.status_code == 422 and "rank_fields" in r.json()["message"]


def test_jina_and_tei_shapes_on_rerank(url):
    r = httpx.post(f"{url}/rerank", json={"model": "m", "query": "q", "documents": ["a", "b", "c"], "top_n": 2})
    body = r.json()
    assert r.status_code == 200 and body["model"] == "fake-model" and "total_tokens" in body["usage"]
    assert [(x["index"], x["document"]["text"]) for x in body["results"]] == [(2, "c"), (1, "b")]
    # TEI: a bare list, one entry per text, even when top_n is sent
    r = httpx.post(f"{url}/rerank", json={"query": "q", "texts": ["a", "b", "c"], "return_text": True, "top_n": 1})
    assert r.status_code == 200
    assert r.json() == [
        {"index": 2, "score": 1.0, "text": "c"},
        {"index": 1, "score": 0.5, "text": "b"},
        {"index": 0, "score": pytest.approx(1 / 3), "text": "a"},
    ]


def test_empty_documents_give_empty_results(url):
    for path, body in [
        ("/v1/rerank", {"query": "q", "documents": []}),
        ("/v2/rerank", {"query": "q", "documents": []}),
        ("/rerank", {"query": "q", "documents": []}),
    ]:
        r = httpx.post(url + path, json=body)
        assert r.status_code == 200 and r.json()["results"] == []
    r = httpx.post(f"{url}/rerank", json={"query": "q", "texts": []})
    assert r.status_code == 200 and r.json() == []


def test_reasoning_traces_on_request(url):
    docs = [f"d{i}" for i in range(25)]
    r = httpx.post(f"{url}/v2/rerank", json={"query": "q", "documents": docs, "return_reasoning": True})
    windows = r.json()["reasoning"]
    assert [(w["start"], w["end"]) for w in windows] == [(5, 25), (0, 15)]  # window 20, step 10 (fixed mode)
    assert windows[0]["reasoning"] == "fake reasoning"
    assert windows[0]["documents"] == list(range(5, 25))
    assert windows[0]["order"] == list(range(24, 4, -1))
    assert "reasoning" not in httpx.post(f"{url}/v2/rerank", json={"query": "q", "documents": docs}).json()


@pytest.mark.parametrize(
    ("content", "status", "words"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe", 400, "not valid JSON"),
        (b"", 400, "not valid JSON"),
        (b"[1, 2]", 422, "JSON object"),
        (b'{"query": "q"}', 422, "documents"),
        (b'{"documents": ["a"]}', 422, "query"),
        (b'{"query": 5, "documents": ["a"]}', 422, "query"),
        (b'{"query": "q", "documents": "abc"}', 422, "documents"),
        (b'{"query": "q", "documents": [1, 2]}', 422, "documents"),
        (b'{"query": "q", "documents": ["a"], "top_n": 0}', 422, "top_n"),
        (b'{"query": "   ", "documents": ["a"]}', 422, "query is empty"),
    ],
)
def test_bad_requests_get_4xx_with_a_message_never_500(url, content, status, words):
    for path in ("/v1/rerank", "/v2/rerank", "/rerank"):
        # curl -d sends form encoding: the body is read as JSON whatever the content type says
        r = httpx.post(url + path, content=content, headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == status, (path, r.text)
        assert words in r.json()["message"]
        assert "Traceback" not in r.text


def test_rerank_needs_documents_or_texts(url):
    r = httpx.post(f"{url}/rerank", json={"query": "q"})
    assert r.status_code == 422 and "texts" in r.json()["message"]
    r = httpx.post(f"{url}/rerank", json={"query": "q", "texts": ["a"], "documents": ["a"]})
    assert r.status_code == 422


def test_limits_give_400_and_413(url):
    r = httpx.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["x"] * 51})
    assert r.status_code == 400 and "51 documents" in r.json()["message"] and "50" in r.json()["message"]
    r = httpx.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["x" * 30_000]})
    assert r.status_code == 413 and "20000 bytes" in r.json()["message"]

    def chunks():  # no Content-Length: the limit applies while the body streams in
        for _ in range(30):
            yield b" " * 1000

    r = httpx.post(f"{url}/v1/rerank", content=chunks())
    assert r.status_code == 413


def test_query_length_limit():
    with running(create_app(reranker(), max_query_chars=10)) as base:
        r = httpx.post(f"{base}/v2/rerank", json={"query": "q" * 11, "documents": ["a"]})
        assert r.status_code == 400 and "11 characters" in r.json()["message"]


def test_health_models_and_metrics(url):
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    models = httpx.get(f"{url}/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["fake-model"]
    httpx.post(f"{url}/v2/rerank", json={"query": "q", "documents": ["a", "b", "c"]})
    text = httpx.get(f"{url}/metrics").text
    for name in (
        "reasonrank_requests_total",
        "reasonrank_request_duration_seconds_bucket",
        "reasonrank_queue_depth",
        "reasonrank_windows_total",
        "reasonrank_tokens_total",
    ):
        assert name in text
    assert 'reasonrank_requests_total{code="200",endpoint="/v2/rerank"}' in text


def test_api_key_guards_every_endpoint_but_health(caplog):
    caplog.set_level("DEBUG")
    with running(create_app(reranker(), api_key=KEY)) as base:
        assert httpx.get(f"{base}/health").status_code == 200
        for method, path in [("POST", "/v1/rerank"), ("POST", "/v2/rerank"), ("POST", "/rerank"),
                             ("GET", "/v1/models"), ("GET", "/metrics"), ("GET", "/nope")]:  # fmt: skip
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY.encode()}):
                r = httpx.request(method, base + path, headers=headers, json={"query": "q", "documents": ["a"]})
                assert r.status_code == 401, (path, headers)
                assert r.headers["www-authenticate"] == "Bearer"
        r = httpx.post(f"{base}/v2/rerank", headers=AUTH, json={"query": "q", "documents": ["a", "b"]})
        assert r.status_code == 200
        metrics = httpx.get(f"{base}/metrics", headers=AUTH).text
        assert KEY not in metrics and 'code="401"' in metrics
    assert KEY not in caplog.text


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_queue_bound_gives_429_with_retry_after():
    release = threading.Event()
    slow = waits_for(release)
    app = create_app(reranker(slow), max_queue=2)
    server = app.state.reasonrank
    with running(app) as base, httpx.Client(timeout=30) as client:
        results = []

        def post():
            results.append(client.post(f"{base}/v2/rerank", json={"query": "q", "documents": ["a", "b"]}))

        threads = [threading.Thread(target=post) for _ in range(2)]
        for t in threads:
            t.start()
        wait_until(lambda: server.active == 2)  # both admitted, waiting on the model
        r = client.post(f"{base}/v2/rerank", json={"query": "q", "documents": ["a", "b"]})
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["message"]
        release.set()
        for t in threads:
            t.join(10)
        assert [x.status_code for x in results] == [200, 200]
        assert server.active == 0
        assert 'code="429"' in client.get(f"{base}/metrics").text


def test_deadline_gives_504():
    release = threading.Event()
    slow = waits_for(release)
    app = create_app(reranker(slow), request_timeout=0.3)
    with running(app) as base:
        r = httpx.post(f"{base}/v2/rerank", json={"query": "q", "documents": [f"d{i}" for i in range(30)]})
        release.set()
        assert r.status_code == 504
        message = r.json()["message"]
        # 30 documents: windows [10, 30) then [0, 20); the first never came back
        assert "deadline of 0.3 s" in message and "2 of 2 windows did not finish: [10, 30) [0, 20)" in message
        assert app.state.reasonrank.active == 0


def test_backend_failure_is_a_clean_502():
    def broken(request):
        raise RuntimeError("GPU on fire")

    with running(create_app(reranker(broken))) as base:
        r = httpx.post(f"{base}/v1/rerank", json={"query": "q", "documents": ["a", "b"]})
        assert r.status_code == 502
        assert "GPU on fire" in r.json()["message"] and "Traceback" not in r.text


def test_settings_are_checked_when_the_app_is_made():
    from reasonrank import InvalidInputError

    for bad in ({"window": 1}, {"max_queue": 0}, {"request_timeout": -1}, {"strategy": "nope"}, {"api_key": " "}):
        with pytest.raises((InvalidInputError, KeyError)):
            create_app(reranker(), **bad)


def test_json_error_body_is_json(url):
    r = httpx.post(f"{url}/v2/rerank", content=b"{")
    assert r.headers["content-type"] == "application/json"
    assert set(json.loads(r.content)) == {"message"}


def test_deeply_nested_json_is_a_400_not_a_500(url):
    for body in ("[" * 9000 + "]" * 9000, '{"query": "q", "documents": [' + "[" * 9000 + "]" * 9000 + "]}"):
        r = httpx.post(f"{url}/v2/rerank", content=body.encode())
        assert r.status_code == 400 and "nested too deeply" in r.json()["message"]


def test_client_disconnect_cancels_its_windows():
    release = threading.Event()
    slow = waits_for(release)
    rr = reranker(slow)
    app = create_app(rr)
    with running(app) as base:
        docs = [f"d{i}" for i in range(100)]  # 9 sliding windows, one after another
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{base}/v2/rerank", json={"query": "q", "documents": docs}, timeout=0.5)
        wait_until(lambda: app.state.reasonrank.active == 0)
        release.set()
        wait_until(lambda: rr.stats.in_flight == 0)
        time.sleep(0.2)  # were any more windows going to be sent, they would be by now
        assert rr.backend.num_requests == 1  # the first window ran; the other 8 were never sent
        assert rr.stats.windows_cancelled == 1
        assert 'code="499"' in httpx.get(f"{base}/metrics").text


def test_concurrent_requests_share_backend_calls():
    def steady(request):
        time.sleep(0.002)
        return reverse(request)

    rr = reranker(steady)
    with running(create_app(rr)) as base:

        async def main():
            async with httpx.AsyncClient(timeout=60) as client:
                body = {"query": "q", "documents": [f"d{i}" for i in range(40)]}  # 3 windows each
                return await asyncio.gather(*(client.post(f"{base}/v2/rerank", json=body) for _ in range(16)))

        responses = asyncio.run(main())
        assert all(r.status_code == 200 for r in responses)
        assert rr.stats.windows_sent == 16 * 3
        # the windows of concurrent requests went to the backend together
        assert rr.stats.windows_per_call > 2
        metrics = httpx.get(f"{base}/metrics").text
        assert "reasonrank_windows_per_backend_call" in metrics and "reasonrank_backend_calls_total" in metrics


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_300_requests_at_64_concurrent_complete_or_429_none_lost():
    rr = Reranker(FakeBackend(reverse, record=False), progress=False)
    app = create_app(rr, max_queue=32)
    server = app.state.reasonrank
    with running(app) as base:

        async def one(client, sem, i):
            docs = [f"req {i} doc {j}" for j in range(30)]
            async with sem:
                r = await client.post(f"{base}/v1/rerank", json={"query": f"q{i}", "documents": docs, "top_n": 30})
                return i, r

        async def main(n=300):
            sem = asyncio.Semaphore(64)
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(timeout=120, limits=limits) as client:
                return await asyncio.gather(*(one(client, sem, i) for i in range(n)))

        asyncio.run(main(64))  # warm up (imports, pools) before measuring memory
        before = _rss_bytes()
        results = asyncio.run(main())
        growth = _rss_bytes() - before
    expected = reranker().rerank("q", [f"doc {j}" for j in range(30)]).order
    codes = [r.status_code for _, r in results]
    assert len(results) == 300 and set(codes) <= {200, 429}
    assert codes.count(200) >= 32  # at least a queue's worth was served
    for i, r in results:
        if r.status_code == 200:
            assert [x["index"] for x in r.json()["results"]] == expected  # complete, and that request's own
            assert r.json()["results"][0]["document"]["text"].startswith(f"req {i} ")
        else:
            assert int(r.headers["retry-after"]) >= 1
    assert server.peak_active <= 32 and server.active == 0
    assert growth < 150 * 2**20, f"RSS grew by {growth / 2**20:.0f} MiB"


def test_unknown_paths_and_methods_get_json(url):
    r = httpx.get(f"{url}/v2/rerank")
    assert r.status_code == 405 and "/v2/rerank" in r.json()["message"]
    r = httpx.post(f"{url}/v3/rerank", json={})
    assert r.status_code == 404 and "endpoints" in r.json()["message"]


def test_public_names():
    import reasonrank.serve

    assert reasonrank.serve.__all__ == [
        "RankedDocument", "ServeSettings", "create_app", "create_mcp_server", "relevance_score"
    ]  # fmt: skip


def test_missing_extra_names_the_install_command():
    import subprocess
    import sys

    code = "import sys; sys.modules['starlette'] = None\nimport reasonrank.serve"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "MissingDependencyError" in out.stderr and "pip install 'reasonrank[serve]'" in out.stderr
