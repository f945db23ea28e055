"""The OpenAI-compatible backend's request bodies, retries, spreading and key handling, over httpx's
MockTransport (the same client code path, no sockets). Real servers: test_backend_openai_server.py."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

from reasonrank import Reranker, SamplingParams
from reasonrank._errors import InvalidInputError, WindowFailedError
from reasonrank.backends import GenerationRequest, answer, get_backend_class
from reasonrank.backends.openai_compat import OpenAIBackend, RequestsFailedError
from reasonrank.prompts import get_template

SECRET = "sk-test-SECRET-value-1234567890"


def completion(text: str, finish: str = "stop", prompt_tokens: int = 11, completion_tokens: int = 7) -> dict:
    return {
        "object": "text_completion",
        "choices": [{"index": 0, "text": text, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }


class Recorder:
    """A mock server: ``reply(request_json, url)`` -> (status, json or text, headers); records every request."""

    def __init__(self, reply=None, delay: float = 0.0):
        self.requests: list[tuple[str, dict, httpx.Headers]] = []
        self.reply = reply or (lambda body, url: (200, completion(answer([0, 1])), {}))
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append((str(request.url), body, request.headers))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            status, payload, headers = self.reply(body, str(request.url))
        finally:
            self.in_flight -= 1
        if isinstance(payload, Exception):
            raise payload
        if isinstance(payload, (dict, list)):
            return httpx.Response(status, json=payload, headers=headers)
        return httpx.Response(status, text=payload, headers=headers)


def make(recorder: Recorder, **options) -> OpenAIBackend:
    options.setdefault("retry_backoff", 0.001)
    return OpenAIBackend("liuwenhan/reasonrank-7B", transport=httpx.MockTransport(recorder), **options)


def req(prompt: str = "PROMPT", key: str = "", sampling: SamplingParams | None = None) -> GenerationRequest:
    return GenerationRequest(
        prompt,
        ({"role": "system", "content": "sys"}, {"role": "user", "content": prompt}),
        sampling or SamplingParams(max_tokens=3172),
        key=key,
    )


def test_registered_and_loadable_by_name():
    assert get_backend_class("openai") is OpenAIBackend


def test_completions_body_sends_every_decoding_field_explicitly():
    rec = Recorder()
    make(rec).generate([req("<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n")])
    url, body, _ = rec.requests[0]
    assert url == "http://127.0.0.1:8000/v1/completions"
    assert body == {
        "model": "liuwenhan/reasonrank-7B",
        "prompt": "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n",
        "max_tokens": 3172, "temperature": 0.0, "top_p": 1.0,
        "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0, "min_tokens": 0,
    }  # fmt: skip  # the checkpoint's generation_config (T 0.7, top_k 20, rep 1.05) cannot leak in


def test_server_profiles_name_fields_as_each_server_does():
    sampled = SamplingParams(temperature=0.6, top_p=0.95, top_k=20, max_tokens=64, seed=3, stop=("</answer>",))
    rec = Recorder()
    make(rec, server="llama.cpp").generate([req(sampling=SamplingParams(max_tokens=8)), req(sampling=sampled)])
    greedy, sampled_body = (b for _, b, _ in rec.requests)
    assert greedy["top_k"] == 0 and greedy["repeat_penalty"] == 1.0 and greedy["min_p"] == 0.0  # llama.cpp off values
    assert "repetition_penalty" not in greedy
    assert sampled_body["top_k"] == 20 and sampled_body["seed"] == 3 and sampled_body["stop"] == ["</answer>"]
    rec = Recorder()
    make(rec, server="openai", extra_body={"user": "eval"}).generate([req(sampling=SamplingParams(max_tokens=8))])
    body = rec.requests[0][1]
    assert set(body) == {"model", "prompt", "max_tokens", "temperature", "top_p", "user"}
    with pytest.raises(InvalidInputError, match=r"server='openai' has no field for top_k=20"):
        make(Recorder(), server="openai").generate([req(sampling=sampled)])
    rec = Recorder()
    make(rec, add_special_tokens=False).generate([req()])
    assert rec.requests[0][1]["add_special_tokens"] is False
    with pytest.raises(InvalidInputError, match="add_special_tokens is a vLLM field"):
        make(Recorder(), server="sglang", add_special_tokens=False)


def test_chat_mode_sends_messages_and_restores_split_reasoning():
    def reply(body, url):
        msg = {"role": "assistant", "content": "<answer>[2] > [1]</answer>", "reasoning_content": "2 is better"}
        return 200, {"choices": [{"index": 0, "message": msg, "finish_reason": "stop"}], "usage": {}}, {}

    rec = Recorder(reply)
    (gen,) = make(rec, mode="chat").generate([req("q")])
    url, body, _ = rec.requests[0]
    assert url.endswith("/v1/chat/completions") and "prompt" not in body
    assert body["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "q"}]
    assert gen.text == "<think>2 is better</think><answer>[2] > [1]</answer>"
    assert gen.output_tokens is None and gen.finish_reason == "stop"


def test_stream_yields_in_completion_order_within_the_concurrency_bound():
    def reply(body, url):
        return 200, completion(body["prompt"]), {}

    class Slow(Recorder):
        async def __call__(self, request):
            prompt = json.loads(request.content)["prompt"]
            await asyncio.sleep(0.6 if prompt == "p0" else 0.01)  # the first request is the slowest
            return await super().__call__(request)

    rec = Slow(reply, delay=0.02)
    backend = make(rec, max_concurrency=3)
    order = [i for i, _ in backend.stream([req(f"p{i}") for i in range(12)])]
    assert sorted(order) == list(range(12)) and order[0] != 0 and order[-1] == 0
    assert rec.max_in_flight <= 3
    assert backend.stats.completed == 12 and backend.stats.retries == 0


def test_retries_on_429_and_5xx_with_retry_after_then_succeeds(caplog):
    statuses = iter([429, 503, 500, 200])

    def reply(body, url):
        status = next(statuses)
        if status == 200:
            return 200, completion("ok", prompt_tokens=5, completion_tokens=2), {}
        return status, {"error": "busy"}, {"Retry-After": "0.05"} if status == 429 else {}

    rec = Recorder(reply)
    backend = make(rec, max_retries=3)
    with caplog.at_level(logging.INFO, logger="reasonrank"):
        (gen,) = backend.generate([req(key="query 0 window 0 [0, 20)")])
    assert (gen.text, gen.prompt_tokens, gen.output_tokens, gen.finish_reason) == ("ok", 5, 2, "stop")
    assert len(rec.requests) == 4 and backend.stats.retries == 3
    assert "HTTP 429" in caplog.text and "query 0 window 0" in caplog.text


def test_timeouts_and_dropped_connections_are_retried_then_fail_with_the_window_named():
    def reply(body, url):
        return 200, httpx.ReadTimeout("slow"), {}

    rec = Recorder(reply)
    backend = make(rec, max_retries=2, timeout=0.5)
    with pytest.raises(RequestsFailedError, match=r"1 of 1 requests did not complete \(window A\).*timed out") as e:
        backend.generate([req(key="window A")])
    assert len(rec.requests) == 3 and e.value.failed.keys() == {0}


def test_client_errors_are_not_retried_and_say_how_to_fix():
    rec = Recorder(lambda body, url: (400, {"error": "unknown field top_k"}, {}))
    with pytest.raises(RequestsFailedError, match="server='openai'"):
        make(rec).generate([req()])
    assert len(rec.requests) == 1
    rec = Recorder(lambda body, url: (404, "Not Found", {}))
    with pytest.raises(RequestsFailedError, match="ends with /v1"):
        make(rec, base_url="http://127.0.0.1:8000").generate([req()])


def test_partial_failure_yields_completed_windows_first_and_stops_sending():
    def reply(body, url):
        if body["prompt"] == "p2":
            return 500, "boom", {}
        return 200, completion(body["prompt"]), {}

    rec = Recorder(reply)
    backend = make(rec, max_concurrency=1, max_retries=1)
    got = []
    with pytest.raises(RequestsFailedError) as info:
        for i, gen in backend.stream([req(f"p{i}", key=f"w{i}") for i in range(6)]):
            got.append((i, gen.text))
    assert got == [(0, "p0"), (1, "p1")]  # every answer that arrived was handed over before the error
    assert sorted(info.value.failed) == [2, 3, 4, 5] and "w2" in str(info.value)
    assert "not sent" in info.value.failed[3]
    assert [b["prompt"] for _, b, _ in rec.requests] == ["p0", "p1", "p2", "p2"]  # no new request after p2 failed


@pytest.mark.parametrize("schedule", ["lockstep", "streaming"])
def test_reranker_names_failed_windows_and_keeps_completed_ones(schedule):
    def reply(body, url):
        if "query two" in body["prompt"]:
            return 503, "overloaded", {}
        return 200, completion(answer([1, 0, 2])), {}

    backend = make(Recorder(reply), max_retries=1, max_concurrency=1)
    reranker = Reranker(backend, progress=False, schedule=schedule)
    with pytest.raises(WindowFailedError) as info:
        reranker.rerank_batch(["query one", "query two", "query three"], [["a", "b", "c"]] * 3, qids=["1", "2", "3"])
    err = info.value
    if schedule == "lockstep":  # no new request after the failure: the third is named too
        assert err.failed == (("2", (0, 3)), ("3", (0, 3))) and err.completed == 1
    else:  # the third may have been sent before the failure was final; either way each window is accounted for
        assert err.failed[0] == ("2", (0, 3)) and err.completed + len(err.failed) == 3
    assert "HTTP 503" in str(err) and isinstance(err.__cause__, RequestsFailedError)


def test_several_base_urls_share_the_load_and_fail_over():
    def reply(body, url):
        if url.startswith("http://bad"):
            return 200, httpx.ConnectError("connection refused"), {}
        return 200, completion(answer([0, 1])), {}

    rec = Recorder(reply, delay=0.01)
    urls = ["http://a:8000/v1", "http://b:8000/v1", "http://c:8000/v1"]
    backend = make(rec, base_url=urls, max_concurrency=2)
    backend.generate([req(f"p{i}") for i in range(30)])
    assert set(backend.stats.per_server) == set(urls) and min(backend.stats.per_server.values()) >= 5
    assert rec.max_in_flight <= 6
    rec = Recorder(reply)
    backend = make(rec, base_url=["http://bad:1/v1", "http://good:8000/v1"], max_retries=2)
    gens = backend.generate([req(f"p{i}") for i in range(8)])
    assert len(gens) == 8 and backend.stats.per_server == {"http://good:8000/v1": 8}
    assert backend.stats.retries >= 1  # the first request to the bad server retried on the good one


def test_api_key_is_sent_but_never_shown(monkeypatch, caplog):
    def reply(body, url):
        return 401, {"error": f"invalid key {SECRET}"}, {}  # even a server echoing the key does not leak it

    rec = Recorder(reply)
    backend = make(rec, api_key=SECRET)
    with caplog.at_level(logging.DEBUG), pytest.raises(RequestsFailedError) as info:
        backend.generate([req()])
    assert rec.requests[0][2]["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in str(info.value) and "API key" in str(info.value)
    assert SECRET not in caplog.text and SECRET not in repr(backend) and SECRET not in repr(vars(backend))
    monkeypatch.setenv("MY_KEY", SECRET)
    rec = Recorder()
    make(rec, api_key_env="MY_KEY").generate([req()])
    assert rec.requests[0][2]["authorization"] == f"Bearer {SECRET}"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    rec = Recorder()
    make(rec).generate([req()])
    assert "authorization" not in rec.requests[0][2]


def test_bad_settings_are_rejected_with_the_fix():
    with pytest.raises(InvalidInputError, match="/v1"):
        OpenAIBackend("m", base_url="localhost:8000")
    with pytest.raises(InvalidInputError, match="'completions'"):
        OpenAIBackend("m", mode="responses")
    with pytest.raises(InvalidInputError, match="unknown server"):
        OpenAIBackend("m", server="ollama")
    with pytest.raises(InvalidInputError, match="max_concurrency"):
        OpenAIBackend("m", max_concurrency=0)


def test_from_pretrained_uses_the_preset_and_the_builtin_chatml_without_tokenizer():
    rec = Recorder(lambda body, url: (200, completion(answer([2, 1, 0])), {}))
    with pytest.warns(UserWarning, match="could not load a tokenizer"):
        reranker = Reranker.from_pretrained(
            "liuwenhan/reasonrank-7B",
            backend="openai",
            transport=httpx.MockTransport(rec),
            max_passage_tokens=None,  # no tokenizer offline: passages cannot be truncated by tokens
            progress=False,
        )
    assert reranker.tokenizer is None
    ranking = reranker.rerank("why do cats purr?", ["a", "b", "c"])
    assert ranking.docids == ["2", "1", "0"]
    body = rec.requests[0][1]
    assert body["prompt"] == get_template("reasonrank").render("why do cats purr?", ["a", "b", "c"])
    assert body["max_tokens"] == 3172 and body["temperature"] == 0.0


def test_from_pretrained_with_a_tokenizer_truncates_as_official(qwen25_tokenizer):
    rec = Recorder(lambda body, url: (200, completion(answer([0, 1])), {}))
    reranker = Reranker.from_pretrained(
        "liuwenhan/reasonrank-7B",
        backend="openai",
        tokenizer=qwen25_tokenizer,
        served_model_name="rr7b",
        transport=httpx.MockTransport(rec),
        progress=False,
    )
    assert reranker.tokenizer is qwen25_tokenizer and reranker.max_passage_tokens == 512
    long_text = "word " * 2000
    reranker.rerank("q", [long_text, "short"])
    body = rec.requests[0][1]
    assert body["model"] == "rr7b"
    assert body["prompt"] == get_template("reasonrank").render(
        "q", [long_text, "short"], qwen25_tokenizer, max_passage_tokens=512
    )


# ----------------------------------------------------------------------------------------------- issue 9 §5, §6


def test_a_stop_string_is_sent_whole():
    rec = Recorder()
    make(rec).generate([req(sampling=SamplingParams(stop="</answer>"))])
    assert rec.requests[0][1]["stop"] == ["</answer>"]  # not ['<', '/', 'a', ...]


def test_http_200_with_an_error_body_is_retried_like_a_server_error():
    replies = iter([(200, {"error": {"message": "worker crashed"}}, {}), (200, completion(answer([1, 0])), {})])
    rec = Recorder(lambda body, url: next(replies))
    backend = make(rec, max_retries=2)
    (gen,) = backend.generate([req()])
    assert gen.text == answer([1, 0]) and len(rec.requests) == 2 and backend.stats.retries == 1
    rec = Recorder(lambda body, url: (200, {"error": "overloaded"}, {}))
    with pytest.raises(RequestsFailedError, match=r"HTTP 200 with an error.*overloaded"):
        make(rec, max_retries=1).generate([req()])
    assert len(rec.requests) == 2


@pytest.mark.parametrize(
    "usage, expected",
    [
        ({"completion_tokens": "12", "prompt_tokens": 30}, (None, 30)),
        ({"completion_tokens": -1, "prompt_tokens": 10**9}, (None, None)),
        ({"completion_tokens": 7.0, "prompt_tokens": 2.5}, (7, None)),
        ({"completion_tokens": True, "prompt_tokens": [1]}, (None, None)),
        ("not a mapping", (None, None)),
    ],
)
def test_token_counts_that_are_no_counts_are_recorded_as_unknown(usage, expected, caplog):
    data = {"choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}], "usage": usage}
    with caplog.at_level(logging.WARNING):
        (gen,) = make(Recorder(lambda body, url: (200, data, {}))).generate([req()])
    assert (gen.output_tokens, gen.prompt_tokens) == expected
    assert gen.text == "ok" and gen.finish_reason == "stop"
    assert "no token count" in caplog.text or not isinstance(usage, dict)


def test_infinite_and_nan_token_counts_never_reach_json():
    # Python's json reads Infinity/NaN: they must not come back out as invalid JSON in summaries.
    raw = b'{"choices": [{"text": "ok"}], "usage": {"completion_tokens": Infinity, "prompt_tokens": NaN}}'
    backend = OpenAIBackend("m", transport=httpx.MockTransport(lambda request: httpx.Response(200, content=raw)))
    (gen,) = backend.generate([req()])
    assert (gen.output_tokens, gen.prompt_tokens) == (None, None)
    json.dumps(gen.__dict__, allow_nan=False)


def test_response_bodies_are_bounded_and_an_oversized_answer_is_never_returned():
    big = completion("x" * 5000)
    rec = Recorder(lambda body, url: (200, big, {}))
    with pytest.raises(RequestsFailedError, match=r"larger than max_response_bytes=1000.*raise max_response_bytes"):
        make(rec, max_response_bytes=1000, max_retries=1).generate([req()])
    assert len(rec.requests) == 2  # retried: another attempt (or server) may answer sanely
    (gen,) = make(Recorder(lambda body, url: (200, big, {})), max_response_bytes=10_000).generate([req()])
    assert gen.text == "x" * 5000

    # without a Content-Length (chunked), the bound holds while reading
    async def chunks():
        yield b'{"choices": [{"text": "'
        for _ in range(100):
            yield b"y" * 100

    def chunked(request):
        return httpx.Response(200, content=chunks())

    backend = OpenAIBackend("m", transport=httpx.MockTransport(chunked), max_response_bytes=2000, max_retries=0)
    with pytest.raises(RequestsFailedError, match="larger than max_response_bytes=2000"):
        backend.generate([req()])
    with pytest.raises(InvalidInputError, match="max_response_bytes"):
        OpenAIBackend("m", max_response_bytes=0)


def test_deeply_nested_json_is_a_clear_error():
    raw = b"[" * 100_000 + b"]" * 100_000
    backend = OpenAIBackend("m", transport=httpx.MockTransport(lambda request: httpx.Response(200, content=raw)))
    with pytest.raises(RequestsFailedError, match="not JSON"):
        backend.generate([req()])


def test_numbers_in_settings_are_checked():
    for name, value in (("timeout", "10"), ("timeout", 0), ("connect_timeout", float("nan")), ("retry_backoff", -1)):
        with pytest.raises(InvalidInputError, match=name):
            OpenAIBackend("m", **{name: value})
    with pytest.raises(InvalidInputError, match=r"unknown openai backend option 'max_concurency'.*'max_concurrency'"):
        Reranker("openai", model="m", max_concurency=4)
