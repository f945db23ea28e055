"""Peak memory and time of ``rerank_stream`` (bounded memory) against ``rerank_batch`` with an instant fake model.

Each configuration runs in a fresh process (peak RSS is per process) over N generated queries x 100 passages.
The default template is ``rankgpt-classic`` (no ``ftfy`` pass over each prompt) so the numbers show the
scheduler and the reranker's bookkeeping rather than prompt rendering; ``--template reasonrank`` measures the
ReasonRank prompts (about 5x slower per window on CPU, the same memory profile).

    python benchmarks/streaming_memory.py --sizes 1000,10000,100000 --json benchmarks/results/streaming_memory.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table, write_json


def one(queries: int, mode: str, template: str, max_in_flight: int) -> dict[str, float]:
    from reasonrank import Reranker
    from reasonrank.backends import FakeBackend

    def items():  # generated lazily: nothing holds all queries
        for q in range(queries):
            yield (
                str(q),
                f"query {q} about a topic",
                [f"passage {q}-{i} with some words about a topic" for i in range(100)],
            )

    schedule = "streaming" if mode == "stream-streaming" else "auto"
    reranker = Reranker(FakeBackend(record=False), template=template, progress=False, schedule=schedule)
    started = time.perf_counter()
    count = 0
    if mode == "batch":
        listed = list(items())
        count = len(reranker.rerank_batch([i[1] for i in listed], [i[2] for i in listed]))
    else:
        for _ranking in reranker.rerank_stream(items(), max_in_flight=max_in_flight):
            count += 1
    seconds = time.perf_counter() - started
    assert count == queries
    return {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--modes", default="stream,stream-streaming,batch", help="batch runs at sizes <= 1,000")
    parser.add_argument("--template", default="rankgpt-classic")
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--json")
    parser.add_argument("--one", nargs=2, metavar=("QUERIES", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1], args.template, args.max_in_flight)))
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for mode in args.modes.split(","):
            if mode == "batch" and size > 1_000:
                continue
            command = [sys.executable, __file__, "--one", str(size), mode, "--template", args.template]
            command += ["--max-in-flight", str(args.max_in_flight)]
            result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
            rows.append({"queries": size, "mode": mode, **result})
            print(f"{size} {mode}: {result}", file=sys.stderr, flush=True)
    print(
        table(
            ["queries", "mode", "seconds", "ms per query", "peak RSS MB"],
            [
                [r["queries"], r["mode"], r["seconds"], 1000 * r["seconds"] / r["queries"], r["peak_rss_mb"]]
                for r in rows
            ],
        )
    )
    write_json(args.json, {"machine": machine(), "settings": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
