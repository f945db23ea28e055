"""Issue 9 §4/§5: no credential in any exception, log line (every logger, DEBUG included: httpx and httpcore
too), trace, cache, manifest, repr or ``reasonrank eval`` output; and a server cannot hold a request past its
deadline. Real HTTP servers on 127.0.0.1 (the same sockets and httpx code paths users hit)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from reasonrank import Passage, Reranker, WindowFailedError
from reasonrank.backends import GenerationRequest, answer
from reasonrank.backends.openai_compat import OpenAIBackend, RequestsFailedError

KEY = "sk-live-Q3x9!\"'\\{}<>%$-end"  # quotes, backslash and braces: every escaping form must be hidden too
KEY_FILE_TEXT = KEY + "\n"  # what open("key.txt").read() gives


class EchoServer:
    """Answers every POST by ``mode``: ``echo`` (401 quoting the Authorization header, as some proxies do),
    ``flaky`` (500 quoting it, then completions whose text quotes it), ``trickle`` (a 200 sent one byte every
    0.2 s). Records the Authorization header of each request."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.auth: list[str] = []
        self.calls = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                auth = self.headers.get("authorization", "")
                server.auth.append(auth)
                server.calls += 1
                if server.mode == "trickle":
                    self.send_response(200)
                    self.send_header("content-length", "1000")
                    self.end_headers()
                    for _ in range(50):
                        try:
                            self.wfile.write(b" ")
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(0.2)
                    return
                if server.mode == "echo" or server.calls % 2:
                    status, body = (401 if server.mode == "echo" else 500), {"error": f"rejected {auth!r} {auth}"}
                else:
                    text = f"{answer([1, 0])} (debug: {auth})"
                    body = {"choices": [{"text": text, "finish_reason": "stop"}], "usage": {"completion_tokens": 3}}
                payload = json.dumps(body).encode()
                self.send_response(status if "error" in body else 200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> EchoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def leaks(text: str) -> list[str]:
    """The spellings of the key (or its distinctive middle) found in ``text``."""
    return [form for form in (KEY, KEY.strip(), "Q3x9", repr(KEY)[1:-1], json.dumps(KEY)[1:-1]) if form in text]


def all_text(path: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(path.rglob("*")) if p.is_file())


def req(key: str = "w0") -> GenerationRequest:
    return GenerationRequest("p", ({"role": "user", "content": "p"},), key=key)


@pytest.fixture
def every_log_line():
    """Every record of every logger at DEBUG (httpx/httpcore included), formatted with its arguments."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))
            if record.exc_info:
                records.append(logging.Formatter().formatException(record.exc_info))

    root = logging.getLogger()
    handler, level = Keep(logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(handler)
    root.setLevel(level)


def test_a_key_read_with_its_newline_is_sent_stripped_and_never_shown(every_log_line):
    with EchoServer("echo") as server:
        backend = OpenAIBackend("m", base_url=server.base_url, api_key=KEY_FILE_TEXT, max_retries=0)
        with pytest.raises(RequestsFailedError) as info:
            backend.generate([req()])
    assert server.auth == [f"Bearer {KEY}"]  # the newline is not part of the key: it was sent, without it
    error = info.value
    shown = [str(error), repr(error), repr(backend), repr(vars(backend)), str(error.failed), *every_log_line]
    assert "HTTP 401" in str(error) and "<hidden>" in str(error)
    assert any("httpcore" in line for line in every_log_line)  # the DEBUG logs were captured
    assert not leaks("\n".join(shown))


def test_a_server_quoting_the_key_cannot_put_it_in_traces_the_cache_or_the_output_dir(every_log_line, tmp_path):
    from reasonrank.evaluation import EvalData, run_eval

    data = EvalData(
        queries={"q1": "query one"},
        candidates={"q1": [Passage("a", docid="d1", score=2.0), Passage("b", docid="d2", score=1.0)]},
        qrels={"q1": {"d2": 1}},
    )
    with EchoServer("flaky") as server:
        backend = OpenAIBackend("m", base_url=server.base_url, api_key=KEY_FILE_TEXT, retry_backoff=0.01)
        result = run_eval(Reranker(backend, progress=False), data, tmp_path / "out", progress=False)
    assert server.calls == 2 and backend.stats.retries == 1  # the 500 quoting the key was retried
    assert result.rankings[0].docids == ["d2", "d1"]
    assert "<hidden>" in result.rankings[0].windows[0].output and not leaks(result.rankings[0].to_json())
    assert not leaks(all_text(tmp_path / "out")) and not leaks("\n".join(every_log_line))
    assert "<hidden>" in all_text(tmp_path / "out")  # the echoed key was replaced, the rest of the text kept


def test_reasonrank_eval_shows_no_key_on_stderr_even_at_debug(tmp_path):
    data = [{"query": "q", "hits": [{"qid": "1", "docid": "a", "content": "A", "score": 2.0},
                                    {"qid": "1", "docid": "b", "content": "B", "score": 1.0}]}]  # fmt: skip
    (tmp_path / "data.json").write_text(json.dumps(data))
    (tmp_path / "qrels.txt").write_text("1 0 b 1\n")
    with EchoServer("echo") as server:
        argv = [
            sys.executable, "-m", "reasonrank", "-vv", "eval", "--data-json", str(tmp_path / "data.json"),
            "--qrels", str(tmp_path / "qrels.txt"), "--backend", "openai", "--model", "liuwenhan/reasonrank-7B",
            "--backend-option", f"base_url={server.base_url}", "--backend-option", "max_retries=0",
            "--backend-option", "tokenizer=null", "--output-dir", str(tmp_path / "out"), "--no-progress",
        ]  # fmt: skip
        env = dict(os.environ, OPENAI_API_KEY=KEY_FILE_TEXT, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "HTTP 401" in done.stderr and "DEBUG httpcore" in done.stderr  # the failure and the DEBUG logs are there
    assert server.auth and all(a == f"Bearer {KEY}" for a in server.auth)
    assert not leaks(done.stdout + done.stderr)
    assert not leaks(all_text(tmp_path / "out"))


def test_credentials_in_the_url_or_in_headers_are_hidden_too(every_log_line):
    with EchoServer("echo") as server:
        url = server.base_url.replace("http://", "http://user:Q3x9-url-pass@")
        backend = OpenAIBackend(
            "m", base_url=url, headers={"X-Api-Key": "Q3x9-header-secret\n", "X-Trace": "t1"}, max_retries=0
        )
        with pytest.raises(RequestsFailedError) as info:
            backend.generate([req()])
    assert server.auth[0].startswith("Basic ")  # the URL's credentials went as basic auth, not in the URL
    shown = "\n".join([str(info.value), repr(backend), repr(vars(backend)), *every_log_line])
    assert "Q3x9" not in shown and "127.0.0.1" in shown


def test_a_key_that_cannot_be_a_header_is_refused_without_showing_it():
    for bad in ("sk-Q3x9\nsecond-line", "sk-Q3x9-é", "sk-Q3x9\x00"):
        with pytest.raises(Exception) as info:
            OpenAIBackend("m", api_key=bad)
        assert "cannot be sent in an HTTP header" in str(info.value) and "Q3x9" not in str(info.value)


@pytest.mark.timeout(60)
def test_timeout_bounds_the_whole_request_against_a_trickling_server():
    with EchoServer("trickle") as server:
        backend = OpenAIBackend("m", base_url=server.base_url, timeout=1.0, max_retries=0)
        started = time.monotonic()
        with pytest.raises(RequestsFailedError, match="timed out") as info:
            backend.generate([req()])
        elapsed = time.monotonic() - started
    # one byte every 0.2 s never trips a per-read timeout; the whole request has 1 s (10 s: a generous margin)
    assert elapsed < 10, f"the request ran {elapsed:.1f}s with timeout=1"
    assert "for the whole request" in str(info.value)


def test_window_failures_through_the_reranker_hide_the_key_too():
    with EchoServer("echo") as server:
        backend = OpenAIBackend("m", base_url=server.base_url, api_key=KEY_FILE_TEXT, max_retries=0)
        with pytest.raises(WindowFailedError) as info:
            Reranker(backend, progress=False).rerank("q", ["a", "b"])
    assert "HTTP 401" in str(info.value) and not leaks(str(info.value) + repr(info.value.__cause__))
