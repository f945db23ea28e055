"""Evaluate a reranker on NovelEval-2306 with the Python API, resumably.

    python examples/evaluate_noveleval.py                      # real SmolLM2-135M-Instruct on CPU, 3 queries
    python examples/evaluate_noveleval.py --backend oracle     # dry run: a fake model that knows the qrels

NovelEval ships with reasonrank (``reasonrank.datasets.noveleval``), so this runs anywhere. Interrupt it
(Ctrl-C, or even ``kill -9``) and start it again: finished windows come from ``OUTPUT/cache.jsonl`` and only
the missing ones reach the model. The same run from the command line::

    reasonrank eval --dataset noveleval --model <smollm2.gguf> --template reasonrank \\
        --max-tokens 64 --max-passage-tokens 100 --limit 3 --output-dir OUTPUT
"""

from __future__ import annotations

import argparse

from reasonrank import Reranker
from reasonrank.datasets import noveleval, smollm2_gguf_path
from reasonrank.evaluation import oracle_backend, run_eval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("hf", "oracle"), default="hf")
    parser.add_argument("--queries", type=int, default=3, help="how many queries (1-21)")
    parser.add_argument("--output-dir", default="noveleval-eval")
    args = parser.parse_args()

    data = noveleval()
    if args.backend == "oracle":
        reranker, model_id = Reranker(oracle_backend(data), progress=False), "oracle"
    else:
        reranker = Reranker.from_pretrained(
            smollm2_gguf_path(), template="reasonrank", max_tokens=64, max_passage_tokens=100, batch_size=4
        )
        model_id = "SmolLM2-135M-Instruct (GGUF)"
    result = run_eval(
        reranker,
        data,
        args.output_dir,
        metrics=["nDCG@10", "nDCG@5", "nDCG@1", "MAP"],
        limit=args.queries,
        model_id=model_id,
        progress=args.backend != "oracle",
    )
    print(result.table())
    first = result.rankings[0]
    print(f"\nquery {first.qid}: {first.query}\n  new top 3: {first.docids[:3]}")
    print(f"  first window's raw output: {first.windows[0].output[:200]!r}")


if __name__ == "__main__":
    main()
