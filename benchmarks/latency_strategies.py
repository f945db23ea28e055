"""Single-query latency strategies under a simulated ranker on the real BRIGHT ReasonIR top-100 runs.

    python benchmarks/latency_strategies.py [--seeds 3] [--tasks biology,pony] [--json out.json]

No passage texts or model are needed: a noisy oracle plays the model. For each window it sorts the window's
docids by a latent score = relevance from the BRIGHT qrels + Gaussian noise (a per-document part that stays
fixed for the query, as a model's consistent misjudgements, and a per-call part), plus an optional bias for
early prompt positions, and answers in ReasonRank's format. The reranker runs unchanged (prompts are built
with a tiny docid-only template so the run takes minutes, not hours), and every strategy is scored with
nDCG@10 (pytrec_eval) against the qrels, averaged over the 12 tasks and the seeds.

Reported per strategy: sequential rounds (the latency of one query, in window decodes), model calls per
query (the GPU cost) and nDCG@10 with its loss against the official sliding window.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SHARED_DATA, machine, table, write_json

from reasonrank import Reranker
from reasonrank.backends import FakeBackend, answer
from reasonrank.io import read_qrels, read_run
from reasonrank.metrics import evaluate
from reasonrank.prompts import Template
from reasonrank.strategies import Sliding, Strategy, TDPart, Tournament

TASKS = (
    "biology",
    "earth_science",
    "economics",
    "psychology",
    "robotics",
    "stackoverflow",
    "sustainable_living",
    "leetcode",
    "pony",
    "aops",
    "theoremqa_questions",
    "theoremqa_theorems",
)
STRATEGIES: dict[str, Strategy] = {
    "sliding (official)": Sliding(),
    "tdpart (default, cutoff 12)": TDPart(),
    "tdpart cutoff=10 (paper)": TDPart(cutoff=10),
    "tournament": Tournament(),
}


class DocidTemplate(Template):
    """A prompt of docids only: the oracle reads ``request.docids``, so nothing else is worth building."""

    name = "docids"
    truncates_by_tokens = False

    def passage_content(self, passage, *, tokenizer=None, max_passage_tokens=None) -> str:
        return passage.text if hasattr(passage, "text") else str(passage)

    def messages_from_contents(self, query: str, contents: Sequence[str]) -> list[dict[str, str]]:
        return [{"role": "user", "content": query}]

    def render_messages(self, messages, tokenizer=None) -> str:
        return messages[0]["content"]


def load_run(task: str) -> dict[str, list[str]]:
    """The run's candidates per query in file (rank) order; lines without 6 fields dropped, as official."""
    run = read_run(SHARED_DATA / "bright" / "runs" / f"{task}.reasonir_top100.trec", lenient=True)
    return {qid: list(docs) for qid, docs in run.items()}


def load_qrels(task: str) -> dict[str, dict[str, int]]:
    return read_qrels(SHARED_DATA / "bright" / "qrels" / f"{task}.qrels")


def ndcg10(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> float:
    """Mean nDCG@10 x 100 over the run's queries that have judgments (trec_eval semantics)."""
    scored = {q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q, docs in run.items()}
    return 100 * evaluate(scored, qrels, ["nDCG@10"])["nDCG@10"]


class NoisyOracle:
    """Ranks a window by relevance + noise; deterministic given the seed, query and window contents."""

    def __init__(self, qrels, sigma_doc: float, sigma_call: float, position_bias: float, seed: int) -> None:
        self.qrels, self.seed = qrels, seed
        self.sigma_doc, self.sigma_call, self.position_bias = sigma_doc, sigma_call, position_bias
        self.doc_noise: dict[tuple[str, str], float] = {}

    def _doc_noise(self, qid: str, docid: str) -> float:
        key = (qid, docid)
        if key not in self.doc_noise:
            digest = hashlib.blake2b(f"{self.seed}|{qid}|{docid}".encode(), digest_size=8).digest()
            self.doc_noise[key] = random.Random(digest).gauss(0.0, self.sigma_doc) if self.sigma_doc else 0.0
        return self.doc_noise[key]

    def __call__(self, request) -> str:
        qid, docids = request.query, request.docids
        rels = self.qrels.get(qid, {})
        m = len(docids)
        rng = random.Random(hashlib.blake2b(f"{self.seed}|{qid}|{'|'.join(docids)}".encode()).digest())
        scores = []
        for i, d in enumerate(docids):
            s = rels.get(d, 0) + self._doc_noise(qid, d)
            if self.sigma_call:
                s += rng.gauss(0.0, self.sigma_call)
            s += self.position_bias * (1 - i / max(1, m - 1))
            scores.append(s)
        order = sorted(range(m), key=lambda i: -scores[i])
        return answer(order, reasoning="")


def run_strategy(strategy: Strategy, runs, qrels, oracle: NoisyOracle) -> tuple[dict[str, list[str]], float, float]:
    backend = FakeBackend(oracle)
    reranker = Reranker(backend, template=DocidTemplate(), progress=False)
    qids = list(runs)
    rankings = reranker.rerank_batch(
        qids, [[{"docid": d, "text": d} for d in runs[q]] for q in qids], qids=qids, strategy=strategy
    )
    rounds = sum(max((w.round for w in r.windows), default=-1) + 1 for r in rankings) / len(rankings)
    calls = sum(len(r.windows) for r in rankings) / len(rankings)
    return {q: r.docids for q, r in zip(qids, rankings)}, rounds, calls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated BRIGHT tasks (default: all 12)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--noise",
        default="0.3:0.1,0.45:0.15,0.6:0.2,0.8:0.3",
        help="comma-separated sigma_doc:sigma_call levels (default: %(default)s)",
    )
    parser.add_argument("--position-bias", default="0,0.3", help="comma-separated biases for prompt position")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    levels = [tuple(float(x) for x in level.split(":")) for level in args.noise.split(",")]
    biases = [float(b) for b in args.position_bias.split(",")]

    data = {t: (load_run(t), load_qrels(t)) for t in tasks}
    first_stage = {t: ndcg10(run, qrels) for t, (run, qrels) in data.items()}
    print(f"first-stage ReasonIR nDCG@10, mean of {len(tasks)} tasks: {sum(first_stage.values()) / len(tasks):.2f}")

    results = []
    t0 = time.perf_counter()
    for sigma_doc, sigma_call in levels:
        for bias in biases:
            for name, strategy in STRATEGIES.items():
                scores, rounds, calls = [], [], []
                for seed in range(args.seeds):
                    per_task = []
                    for run, qrels in data.values():
                        oracle = NoisyOracle(qrels, sigma_doc, sigma_call, bias, seed)
                        reranked, r, c = run_strategy(strategy, run, qrels, oracle)
                        per_task.append(ndcg10(reranked, qrels))
                        rounds.append(r)
                        calls.append(c)
                    scores.append(sum(per_task) / len(per_task))
                mean = sum(scores) / len(scores)
                sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / max(1, len(scores) - 1))
                results.append(
                    {
                        "sigma_doc": sigma_doc,
                        "sigma_call": sigma_call,
                        "position_bias": bias,
                        "strategy": name,
                        "rounds": sum(rounds) / len(rounds),
                        "calls": sum(calls) / len(calls),
                        "ndcg10": mean,
                        "ndcg10_sd_over_seeds": sd,
                        "ndcg10_per_seed": scores,
                    }
                )
                print(f"  {name:28s} noise {sigma_doc}/{sigma_call} bias {bias}: {mean:.2f}", file=sys.stderr)
    baseline = {
        (r["sigma_doc"], r["sigma_call"], r["position_bias"]): r["ndcg10"]
        for r in results
        if r["strategy"].startswith("sliding")
    }
    rows = []
    for r in results:
        loss = baseline[(r["sigma_doc"], r["sigma_call"], r["position_bias"])] - r["ndcg10"]
        r["loss_vs_sliding"] = loss
        rows.append(
            [
                f"{r['sigma_doc']:g} / {r['sigma_call']:g}",
                f"{r['position_bias']:g}",
                r["strategy"],
                f"{r['rounds']:.2f}",
                f"{r['calls']:.2f}",
                f"{r['ndcg10']:.2f} ± {r['ndcg10_sd_over_seeds']:.2f}",
                f"{loss:+.2f}",
            ]
        )
    print(
        f"\n{len(tasks)} BRIGHT tasks, ReasonIR top-100, window 20/step 10, {args.seeds} seeds, "
        f"first stage {sum(first_stage.values()) / len(tasks):.2f} ({time.perf_counter() - t0:.0f} s)"
    )
    headers = ["noise doc / call", "pos. bias", "strategy", "rounds", "calls/query", "nDCG@10", "loss"]
    print(table(headers, rows))
    write_json(
        args.json,
        {
            "benchmark": "latency_strategies",
            "machine": machine(),
            "settings": vars(args),
            "first_stage_ndcg10": first_stage,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
