"""Throughput of data-parallel reranking on Ray with 1, 2 and 4 replicas, and Ray's start-up overhead.

    python benchmarks/ray_scaling.py [--replicas 1,2,4] [--queries 96] [--latency 0.025] [--json out.json]

The model is simulated: each window takes a fixed ``--latency`` seconds (``time.sleep``, one window at a time
per replica, as a GPU engine that is busy with a replica's windows), so the measurement is about the
distribution, not about this machine's cores. Queries are synthetic (``--candidates`` passages each, window 10,
step 5). The same run goes through ``run_eval`` in one process (the baseline) and ``run_eval_on_ray`` with
each number of replicas on one local Ray cluster started once.

Reported: queries/s, speed-up and scaling efficiency (queries/s over replicas x the 1-replica figure) of the
whole job as a user waits for it (replica start-up included), the ideal time (windows x latency / replicas),
the job's overhead over it, and the time to start the local Ray cluster (``ray.init``).
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, median, table, write_json

from reasonrank import Passage, Reranker
from reasonrank.backends import Backend, Generation, GenerationRequest, answer
from reasonrank.evaluation import EvalData, run_eval

WINDOW, STEP = 10, 5


class SleepBackend(Backend):
    """A model whose every window takes ``latency`` seconds (sleeping: no CPU used) and keeps the window's order."""

    name = "sleep"

    def __init__(self, latency: float) -> None:
        self.latency = latency

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        time.sleep(self.latency * len(requests))
        return [Generation(answer(range(len(r.docids))), seconds=self.latency) for r in requests]


def build(latency: float) -> Reranker:
    return Reranker(SleepBackend(latency), template="reasonrank", progress=False)


def synthetic(queries: int, candidates: int) -> EvalData:
    texts = {f"q{k}": f"synthetic query {k}" for k in range(queries)}
    passages = {
        q: [Passage(f"passage {i} for {q}", docid=f"{q}-d{i}", score=float(candidates - i)) for i in range(candidates)]
        for q in texts
    }
    qrels = {q: {f"{q}-d{candidates - 1}": 1} for q in texts}
    return EvalData(texts, passages, qrels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--queries", type=int, default=96)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.025, help="seconds per window")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    counts = [int(n) for n in args.replicas.split(",")]

    import ray

    from reasonrank.distributed import run_eval_on_ray

    data = synthetic(args.queries, args.candidates)
    settings = {"window": WINDOW, "step": STEP, "metrics": ["nDCG@10"], "progress": False, "model_id": "sleep"}
    factory = functools.partial(build, args.latency)

    with tempfile.TemporaryDirectory() as tmp:
        single = []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            result = run_eval(factory(), data, Path(tmp) / f"single-{r}", **settings)
            single.append(time.perf_counter() - t0)
        windows = result.summary["windows"]

        t0 = time.perf_counter()
        ray.init(num_cpus=max(counts), include_dashboard=False, logging_level="ERROR")
        init_seconds = time.perf_counter() - t0
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            walls: dict[int, list[float]] = {}
            for n in counts:
                for r in range(args.repeats):
                    t0 = time.perf_counter()
                    run_eval_on_ray(factory, data, Path(tmp) / f"ray-{n}-{r}", replicas=n, **settings)
                    walls.setdefault(n, []).append(time.perf_counter() - t0)
        finally:
            ray.shutdown()

    ideal_one = windows * args.latency
    per_replica = args.queries / median(walls[counts[0]]) / counts[0]  # queries/s of one replica, on Ray
    rows: list[list[object]] = [
        [
            "1 process, no Ray",
            1,
            median(single),
            args.queries / median(single),
            "",
            "",
            ideal_one,
            median(single) - ideal_one,
        ]
    ]
    results = []
    for n in counts:
        wall = median(walls[n])
        qps = args.queries / wall
        ideal = ideal_one / n
        rows.append(
            [
                f"Ray, {n} replicas",
                n,
                wall,
                qps,
                qps / (per_replica * n),
                qps / (per_replica * counts[0]),
                ideal,
                wall - ideal,
            ]
        )
        results.append({"replicas": n, "wall_seconds": walls[n], "queries_per_second": qps, "ideal_seconds": ideal})
    print(
        f"{args.queries} queries x {args.candidates} candidates, window {WINDOW} step {STEP}: {windows} windows of "
        f"{args.latency * 1000:.0f} ms (sleep); median of {args.repeats}; local Ray cluster started in "
        f"{init_seconds:.1f} s\n"
    )
    headers = ["run", "replicas", "wall s", "queries/s", "efficiency", "speed-up", "ideal s", "overhead s"]
    print(table(headers, rows))
    write_json(
        args.json,
        {
            "machine": machine(),
            "settings": vars(args) | {"windows": windows, "ray": ray.__version__},
            "single_process_seconds": single,
            "ray_init_seconds": init_seconds,
            "ray": results,
        },
    )


if __name__ == "__main__":
    main()
