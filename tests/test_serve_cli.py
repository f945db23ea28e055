"""The ``reasonrank serve`` command: option checks before anything loads, and a real server process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from reasonrank.cli import main
from serve_server import free_port

KEY = "cli-key-9f8e7d"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--host", "0.0.0.0"], "refusing to listen on 0.0.0.0 without an API key"),
        (["--host", "example.org"], "refusing to listen"),
        (["--api-key-env", "REASONRANK_TEST_UNSET_VAR"], "REASONRANK_TEST_UNSET_VAR is unset or empty"),
        (["--window", "1"], "window"),
        (["--max-queue", "0"], "max_queue"),
        (["--strategy", "tdpart", "--window-mode", "faithful"], "window_mode"),
        (["--backend", "oracle"], "oracle needs qrels"),
        (["--backend", "hf"], "--model is required"),
    ],
)
def test_bad_options_fail_before_serving(args, words, capsys):
    code = main(["serve", "--backend", "fake", *args])
    assert code == 1
    assert words in capsys.readouterr().err


def test_empty_key_file_is_refused(tmp_path, capsys):
    empty = tmp_path / "key"
    empty.write_text("\n")
    assert main(["serve", "--backend", "fake", "--api-key-file", str(empty)]) == 1
    assert "is empty" in capsys.readouterr().err


def _start(tmp_path, *args: str, delay: float = 0.0) -> tuple[subprocess.Popen, str]:
    """``reasonrank serve --backend fake`` in a process of its own; each backend call takes ``delay`` s."""
    port = free_port()
    code = (
        "import sys, time\n"
        "from reasonrank.backends import fake\n"
        "slow = fake.FakeBackend.generate\n"
        f"fake.FakeBackend.generate = lambda self, requests: (time.sleep({delay}), slow(self, requests))[1]\n"
        "from reasonrank.cli import main\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--backend", "fake", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start: {proc.communicate()[0]}")
        time.sleep(0.1)


def test_sigterm_lets_requests_in_progress_finish(tmp_path):
    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY + "\n")  # the trailing newline is not part of the key
    proc, url = _start(tmp_path, "--api-key-file", str(key_file), "--model-name", "fake-rr", delay=1.5)
    auth = {"Authorization": f"Bearer {KEY}"}
    try:
        result = {}

        def post():
            body = {"query": "q", "documents": ["a", "b", "c"]}
            result["r"] = httpx.post(f"{url}/v2/rerank", json=body, headers=auth, timeout=60)

        thread = threading.Thread(target=post)
        thread.start()
        deadline = time.monotonic() + 20
        while "reasonrank_queue_depth 1.0" not in httpx.get(f"{url}/metrics", headers=auth).text:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        thread.join(30)
        assert result["r"].status_code == 200
        assert [x["index"] for x in result["r"].json()["results"]] == [0, 1, 2]
        # uvicorn re-raises the signal once it has shut down cleanly: the conventional "ended by SIGTERM" status
        assert proc.wait(30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = proc.communicate()[0]
    assert KEY not in log
    assert "/v2/rerank" in log  # the access log is on; it shows paths, never headers


def test_help_lists_server_and_shared_options():
    out = subprocess.run(
        [sys.executable, "-m", "reasonrank", "serve", "--help"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert out.returncode == 0
    for option in ("--api-key-file", "--max-documents", "--max-request-bytes", "--backend-option", "--strategy"):
        assert option in out.stdout
    assert "--output-dir" not in out.stdout and "--query-batch-size" not in out.stdout
