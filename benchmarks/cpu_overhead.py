"""CPU overhead of the reranker around an instant model, against the floor of a byte-exact pipeline.

    python benchmarks/cpu_overhead.py [--queries 20] [--repeats 5] [--json out.json]

Builds BRIGHT-like candidate lists (100 long passages with line breaks per query, made from NovelEval
texts), reranks them with window 20 / step 10, max_passage_tokens 512, the real Qwen tokenizer with
Qwen2.5's chat template (ReasonRank-7B's prompt) and a FakeBackend that answers instantly. The floor is the
work no byte-exact implementation can skip: tokenizing each passage once (official truncation keeps the
first 512 tokens of the full tokenization), ``ftfy.fix_text`` once per passage and once per rendered
prompt. Prints medians over repeats and the ratio library / floor (target <= 1.5).
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import pstats
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SHARED_DATA, machine, median, qwen25_tokenizer, table, write_json

from reasonrank import Reranker
from reasonrank.backends import FakeBackend, answer
from reasonrank.prompts import fix_text


def bright_like_lists(num_queries: int, candidates: int, seed: int) -> tuple[list[str], list[list[dict]]]:
    """Queries from NovelEval and, per query, ``candidates`` distinct passages glued from NovelEval sentences.

    Lengths are log-normal (median ~1,000 characters, a long tail past 512 tokens), sentences are joined by
    spaces, line breaks and blank lines, as in BRIGHT's StackExchange and web passages.
    """
    rng = random.Random(seed)
    noveleval = SHARED_DATA / "noveleval"
    with open(noveleval / "corpus.tsv", encoding="utf-8") as f:
        texts = [row[1] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if len(row) > 1]
    with open(noveleval / "queries.tsv", encoding="utf-8") as f:
        base_queries = [row[1] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if len(row) > 1]
    sentences = [s.strip() + "." for t in texts for s in t.split(". ") if s.strip()]
    queries, lists = [], []
    for q in range(num_queries):
        queries.append(base_queries[q % len(base_queries)] + ("" if q < len(base_queries) else f" ({q})"))
        passages = []
        for d in range(candidates):
            target = min(20000, max(80, int(rng.lognormvariate(6.9, 0.9))))
            parts: list[str] = []
            size = 0
            while size < target:
                sentence = rng.choice(sentences)
                parts.append(sentence)
                parts.append(rng.choice((" ", " ", " ", "\n", "\n\n")))
                size += len(sentence) + 1
            passages.append({"docid": f"q{q}d{d}", "contents": "".join(parts[:-1])})
        lists.append(passages)
    return queries, lists


def instant_backend() -> FakeBackend:
    answers: dict[int, str] = {}

    def respond(request):  # a fixed, well-formed answer per window size: reverses the window
        n = len(request.docids)
        if n not in answers:
            answers[n] = answer(list(reversed(range(n))), reasoning="instant")
        return answers[n]

    return FakeBackend(respond)


def run_library(tokenizer, queries, lists, args) -> tuple[float, list[str]]:
    backend = instant_backend()
    reranker = Reranker(backend, tokenizer=tokenizer, max_passage_tokens=args.max_passage_tokens, progress=False)
    t0 = time.perf_counter()
    reranker.rerank_batch(queries, lists, window=args.window, step=args.step)
    seconds = time.perf_counter() - t0
    return seconds, [r.prompt for batch in backend.calls for r in batch]


def run_floor(tokenizer, lists, prompts) -> dict[str, float]:
    texts = [p["contents"].strip() for passages in lists for p in passages]
    t0 = time.perf_counter()
    fixed = [fix_text(t) for t in texts]
    t1 = time.perf_counter()
    for t in fixed:
        tokenizer.tokenize(t)
    t2 = time.perf_counter()
    for p in prompts:
        fix_text(p)
    t3 = time.perf_counter()
    return {"fix_text passages": t1 - t0, "tokenize passages": t2 - t1, "fix_text prompts": t3 - t2}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--step", type=int, default=10)
    parser.add_argument("--max-passage-tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one library run")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    tokenizer = qwen25_tokenizer()
    queries, lists = bright_like_lists(args.queries, args.candidates, args.seed)
    _, prompts = run_library(tokenizer, queries[:1], lists[:1], args)  # warm-up (jinja compile, ftfy import)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run_library(tokenizer, queries, lists, args)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)

    library, floors = [], []
    prompts = []
    for _ in range(args.repeats):  # interleaved, so that load from other processes hits both alike
        seconds, prompts = run_library(tokenizer, queries, lists, args)
        library.append(seconds)
        floors.append(run_floor(tokenizer, lists, prompts))
    parts = {k: median([f[k] for f in floors]) for k in floors[0]}
    floor = median([sum(f.values()) for f in floors])
    lib = median(library)
    windows = len(prompts)
    prompt_tokens = sum(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts) / windows
    passages = args.queries * args.candidates
    rows = [[name, 1000 * s, 1000 * s / passages] for name, s in parts.items()]
    rows.append(["floor (sum)", 1000 * floor, 1000 * floor / passages])
    rows.append(["library rerank_batch", 1000 * lib, 1000 * lib / passages])
    print(
        f"{args.queries} queries x {args.candidates} passages, window {args.window}/step {args.step}, "
        f"{windows} windows, {prompt_tokens:.0f} prompt tokens/window, max_passage_tokens "
        f"{args.max_passage_tokens}, medians of {args.repeats} repeats"
    )
    print(table(["work", "ms total", "ms/passage"], rows))
    ratio = lib / floor
    overhead_ms = 1000 * (lib - floor) / windows
    print(f"\nlibrary / floor = {ratio:.2f}  (target <= 1.5); overhead beyond floor {overhead_ms:.2f} ms/window")
    write_json(
        args.json,
        {
            "benchmark": "cpu_overhead",
            "machine": machine(),
            "settings": vars(args),
            "windows": windows,
            "prompt_tokens_per_window": prompt_tokens,
            "floor_seconds": parts | {"total": floor},
            "library_seconds": lib,
            "library_runs": library,
            "ratio": ratio,
            "overhead_ms_per_window": overhead_ms,
        },
    )


if __name__ == "__main__":
    main()
