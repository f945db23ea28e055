"""``reasonrank serve`` under load: requests/s, p50/p95 latency and windows per backend call.

    python benchmarks/serve_load.py [--requests 200] [--concurrency 1,8,64] [--documents 30]
                                    [--call-seconds 0,0.02] [--json PATH]

The server runs in a subprocess (uvicorn, one event loop, as ``reasonrank serve`` runs it) over the fake
backend; the client is this process (httpx, asyncio). ``--call-seconds`` is how long one backend call takes
whatever its batch size, a stand-in for a batched engine (0: the instant fake backend, so the numbers are the
server's and the reranker's own overhead). Windows per backend call come from the server's ``/metrics``:
with many requests in flight their windows share backend calls (the batching gain). "server mean" is the
server's own time per request (admission to response, from ``/metrics``); the rest of the client's latency is
HTTP on both sides, and the client's own CPU, on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

from _common import machine, table


def _serve(port: int, call_seconds: float) -> None:
    """The server process: the fake backend, each backend call taking ``call_seconds``."""
    import uvicorn

    from reasonrank import Reranker
    from reasonrank.backends import FakeBackend
    from reasonrank.serve import create_app

    class Batched(FakeBackend):
        def generate(self, requests):  # type: ignore[no-untyped-def]
            time.sleep(call_seconds)
            return super().generate(requests)

    app = create_app(
        Reranker(Batched(record=False), progress=False), model_name="fake", max_queue=1024, max_documents=1000
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_SCRAPED = (
    "reasonrank_backend_calls_total",
    'reasonrank_scheduler_windows_total{state="sent"}',
    'reasonrank_request_duration_seconds_sum{endpoint="/v2/rerank"}',
    'reasonrank_request_duration_seconds_count{endpoint="/v2/rerank"}',
)


def _scrape(client: Any, url: str) -> list[float]:
    """Backend calls, windows sent, and the server's own rerank seconds and requests, from /metrics."""
    text = client.get(f"{url}/metrics").text
    values = []
    for name in _SCRAPED:
        found = re.search("^" + re.escape(name) + r" (\S+)$", text, re.M)
        values.append(float(found.group(1)) if found else 0.0)
    return values


async def _level(url: str, requests: int, concurrency: int, documents: int) -> dict[str, Any]:
    import httpx

    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    codes: dict[int, int] = {}

    async def one(client: httpx.AsyncClient, i: int) -> None:
        body = {"query": f"query {i}", "documents": [f"request {i} passage {j}" for j in range(documents)]}
        async with semaphore:
            t0 = time.perf_counter()
            r = await client.post(f"{url}/v2/rerank", json=body)
            latencies.append(time.perf_counter() - t0)
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
            if r.status_code == 200:
                assert len(r.json()["results"]) == documents

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(client, i) for i in range(requests)))
        wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "requests": requests,
        "concurrency": concurrency,
        "codes": codes,
        "requests_per_s": requests / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level (default 200)")
    parser.add_argument("--concurrency", default="1,8,64", help="comma-separated (default 1,8,64)")
    parser.add_argument("--documents", type=int, default=30, help="documents per request (default 30: 2 windows)")
    parser.add_argument("--call-seconds", default="0,0.02", help="seconds per backend call, comma-separated")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--_serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._serve:
        _serve(int(args._serve[0]), float(args._serve[1]))
        return 0

    import httpx

    rows, results = [], []
    for call_seconds in [float(x) for x in args.call_seconds.split(",")]:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, __file__, "--_serve", str(port), str(call_seconds)])
        try:
            with httpx.Client(timeout=60) as client:
                for _ in range(600):
                    try:
                        client.get(f"{url}/health")
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
                asyncio.run(_level(url, 20, 4, args.documents))  # warm-up
                for concurrency in [int(x) for x in args.concurrency.split(",")]:
                    before = _scrape(client, url)
                    level = asyncio.run(_level(url, args.requests, concurrency, args.documents))
                    calls, sent, seconds, count = (b - a for a, b in zip(before, _scrape(client, url)))
                    level["call_seconds"] = call_seconds
                    level["windows_per_call"] = sent / max(calls, 1)
                    level["server_mean_ms"] = 1000 * seconds / max(count, 1)
                    results.append(level)
                    rows.append([
                        f"{1000 * call_seconds:g} ms", concurrency, f"{level['requests_per_s']:.1f}",
                        f"{level['p50_ms']:.0f}", f"{level['p95_ms']:.0f}", f"{level['server_mean_ms']:.0f}",
                        f"{level['windows_per_call']:.2f}",
                        ", ".join(f"{k}: {v}" for k, v in sorted(level["codes"].items())),
                    ])  # fmt: skip
        finally:
            server.terminate()
            server.wait(30)
    headers = [
        "backend call", "concurrency", "requests/s", "p50 ms", "p95 ms", "server mean ms", "windows/call", "responses"
    ]  # fmt: skip
    print(table(headers, rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": machine(), "documents": args.documents, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
