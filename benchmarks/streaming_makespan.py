"""Makespan of the streaming scheduler against lockstep window rounds, through the OpenAI backend.

A small asyncio HTTP server on 127.0.0.1 (its own process) answers ``/v1/completions`` after a seeded,
per-window latency shaped like ReasonRank-7B's reasoning lengths (log-normal, median 600 tokens, clipped to
100..3,172 tokens, model-reference section 1.9) times ``--ms-per-token``; it decodes any number of requests at
once, as a serving engine with room does. Each query has 100 passages (9 sliding windows). Reported per size:

- measured makespan of ``schedule="streaming"`` and ``schedule="lockstep"``;
- the round-barrier model (sum over window rounds of the slowest window in the round) and the ideal (the
  slowest query's own chain of windows), computed from the same seeded latencies;
- streaming / round-barrier and streaming / ideal (targets at 64 queries: <= 0.6 and <= 1.15).

    python benchmarks/streaming_makespan.py --sizes 64,256,1024 --json benchmarks/results/streaming_makespan.json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table, write_json

_NUM = re.compile(r"I will provide you with (\d+) passages")


def window_tokens(prompt: str, seed: int) -> int:
    """The seeded reasoning length of the window whose prompt is ``prompt``."""
    rng = random.Random(hashlib.sha256(f"{seed}|{prompt}".encode()).digest())
    return int(min(3172, max(100, rng.lognormvariate(math.log(600), 0.6))))


def latency(prompt: str, seed: int, ms_per_token: float) -> float:
    return window_tokens(prompt, seed) * ms_per_token / 1000


# ---------------------------------------------------------------------------------------------- the server


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seed: int, ms: float) -> None:
    try:
        while True:
            if not await reader.readline():
                return
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = json.loads(await reader.readexactly(length))
            prompt = body["prompt"]
            tokens = window_tokens(prompt, seed)
            await asyncio.sleep(tokens * ms / 1000)
            match = _NUM.search(prompt)
            num = int(match.group(1)) if match else 2
            text = "<think>r</think> <answer>" + " > ".join(f"[{i + 1}]" for i in range(num)) + "</answer>"
            payload = json.dumps(
                {
                    "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": tokens},
                }
            ).encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            writer.write(head.encode() + payload)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _serve(port: int, seed: int, ms: float) -> None:
    server = await asyncio.start_server(lambda r, w: _handle(r, w, seed, ms), "127.0.0.1", port, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def start_server(seed: int, ms: float) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--seed", str(seed), "--ms-per-token", str(ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return process, port


# ---------------------------------------------------------------------------------------------- the client


class _Sleeper:
    """An in-process streaming backend with the server's latencies and answers."""

    def __new__(cls, seed: int, ms: float) -> Any:
        from reasonrank.backends import Backend, Generation

        class Sleeper(Backend):
            name = "sleeper"

            def generate(self, requests: Any) -> Any:
                raise NotImplementedError

            async def agenerate(self, request: Any) -> Any:
                await asyncio.sleep(latency(request.prompt, seed, ms))
                ranked = " > ".join(f"[{i + 1}]" for i in range(len(request.docids)))
                return Generation(f"<think>r</think> <answer>{ranked}</answer>", finish_reason="stop")

        return Sleeper()


def run_size(queries: int, port: int, seed: int, ms: float, schedules: list[str]) -> dict[str, float]:
    from reasonrank import Reranker
    from reasonrank.backends.openai_compat import OpenAIBackend

    rng = random.Random(seed)
    words = [f"w{i}" for i in range(500)]
    items = []
    for q in range(queries):
        query = f"query {q} " + " ".join(rng.choices(words, k=8))
        items.append((str(q), query, [" ".join(rng.choices(words, k=40)) for _ in range(100)]))
    row: dict[str, float] = {"queries": queries}
    for schedule in schedules:
        backend = OpenAIBackend(
            "bench", base_url=f"http://127.0.0.1:{port}/v1", server="openai", max_concurrency=queries, timeout=120
        )
        reranker = Reranker(backend, progress=False, keep_prompts=True, schedule=schedule)
        started, cpu = time.perf_counter(), time.process_time()
        rankings = reranker.rerank_batch([i[1] for i in items], [i[2] for i in items], qids=[i[0] for i in items])
        row[schedule] = time.perf_counter() - started
        row[f"{schedule}_client_cpu"] = time.process_time() - cpu
        row[f"{schedule}_peak_in_flight"] = reranker.stats.peak_in_flight
    # The scheduler alone: the same latencies slept in-process (no HTTP client or server CPU).
    reranker = Reranker(_Sleeper(seed, ms), progress=False, schedule="streaming")
    started = time.perf_counter()
    reranker.rerank_batch([i[1] for i in items], [i[2] for i in items])
    row["in_process_streaming"] = time.perf_counter() - started
    row["load_average"] = os.getloadavg()[0]
    rounds: dict[int, float] = defaultdict(float)
    chains = []
    for ranking in rankings:
        chain = 0.0
        for w in ranking.windows:
            seconds = latency(w.prompt or "", seed, ms)
            rounds[w.round] = max(rounds[w.round], seconds)
            chain += seconds
        chains.append(chain)
    row["round_barrier_model"] = sum(rounds.values())
    row["ideal"] = max(chains)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="64,256,1024", help="numbers of queries (100 passages each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ms-per-token", type=float, default=1.0, help="server latency per reasoning token")
    parser.add_argument("--schedules", default="streaming,lockstep")
    parser.add_argument("--json")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(0, args.seed, args.ms_per_token))
        return
    process, port = start_server(args.seed, args.ms_per_token)
    try:
        rows = [
            run_size(int(n), port, args.seed, args.ms_per_token, args.schedules.split(","))
            for n in args.sizes.split(",")
        ]
    finally:
        process.terminate()
        process.wait(timeout=10)
    headers = [
        "queries", "streaming s", "lockstep s", "round-barrier model s", "ideal s", "stream/barrier", "stream/ideal",
        "in-process stream/ideal", "client CPU s (stream)", "load",
    ]  # fmt: skip
    body = []
    for r in rows:
        body.append(
            [
                int(r["queries"]),
                r.get("streaming", float("nan")),
                r.get("lockstep", float("nan")),
                r["round_barrier_model"],
                r["ideal"],
                r.get("streaming", float("nan")) / r["round_barrier_model"],
                r.get("streaming", float("nan")) / r["ideal"],
                r["in_process_streaming"] / r["ideal"],
                r.get("streaming_client_cpu", float("nan")),
                r["load_average"],
            ]
        )
    print(table(headers, body))
    write_json(args.json, {"machine": machine(), "settings": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
