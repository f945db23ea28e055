"""Reranking a Ray Dataset of queries (read from and written to JSONL or Parquet through Ray Data)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._errors import InvalidInputError
from ..strategies import Strategy, resolve_strategy
from ._replica import RerankerFactory, RerankReplica

__all__ = ["FORMATS", "check_replica_args", "map_replicas", "read_queries_dataset", "rerank_dataset", "write_rankings"]

FORMATS = ("jsonl", "parquet")


def _format(path: str, given: str | None) -> str:
    if given is not None:
        if given not in FORMATS:
            raise InvalidInputError(f"format must be one of {', '.join(FORMATS)}, got {given!r}")
        return given
    name = path.rstrip("/").lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
        return "jsonl"
    raise InvalidInputError(f"cannot tell the format of {path!r} from its name; pass format='jsonl' or 'parquet'")


def read_queries_dataset(path: str | list[str], *, format: str | None = None) -> Any:
    """A Ray Dataset of queries from JSONL or Parquet files (local paths, or ``s3://``/``gs://`` URIs).

    Each row: ``qid``, ``query`` and ``passages``, a list of mappings with ``text`` (or ``contents``, ...),
    ``docid`` and optionally ``title`` and ``score`` (the passage mappings that ``Reranker.rerank`` accepts).
    """
    from ._cluster import import_ray

    ray = import_ray()
    first = path if isinstance(path, str) else path[0]
    kind = _format(first, format)
    return ray.data.read_parquet(path) if kind == "parquet" else ray.data.read_json(path, lines=True)


def write_rankings(dataset: Any, path: str, *, format: str | None = None) -> None:
    """Write :func:`rerank_dataset`'s rows to a directory of JSONL or Parquet files (local or a URI)."""
    kind = _format(path, format)
    if kind == "parquet":
        dataset.write_parquet(path)
    else:
        dataset.write_json(path, orient="records", lines=True, force_ascii=False)


def rerank_dataset(
    dataset: Any,
    reranker: RerankerFactory,
    *,
    replicas: int = 1,
    num_gpus: float = 0,
    num_cpus: float = 1,
    batch_size: int = 64,
    window: int = 20,
    step: int = 10,
    top_k: int | None = None,
    strategy: str | Strategy = "sliding",
    window_mode: str = "fixed",
    cache: Mapping[str, Any] | None = None,
) -> Any:
    """A lazy Ray Dataset of rankings: ``dataset``'s queries reranked by ``replicas`` actors, streaming.

    Input rows as :func:`read_queries_dataset` reads them. Output rows: ``qid``, ``docids`` (the new order),
    ``ranking`` (``Ranking.to_json()``: passages, scores and window traces), and per batch the windows
    ``generated`` and answered ``from_cache`` and the replica's ``load_seconds`` (see
    :class:`~reasonrank.distributed.RerankReplica`). Nothing runs until the result is consumed
    (``write_rankings``, ``iter_rows``, ``take_all``); Ray Data streams batches through the replicas with
    bounded memory. ``cache={"directory": ..., "main": ..., "model_id": ...}`` shares a generation cache
    between replicas (a directory on shared storage; see :class:`SharedCache`).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be an int >= 1, got {batch_size!r}")
    rerank = {"window": window, "step": step, "top_k": top_k, "strategy": resolve_strategy(strategy, window_mode)}
    return map_replicas(
        dataset, reranker, rerank, replicas=replicas, num_gpus=num_gpus, num_cpus=num_cpus, batch_size=batch_size,
        cache=cache,
    )  # fmt: skip


def check_replica_args(replicas: int, num_gpus: float, num_cpus: float) -> None:
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise InvalidInputError(f"replicas must be an int >= 1, got {replicas!r}")
    for name, value in (("num_gpus", num_gpus), ("num_cpus", num_cpus)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise InvalidInputError(f"{name} (per replica) must be a number >= 0, got {value!r}")


def map_replicas(
    dataset: Any,
    reranker: RerankerFactory,
    rerank: Mapping[str, Any],
    *,
    replicas: int,
    num_gpus: float,
    num_cpus: float,
    batch_size: int,
    **replica_options: Any,
) -> Any:
    """``dataset.map_batches`` over a fixed pool of ``replicas`` :class:`RerankReplica` actors.

    Ray Data's actor pools restart a replica whose process dies (its node failed, it was OOM-killed, it
    crashed) and retry the batch it was working on, without limit (``max_restarts=-1``,
    ``max_task_retries=-1``): at-least-once delivery, made exactly-once per query by the query ids and the
    shared cache. An exception raised by the reranker (a bad input, a failed backend) is not retried: it
    fails the job.
    """
    import ray.data

    check_replica_args(replicas, num_gpus, num_cpus)
    return dataset.map_batches(
        RerankReplica,
        fn_constructor_args=(reranker, dict(rerank)),
        fn_constructor_kwargs=replica_options,
        batch_size=batch_size,
        batch_format="pyarrow",
        # One batch per replica at a time: otherwise the replica that starts first queues several batches
        # while the others are still loading their model, and a small job runs on one replica.
        compute=ray.data.ActorPoolStrategy(size=replicas, max_tasks_in_flight_per_actor=1),
        num_gpus=num_gpus,
        num_cpus=num_cpus,
    )
