"""Data-parallel reranking on a Ray cluster (``pip install 'reasonrank[ray]'``).

Queries with their candidates become a Ray Dataset; a fixed pool of replica actors (``map_batches``), each
with its own reranker built from a picklable :class:`RerankerSpec` and its own GPUs, reranks them in
streaming batches. A replica that dies is restarted by Ray and its unfinished batch retried; with the
generation cache on shared storage no completed window is generated twice.

- :func:`run_eval_on_ray`: ``run_eval`` on a cluster, writing the same files (``reasonrank eval --ray``).
- :func:`rerank_dataset`: rerank any Ray Dataset of queries, e.g. :func:`read_queries_dataset` from JSONL or
  Parquet (local paths or object-store URIs), and :func:`write_rankings` the results back.

Ray is imported only when one of these runs: ``import reasonrank.distributed`` is cheap.

Examples:
    >>> spec = RerankerSpec("liuwenhan/reasonrank-7B", backend="vllm", options={"max_model_len": 16384})
    >>> spec.backend, spec.template is None
    ('vllm', True)
"""

from ._cluster import ray_cluster
from ._dataset import read_queries_dataset, rerank_dataset, write_rankings
from ._eval import run_eval_on_ray
from ._replica import RerankerFactory, RerankerSpec, RerankReplica

__all__ = [
    "RerankReplica",
    "RerankerFactory",
    "RerankerSpec",
    "ray_cluster",
    "read_queries_dataset",
    "rerank_dataset",
    "run_eval_on_ray",
    "write_rankings",
]
