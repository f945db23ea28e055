"""What runs on each replica: a reranker built from a picklable spec, applied to batches of queries."""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import BackendError, InvalidInputError, ReasonRankError
from ..reranker import Reranker
from ._cache import SharedCache

__all__ = ["RerankReplica", "RerankerFactory", "RerankerSpec"]

logger = logging.getLogger(__name__)

#: Anything that builds a :class:`Reranker` when called with no arguments, and that pickles (cloudpickle):
#: a :class:`RerankerSpec`, a ``functools.partial``, a module-level function, a lambda.
RerankerFactory = Callable[[], Reranker]


@dataclass(frozen=True)
class RerankerSpec:
    """How to build a :class:`~reasonrank.Reranker`; each replica builds its own from it.

    A live reranker cannot be shipped to a replica: its backend holds a model in (GPU) memory, an engine, or
    open connections. A spec is a few strings, so it pickles, and every replica (and every restarted one)
    loads its own model with ``Reranker.from_pretrained(model, backend=..., template=..., **options)``.

    Examples:
        >>> spec = RerankerSpec("liuwenhan/reasonrank-7B", backend="vllm", options={"tensor_parallel_size": 2})
        >>> spec.model_id
        '{"backend": "vllm", "model": "liuwenhan/reasonrank-7B"}'

    ``model_id`` names the model in the generation cache (as ``reasonrank eval`` names it): backend, model
    and the options that change outputs for the same prompt (``gguf_file``, ``dtype``, ``revision``).
    """

    model: str
    backend: str = "hf"
    template: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise InvalidInputError("RerankerSpec needs model=, a hub id or a local path")
        if "progress" in self.options:
            raise InvalidInputError("replicas never show progress bars; leave progress out of the options")

    def __call__(self) -> Reranker:
        return Reranker.from_pretrained(
            self.model, backend=self.backend, template=self.template, progress=False, **self.options
        )

    @property
    def model_id(self) -> str:
        model = os.path.abspath(self.model) if os.path.exists(self.model) else self.model
        identity = {"backend": self.backend, "model": model}
        identity.update({k: self.options[k] for k in ("gguf_file", "dtype", "revision") if k in self.options})
        return json.dumps(identity, sort_keys=True)


def build_reranker(factory: RerankerFactory) -> Reranker:
    reranker = factory()
    if not isinstance(reranker, Reranker):
        raise InvalidInputError(
            f"the reranker factory returned a {type(reranker).__name__}, not a Reranker; pass a RerankerSpec or a "
            "function that builds a Reranker"
        )
    return reranker


def encode(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> Any:
    return pickle.loads(data)


class RerankReplica:
    """A Ray Data actor (``map_batches`` callable class): one reranker, its shared cache, batches of queries.

    Input rows: ``qid``, ``query`` and ``passages`` (a list of passage mappings, or with ``exact=True`` a
    pickled ``list[Passage]``). Output rows: ``qid``, ``ranking`` (``Ranking.to_json()``, or pickled with
    ``exact=True``), ``docids``, and per batch (on its first row, 0 on the others) the windows ``generated``
    and answered ``from_cache``, and the replica's ``load_seconds`` (on the first row of its first batch).

    With ``exact=True`` (the evaluation driver's mode) an error, in building the reranker or in a batch, is
    returned in an ``error`` column (the pickled exception) instead of raised: Ray would hand the driver a
    traceback string in its own exception types, and retry a failing constructor as if the process had died.
    """

    def __init__(
        self,
        factory: RerankerFactory,
        rerank: Mapping[str, Any],
        *,
        cache: Mapping[str, Any] | None = None,
        manifest: Mapping[str, Any] | None = None,
        exact: bool = False,
    ) -> None:
        self.rerank = dict(rerank)
        self.exact = exact
        self.manifest = dict(manifest) if manifest is not None else None
        self.cache: SharedCache | None = None
        self.error: Exception | None = None
        started = time.perf_counter()
        try:
            reranker = build_reranker(factory)
            self.session = copy.copy(reranker)
            if cache is not None:
                directory, model_id, main = cache["directory"], cache["model_id"], cache["main"]
                self.cache = SharedCache(reranker.backend, directory, model_id=model_id, main=main)
                self.session.backend = self.cache
        except Exception as e:
            if not exact:
                raise
            self.error = e  # reported with the first batch
        self.load_seconds: float | None = time.perf_counter() - started
        logger.info("replica %d ready in %.1f s", os.getpid(), self.load_seconds)

    def _check_manifest(self) -> None:
        """Refuse a run directory that holds a run with other settings (as ``run_eval`` does, before any call)."""
        from ..evaluation import EvalData, _check_manifest, _settings

        m, self.manifest = self.manifest, None
        if m is None:
            return
        empty = EvalData({}, {}, {})
        settings = _settings(self.session, m["model_id"], empty, m["window"], m["step"], m["top_k"], m["strategy"])
        settings["data"] = m["data"]  # the driver's fingerprint of all the data (this replica sees a share)
        _check_manifest(Path(m["directory"]), settings, overwrite=False)

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        rows = batch.to_pylist()  # a pyarrow.Table: the pipeline asks for batch_format="pyarrow"
        qids = [str(row["qid"]) for row in rows]
        try:
            if self.error is not None:
                raise self.error
            self._check_manifest()
            return self._rerank(rows, qids)
        except Exception as e:
            if not self.exact:
                raise
            error = portable(e)
            return {
                "qid": qids,
                "ranking": [b""] * len(qids),
                "docids": [[] for _ in qids],
                "generated": [0] * len(qids),
                "from_cache": [0] * len(qids),
                "load_seconds": [0.0] * len(qids),
                "error": [error] * len(qids),
            }

    def _rerank(self, rows: list[dict[str, Any]], qids: list[str]) -> dict[str, list[Any]]:
        passages = [decode(row["passages"]) if self.exact else list(row["passages"]) for row in rows]
        hits, misses = (self.cache.hits, self.cache.misses) if self.cache is not None else (0, 0)
        rankings = self.session.rerank_batch(
            [row["query"] for row in rows], passages, qids=qids, progress=False, **self.rerank
        )
        first = [1] + [0] * (len(rows) - 1)
        generated = self.cache.misses - misses if self.cache is not None else 0
        from_cache = self.cache.hits - hits if self.cache is not None else 0
        load_seconds, self.load_seconds = self.load_seconds, None
        columns: dict[str, list[Any]] = {
            "qid": qids,
            "ranking": [encode(r) if self.exact else r.to_json() for r in rankings],
            "docids": [r.docids for r in rankings],
            "generated": [generated * f for f in first],
            "from_cache": [from_cache * f for f in first],
            "load_seconds": [load_seconds if f and load_seconds is not None else 0.0 for f in first],
        }
        if self.exact:
            columns["error"] = [b""] * len(qids)
        return columns


def portable(error: Exception) -> bytes:
    """``error`` pickled, or (when it does not survive pickling) a ``ReasonRankError`` subclass with its message.

    Some exceptions cannot be rebuilt from their pickle (an ``__init__`` with keyword-only arguments, such
    as ``WindowFailedError``'s); the driver then gets the nearest reasonrank class with the same message.
    """
    try:
        data = encode(error)
        decode(data)
        return data
    except Exception:
        kind = next(
            (k for k in (InvalidInputError, BackendError, ReasonRankError) if isinstance(error, k)), ReasonRankError
        )
        return encode(kind(f"{type(error).__name__}: {error}"))
