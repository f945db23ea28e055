"""Real OpenAI-compatible servers on 127.0.0.1 for tests: llama-cpp-python's server with SmolLM2-135M-Instruct,
and a fault-injecting proxy in front of it. Every wait is bounded; everything started here is stopped here."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def require_llama_cpp_server() -> None:
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.fail(
            "the real-server tests need llama-cpp-python's server: run scripts/setup.sh hf,openai,dev "
            "(it installs 'llama-cpp-python[server]')"
        )


class LlamaServer:
    """``python -m llama_cpp.server`` serving a GGUF model on 127.0.0.1 (OpenAI API under ``/v1``)."""

    def __init__(self, model: str, *, port: int | None = None, n_ctx: int = 4096, threads: int = 1) -> None:
        require_llama_cpp_server()
        self.model = model
        self.port = port or free_port()
        self.n_ctx = n_ctx
        self.threads = threads
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"reasonrank-llama-server-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> LlamaServer:
        cmd = [
            sys.executable, "-m", "llama_cpp.server", "--model", self.model, "--host", HOST, "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads), "--n_threads_batch", str(self.threads),
            "--verbose", "False",
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"llama_cpp.server exited with {self.process.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as r:
                    if r.status == 200:
                        self._check_generation(deadline)
                        return self
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {timeout:.0f}s: {self.log.read_text()[-2000:]}")

    def _check_generation(self, deadline: float) -> None:
        """One tiny completion: a llama.cpp that crashes on real prompts fails here at once, with a clear message,
        instead of the tests retrying against a dead server for minutes."""
        body = json.dumps({"prompt": "Hello world, this is", "max_tokens": 2, "temperature": 0}).encode()
        request = urllib.request.Request(
            self.base_url + "/completions", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=max(5.0, deadline - time.monotonic())) as r:
                r.read()
        except OSError as e:
            time.sleep(0.5)
            code = self.process.poll() if self.process is not None else None
            self.stop()
            if code is not None and code < 0:
                raise RuntimeError(
                    f"llama_cpp.server crashed on its first completion (signal {-code}). A llama-cpp-python built "
                    "with native CPU flags crashes on CPUs with Intel AMX: rebuild it portably with scripts/setup.sh "
                    f"(see docs/troubleshooting.md). Log: {self.log.read_text(errors='replace')[-1500:]}"
                ) from e
            raise RuntimeError(f"llama_cpp.server failed its first completion: {e}") from e

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FaultProxy:
    """A proxy on 127.0.0.1 that forwards POSTs upstream, or, once ``fail_after`` requests have been forwarded
    (until :meth:`heal`), answers with the ``fail_statuses`` in turn (429s carry ``Retry-After: 0``).
    ``log`` records (path, body, status) per request."""

    def __init__(
        self, upstream_port: int, *, fail_after: int | None = None, fail_statuses: tuple[int, ...] = (500,)
    ) -> None:
        self.upstream_port = upstream_port
        self.fail_after = fail_after
        self.fail_statuses = fail_statuses
        self.failures = 0
        self.forwarded = 0
        self.log: list[tuple[str, dict, int]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                body = json.loads(raw)
                with proxy.lock:
                    failing = proxy.fail_after is not None and proxy.forwarded >= proxy.fail_after
                    if failing:
                        status = proxy.fail_statuses[proxy.failures % len(proxy.fail_statuses)]
                        proxy.failures += 1
                    else:
                        proxy.forwarded += 1
                if failing:
                    payload, headers = b'{"error": "injected fault"}', {}
                    if status == 429:
                        headers["Retry-After"] = "0"
                else:
                    conn = http.client.HTTPConnection(HOST, proxy.upstream_port, timeout=300)
                    conn.request("POST", self.path, raw, {"content-type": "application/json"})
                    response = conn.getresponse()
                    status, payload, headers = response.status, response.read(), {}
                    conn.close()
                with proxy.lock:
                    proxy.log.append((self.path, body, status))
                self.send_response(status)
                self.send_header("content-type", "application/json")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def heal(self) -> None:
        with self.lock:
            self.fail_after = None

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
