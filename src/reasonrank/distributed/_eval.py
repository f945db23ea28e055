"""``run_eval`` on a Ray cluster: the same files as the single-process run, from replicas sharing the queries."""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import InvalidInputError
from .._eval_files import _OUTPUTS, _directory_lock, _remove_stale_files
from .._types import Ranking, ScoreConvention
from ..backends import Backend, Generation, GenerationRequest
from ..cache import CachedBackend
from ..evaluation import CACHE, EvalData, EvalResult, _check_eval_args, _write_results
from ..metrics import DEFAULT_METRICS, Average
from ..strategies import Strategy
from ._cache import merge_shards
from ._cluster import check_resources, ray_cluster
from ._dataset import check_replica_args, map_replicas
from ._replica import RerankerFactory, RerankerSpec, decode, encode

__all__ = ["SHARDS", "run_eval_on_ray"]

logger = logging.getLogger(__name__)

SHARDS = "cache.d"  # the replicas' cache shards, merged into cache.jsonl when the run completes

PathLike = str | os.PathLike[str]


class _NoModel(Backend):
    """The driver's side of the main cache: it only reads and merges records, it never generates."""

    name = "none"

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        raise AssertionError("the driver does not generate; replicas do")


def run_eval_on_ray(
    reranker: RerankerFactory,
    data: EvalData,
    output_dir: PathLike,
    *,
    replicas: int = 1,
    address: str | None = None,
    num_gpus: float = 0,
    num_cpus: float = 1,
    model_id: str | None = None,
    window: int = 20,
    step: int = 10,
    top_k: int | None = None,
    strategy: str | Strategy = "sliding",
    window_mode: str = "fixed",
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    scores: ScoreConvention = "rank",
    average: Average = "both",
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    query_batch_size: int = 64,
    tag: str = "reasonrank",
    extra_summary: Mapping[str, Any] | None = None,
    ray_init_options: Mapping[str, Any] | None = None,
) -> EvalResult:
    """:func:`~reasonrank.evaluation.run_eval` with the queries shared among ``replicas`` rerankers on Ray.

    ``reranker`` is a :class:`RerankerSpec` (or any picklable function returning a :class:`Reranker`): each
    replica builds its own, with ``num_gpus`` GPUs (a vLLM engine's ``tensor_parallel_size``; 0 on CPU) and
    ``num_cpus`` CPUs. ``address``: ``None`` starts a local Ray cluster for the run, ``"auto"`` or
    ``"host:port"`` joins a running one (see :func:`ray_cluster`). Every other argument is ``run_eval``'s, and
    the files written (``run.trec``, ``metrics.json``, ``traces.jsonl``, ``summary.json``, ``manifest.json``,
    ``cache.jsonl``) are those of the single-process run with the same arguments (timings aside).

    ``output_dir`` must be visible to every node at the same path (one machine, NFS, a shared volume): the
    replicas keep the generation cache there, one shard file each in ``cache.d/``, and read each other's.
    A replica that dies is restarted by Ray and its unfinished queries are retried; the windows it completed
    come from its shard, so none is generated twice. The shards are merged into ``cache.jsonl`` when the run
    ends, even by an error, so it resumes in either mode; after a driver killed outright, rerun on Ray (which
    merges the shards left behind first).

    ``model_id`` names the model in the cache: default ``reranker.model_id`` for a :class:`RerankerSpec`;
    required with any other factory. Raises :class:`MissingDependencyError` without Ray,
    :class:`InvalidInputError` for an unreachable address or more GPUs than the cluster has, and a
    replica's own error (e.g. :class:`WindowFailedError`) when a batch fails.
    """
    if isinstance(reranker, Backend) or not callable(reranker) or hasattr(reranker, "rerank_batch"):
        raise InvalidInputError(
            "pass a RerankerSpec (or a function that builds a Reranker), not a live reranker: each replica builds "
            "its own model from it"
        )
    check_replica_args(replicas, num_gpus, num_cpus)
    if model_id is None:
        if not isinstance(reranker, RerankerSpec):
            raise InvalidInputError("give model_id=... naming the model in the cache (required unless a RerankerSpec)")
        model_id = reranker.model_id
    directory, plan_strategy, metric_names, qids = _check_eval_args(
        data, output_dir, window=window, step=step, top_k=top_k, strategy=strategy, window_mode=window_mode,
        metrics=metrics, scores=scores, average=average, limit=limit, query_batch_size=query_batch_size, tag=tag,
        model_id=model_id, strict=None, overwrite=overwrite,
    )  # fmt: skip
    with _directory_lock(directory):  # before anything in the directory is deleted or written
        _remove_stale_files(directory)
        shards = directory / SHARDS
        if overwrite:
            for name in _OUTPUTS:
                (directory / name).unlink(missing_ok=True)
            shutil.rmtree(shards, ignore_errors=True)
        shards.mkdir(exist_ok=True)

        # The driver holds the main cache (and its lock) for the whole run: no other run writes into this directory.
        main = CachedBackend(_NoModel(), directory / CACHE, model_id=model_id)
        merge_shards(main, shards)  # what an earlier, interrupted Ray run completed
        shards.mkdir(exist_ok=True)
        rerank = {"window": window, "step": step, "top_k": top_k, "strategy": plan_strategy}
        manifest = {"directory": str(directory.resolve()), "model_id": model_id, "data": data.fingerprint(), **rerank}
        cache = {"directory": str(shards.resolve()), "main": str((directory / CACHE).resolve()), "model_id": model_id}
        started = time.perf_counter()
        try:
            rows = _collect(
                reranker, data, qids, rerank, cache, manifest,
                replicas=replicas, address=address, num_gpus=num_gpus, num_cpus=num_cpus,
                query_batch_size=query_batch_size, progress=progress, ray_init_options=ray_init_options,
            )  # fmt: skip
        except BaseException:
            logger.error("reranking stopped; completed windows are cached in %s: rerun to resume", directory / CACHE)
            raise
        finally:
            merge_shards(main, shards)
            main.close(inner=False)
        wall_seconds = time.perf_counter() - started
        by_qid: dict[str, Ranking] = {}
        for row in rows:
            by_qid[row["qid"]] = decode(row["ranking"])
        rankings = [by_qid[q] for q in qids]
        summary = dict(extra_summary or {})
        if "load_seconds" in summary:  # the CLI's figure: here the slowest replica's model loading
            summary["load_seconds"] = max(row["load_seconds"] for row in rows)
        return _write_results(
            directory,
            data,
            qids,
            rankings,
            metric_names,
            scores=scores,
            average=average,
            limit=limit,
            tag=tag,
            windows_from_cache=sum(r["from_cache"] for r in rows),
            windows_generated=sum(r["generated"] for r in rows),
            wall_seconds=wall_seconds,
            extra_summary=summary,
        )


def _collect(
    factory: RerankerFactory,
    data: EvalData,
    qids: list[str],
    rerank: dict[str, Any],
    cache: dict[str, Any],
    manifest: dict[str, Any],
    *,
    replicas: int,
    address: str | None,
    num_gpus: float,
    num_cpus: float,
    query_batch_size: int,
    progress: bool,
    ray_init_options: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """Run the replicas over the queries; returns one output row per query, each exactly once."""
    with ray_cluster(address, init_options=ray_init_options) as ray:
        check_resources(ray, replicas=replicas, num_gpus=num_gpus, num_cpus=num_cpus)
        items = [{"qid": q, "query": data.queries[q], "passages": encode(data.candidates[q])} for q in qids]
        # Small enough batches that every replica gets work; at most query_batch_size (what run_eval sends).
        batch_size = max(1, min(query_batch_size, math.ceil(len(items) / replicas)))
        dataset = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / batch_size))
        reranked = map_replicas(
            dataset, factory, rerank, replicas=replicas, num_gpus=num_gpus, num_cpus=num_cpus,
            batch_size=batch_size, cache=cache, manifest=manifest, exact=True,
        )  # fmt: skip
        from tqdm.auto import tqdm

        rows: dict[str, dict[str, Any]] = {}
        context = ray.data.DataContext.get_current()
        shown, context.enable_progress_bars = context.enable_progress_bars, progress
        try:
            with tqdm(total=len(items), desc="queries", unit="q", disable=not progress) as bar:
                for batch in reranked.iter_batches(batch_size=None, batch_format="pyarrow"):
                    for row in batch.to_pylist():
                        if row["error"]:
                            raise decode(row["error"])  # the replica's own exception, e.g. WindowFailedError
                        if row["qid"] in rows:
                            raise AssertionError(f"query {row['qid']!r} came back twice from the replicas")
                        rows[row["qid"]] = row
                        bar.update(1)
        finally:
            context.enable_progress_bars = shown
    missing = [q for q in qids if q not in rows]
    if missing:
        raise AssertionError(f"{len(missing)} queries did not come back from the replicas (e.g. {missing[:3]})")
    return list(rows.values())
