"""Evaluate a reranker on a test collection, resumably: ``run_eval`` and the data it runs on.

``run_eval`` reranks every query's first-stage candidates, writes the reranked run, metrics (first stage vs
reranked), per-window traces and a summary into one directory, and caches every window's generation as it
finishes (:class:`~reasonrank.cache.CachedBackend`). Killed at any moment and restarted with the same
arguments, it calls the model only for windows that never completed and writes the same final files. A
changed setting that would mix results of two different runs in one directory is refused.

Examples:
    >>> import tempfile
    >>> from reasonrank import Reranker
    >>> from reasonrank.backends import FakeBackend
    >>> data = EvalData(
    ...     queries={"q1": "capital of France"},
    ...     candidates={"q1": [Passage("Berlin is in Germany.", docid="d1", score=2.0),
    ...                        Passage("Paris is the capital of France.", docid="d2", score=1.0)]},
    ...     qrels={"q1": {"d2": 1}},
    ... )
    >>> result = run_eval(Reranker(oracle_backend(data)), data, tempfile.mkdtemp(), metrics=["nDCG@10"],
    ...                   progress=False, model_id="oracle")
    >>> result.first_stage_metrics["nDCG@10"] < result.metrics["nDCG@10"] == 1.0
    True
    >>> result.rankings[0].docids
    ['d2', 'd1']
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ._errors import InvalidInputError
from ._eval_files import (
    _OUTPUTS,
    CACHE,
    MANIFEST,
    METRICS,
    RUN,
    SUMMARY,
    TRACES,
    OutputWriteError,
    _directory_lock,
    _holds_results,
    _output_directory,
    _output_file,
    _read_manifest,
    _remove_stale_files,
)
from ._types import Passage, Ranking, ScoreConvention, WindowTrace, check_trec_field
from .backends import FakeBackend, GenerationRequest, answer
from .cache import CachedBackend, json_line
from .io import (
    _LONE_SURROGATE,
    FileFormatError,
    TsvQuoting,
    _read_run,
    atomic_writer,
    rankings_to_run,
    read_corpus,
    read_qrels,
    read_queries,
    read_rankgpt_json,
)
from .metrics import DEFAULT_METRICS, Average, _check_qrels, check_metrics, evaluate, percent, trec_order
from .reranker import Reranker
from .strategies import Strategy, resolve_strategy
from .window import check_window_args

__all__ = ["EvalData", "EvalResult", "OutputWriteError", "oracle_backend", "run_eval"]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
CandidateOrder = Literal["file", "score"]


@dataclass
class EvalData:
    """A test collection ready to rerank: query texts, first-stage candidates (in order, with scores), qrels.

    ``skipped_lines`` counts run-file lines a lenient read skipped (reported in the summary). Everything is
    checked when the object is made, before any model call: every query with candidates has a non-empty
    text and a qid a TREC run can hold; every candidate is a :class:`Passage` with a docid (unique within
    its query, no whitespace) and a finite first-stage score; texts are valid Unicode; qrels grades are
    integers in :data:`reasonrank.metrics.RELEVANCE_RANGE`. A problem raises
    :class:`~reasonrank.InvalidInputError` naming the query (and the file, from :meth:`from_files`).
    """

    queries: dict[str, str]
    candidates: dict[str, list[Passage]]
    qrels: dict[str, dict[str, int]]
    skipped_lines: int = 0

    def __post_init__(self) -> None:
        missing = [q for q in self.candidates if q not in self.queries]
        if missing:
            raise InvalidInputError(f"{len(missing)} queries have candidates but no query text (e.g. {missing[:3]})")
        empty = [q for q, c in self.candidates.items() if not c]
        if empty:
            raise InvalidInputError(f"{len(empty)} queries have no candidates (e.g. {empty[:3]})")
        for qid, passages in self.candidates.items():
            _check_query(qid, self.queries[qid], passages)
        _check_qrels(self.qrels)

    @classmethod
    def from_files(
        cls,
        *,
        qrels: PathLike,
        run: PathLike | None = None,
        queries: PathLike | None = None,
        corpus: PathLike | None = None,
        data_json: PathLike | None = None,
        lenient: bool = False,
        depth: int | None = None,
        candidate_order: CandidateOrder = "file",
        quoting: TsvQuoting = "auto",
    ) -> EvalData:
        """Load a first-stage ``run`` with its ``queries`` and ``corpus``, or a RankGPT ``data_json`` (texts included).

        Candidates keep the run file's order, as the official pipeline reranks them
        (``candidate_order="score"`` sorts them in trec_eval order instead); ``depth`` keeps the first
        ``depth`` per query (the official ``retrieval_num``, 100). ``lenient`` reads the run as the official
        loader does (see :func:`reasonrank.io.read_run`); ``quoting`` applies to TSV queries and corpora
        (see :func:`reasonrank.io.read_corpus`).
        """
        if candidate_order not in ("file", "score"):
            raise InvalidInputError(f"candidate_order must be 'file' or 'score', got {candidate_order!r}")
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
            raise InvalidInputError(f"depth must be an int >= 1 or None, got {depth!r}")
        judgments = read_qrels(qrels)
        skipped = 0
        if data_json is not None:
            if run is not None or corpus is not None or queries is not None:
                raise InvalidInputError("give either data_json, or run + queries + corpus, not both")
            texts: dict[str, str] = {}
            candidates: dict[str, list[Passage]] = {}
            for qid, query, passages in read_rankgpt_json(data_json):
                texts[qid], candidates[qid] = query, passages
        else:
            if run is None or queries is None or corpus is None:
                raise InvalidInputError("give a first-stage run with its queries and corpus (or a RankGPT data_json)")
            first_stage, skipped_lines = _read_run(run, lenient)
            skipped = len(skipped_lines)
            texts = read_queries(queries, quoting=quoting)
            no_text = [q for q in first_stage if q not in texts]
            if no_text:
                raise InvalidInputError(
                    f"{len(no_text)} queries of the run are not in {os.fspath(queries)} (e.g. {no_text[:3]})"
                )
            wanted = {d for docs in first_stage.values() for d in docs}
            docs = read_corpus(corpus, ids=wanted, quoting=quoting)
            absent = sorted(wanted - set(docs))
            if absent:
                raise InvalidInputError(
                    f"{len(absent)} docids of the run are not in {os.fspath(corpus)} (e.g. {absent[:3]})"
                )
            candidates = {
                qid: [replace(docs[d], score=s) for d, s in scores.items()] for qid, scores in first_stage.items()
            }
            texts = {q: texts[q] for q in first_stage}
        try:  # every candidate is checked before any is dropped by depth
            data = cls(texts, candidates, judgments, skipped)
        except FileFormatError:
            raise
        except InvalidInputError as e:
            if data_json is not None:
                raise FileFormatError(data_json, 0, str(e)) from None
            raise InvalidInputError(f"{e} (read from {os.fspath(queries)}, {os.fspath(run)})") from None  # type: ignore[arg-type]
        for qid, passages in data.candidates.items():
            if candidate_order == "score":
                by_id = {p.docid: p for p in passages}
                passages = [by_id[d] for d in trec_order({p.docid or "": p.score or 0.0 for p in passages})]
            data.candidates[qid] = passages[:depth]
        return data

    def first_stage_run(self, qids: Iterable[str] | None = None) -> dict[str, dict[str, float]]:
        """The candidates' first-stage scores as a run (for the first-stage row of the metrics)."""
        chosen = self.candidates if qids is None else {q: self.candidates[q] for q in qids}
        run: dict[str, dict[str, float]] = {}
        for qid, passages in chosen.items():
            if any(p.score is None for p in passages):
                raise InvalidInputError(f"query {qid!r} has candidates without a first-stage score")
            run[qid] = {p.docid or str(i): float(p.score) for i, p in enumerate(passages)}  # type: ignore[arg-type]
        return run

    def fingerprint(self) -> str:
        """sha256 over everything that shapes the prompts: queries and candidates (order, texts, titles, scores)."""
        digest = hashlib.sha256()
        for qid, passages in self.candidates.items():
            rows = [[p.docid, p.title, p.text, p.score] for p in passages]
            digest.update(json.dumps([qid, self.queries[qid], rows], ensure_ascii=False).encode("utf-8"))
        return digest.hexdigest()


def _check_query(qid: Any, text: Any, passages: Sequence[Any]) -> None:
    """One query's text and candidates, as reranking and a TREC run need them (errors name the query)."""
    try:
        check_trec_field(qid, "qid")
    except InvalidInputError as e:
        raise InvalidInputError(f"query id {qid!r} cannot be used: {e}") from None
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"query {qid!r} has an empty query text {text!r:.40}; give every query its text")
    if _LONE_SURROGATE.search(text):
        raise InvalidInputError(f"query {qid!r}: its text holds a lone surrogate (not valid Unicode); fix the text")
    first: dict[str, int] = {}
    for i, p in enumerate(passages, start=1):
        where = f"query {qid!r}, candidate {i}"
        if not isinstance(p, Passage):
            raise InvalidInputError(f"{where} is a {type(p).__name__}, not a reasonrank Passage")
        where += f" (docid {p.docid!r})"
        try:
            docid = check_trec_field(p.docid, "docid")
        except InvalidInputError as e:
            raise InvalidInputError(f"{where}: {e}") from None
        if docid in first:
            raise InvalidInputError(
                f"{where}: the docid is also candidate {first[docid]}; a query lists each document once"
            )
        first[docid] = i
        if p.score is None:
            raise InvalidInputError(f"{where} has no first-stage score (a hit without 'score'); give every hit one")
        if isinstance(p.score, bool) or not isinstance(p.score, (int, float)) or not math.isfinite(p.score):
            raise InvalidInputError(f"{where}: its first-stage score {p.score!r} is not a finite number")
        if not isinstance(p.text, str):
            raise InvalidInputError(f"{where}: its text must be a str, got {type(p.text).__name__}")
        for field_name, value in (("text", p.text), ("title", p.title)):
            if isinstance(value, str) and _LONE_SURROGATE.search(value):
                raise InvalidInputError(
                    f"{where}: its {field_name} holds a lone surrogate (not valid Unicode); fix that document"
                )


class _OracleBackend(FakeBackend):
    """Ranks each window by the qrels; the window's grades are part of its cache key (see ``cache_context``)."""

    def __init__(self, qrels_by_query: dict[str, dict[str, int]]) -> None:
        self.qrels_by_query = qrels_by_query
        super().__init__(self._respond)

    def _grades(self, request: GenerationRequest) -> list[int]:
        grades = self.qrels_by_query.get(request.query, {})
        return [grades.get(d, 0) for d in request.docids]

    def _respond(self, request: GenerationRequest) -> str:
        grades = self._grades(request)
        order = sorted(range(len(grades)), key=lambda i: -grades[i])
        return answer(order, reasoning="oracle: ordered by the qrels")

    def cache_context(self, request: GenerationRequest) -> str:
        """The window's grades: a rerun with other qrels must not replay answers made from the old ones."""
        return json.dumps(self._grades(request))


def oracle_backend(data: EvalData) -> FakeBackend:
    """A fake model that ranks each window by the qrels (a dry run that shows the pipeline's upper bound).

    Its answers depend on the qrels, so its cache keys do too: rerunning a directory with new qrels
    generates the windows again instead of replaying the old order.
    """
    return _OracleBackend({data.queries[q]: data.qrels.get(q, {}) for q in data.candidates})


@dataclass
class EvalResult:
    """What :func:`run_eval` produced (also written to ``output_dir``)."""

    output_dir: Path
    rankings: list[Ranking]
    run: dict[str, dict[str, float]]
    metrics: dict[str, float]
    first_stage_metrics: dict[str, float]
    per_query: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        """The metrics as papers print them (×100), first stage vs reranked, plus throughput."""
        s = self.summary
        lines = [
            f"{s['queries']} {'query' if s['queries'] == 1 else 'queries'} ({s['queries_evaluated']} evaluated"
            + (", queries missing from the run count as 0" if s["average"] == "qrels" else "")
            + f"), "
            f"{s['windows']} {'window' if s['windows'] == 1 else 'windows'} ({s['windows_from_cache']} from cache, "
            f"{s['windows_generated']} generated)",
            f"{'metric':<12}{'first stage':>12}{'reranked':>10}{'change':>9}",
        ]
        for name, value in self.metrics.items():
            before = self.first_stage_metrics[name]
            lines.append(f"{name:<12}{percent(before):>12}{percent(value):>10}{(value - before) * 100:>+9.2f}")
        if s.get("model_seconds"):
            lines.append(
                f"throughput: {s['queries_per_second']:.3g} queries/s, {s['generated_tokens_per_second']:.3g} "
                f"generated tokens/s ({s['generated_tokens']} tokens in {s['model_seconds']:.1f} s of model time)"
            )
        lines.append(f"repaired windows: {s['repaired_windows']} of {s['windows']}; files in {self.output_dir}")
        return "\n".join(lines)


def _default_model_id(backend: Any) -> str:
    cls = type(backend)
    model = getattr(backend, "model", None)
    name = getattr(model, "name_or_path", None) or getattr(backend, "model_name", None)
    return f"{cls.__module__}.{cls.__qualname__}" + (f":{name}" if name else "")


def _known_settings(
    model_id: str, data: EvalData, window: int, step: int, top_k: int | None, strategy: Strategy, strict: bool | None
) -> dict:
    """The settings known before the model is loaded (the CLI checks them against the manifest first).

    ``strict=None``: not known yet (a Ray run's replicas build their rerankers), so not compared.
    """
    settings = {
        "model_id": model_id,
        "strict": strict,
        "window": window,
        "step": step,
        "top_k": top_k,
        "strategy": repr(strategy),
        "data": data.fingerprint(),
    }
    if strict is None:
        del settings["strict"]
    return settings


def _settings(
    reranker: Reranker,
    model_id: str,
    data: EvalData,
    window: int,
    step: int,
    top_k: int | None,
    strategy: Strategy,
) -> dict:
    return {
        "template": reranker.template.name,
        "max_passage_tokens": reranker.max_passage_tokens,
        "sampling": asdict(reranker.sampling),
        **_known_settings(model_id, data, window, step, top_k, strategy, reranker.strict),
    }


def _check_manifest(directory: Path, settings: dict, overwrite: bool, *, partial: bool = False) -> None:
    """Refuse settings that differ from the manifest's, then write the manifest (not with ``partial``).

    ``partial`` compares only the keys ``settings`` has and writes nothing (the check before loading a model).
    A manifest of a run that produced nothing (it failed before its first generation) is replaced.
    """
    path = directory / MANIFEST
    previous = None if overwrite else _read_manifest(path)
    if previous is None and not overwrite:
        foreign = [name for name in (RUN, METRICS, TRACES, SUMMARY) if (directory / name).exists()]
        if foreign:  # not ours (no manifest): never overwrite what a user or another tool left there
            raise InvalidInputError(
                f"{directory} holds {', '.join(foreign)} but no {MANIFEST} of a reasonrank eval run; writing the "
                "outputs would replace them: use another output directory, or overwrite=True (--overwrite)"
            )
    if previous is not None:
        normalized = json.loads(json.dumps(settings))
        keys = sorted(normalized) if partial else sorted(set(previous) | set(normalized))
        changed = [k for k in keys if previous.get(k) != normalized.get(k)]
        if not changed:
            return
        if _holds_results(directory):
            details = "; ".join(f"{k}: {_short(previous.get(k))} -> {_short(normalized.get(k))}" for k in changed)
            raise InvalidInputError(
                f"{directory} holds a run with other settings ({details}). Its cached windows would not "
                "match: use a new output directory, or overwrite=True (--overwrite) to discard that run"
            )
        if not partial:
            logger.info("%s: replacing the manifest of a run that generated nothing", directory)
            (directory / CACHE).unlink(missing_ok=True)  # at most a header, perhaps naming another model
    if partial:
        return
    if overwrite:
        for name in _OUTPUTS:
            (directory / name).unlink(missing_ok=True)
    with atomic_writer(path) as f:
        json.dump({"format": "reasonrank-eval", "version": 1, "settings": settings}, f, indent=2, sort_keys=True)
        f.write("\n")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _trace_row(ranking: Ranking, trace: WindowTrace) -> dict[str, Any]:
    row: dict[str, Any] = {"qid": ranking.qid, "query": ranking.query}
    row.update(trace.to_dict())
    del row["prompt"]
    return row


def run_eval(
    reranker: Reranker,
    data: EvalData,
    output_dir: PathLike,
    *,
    window: int = 20,
    step: int = 10,
    top_k: int | None = None,
    strategy: str | Strategy = "sliding",
    window_mode: str = "fixed",
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    scores: ScoreConvention = "rank",
    average: Average = "both",
    limit: int | None = None,
    model_id: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    query_batch_size: int = 64,
    tag: str = "reasonrank",
    extra_summary: Mapping[str, Any] | None = None,
) -> EvalResult:
    """Rerank ``data`` with ``reranker``, evaluate, and write everything to ``output_dir`` (resumable).

    Files: ``run.trec`` (reranked run; ``scores="positional"`` writes the official positional first-stage
    scores with 6 decimals, which reproduces official numbers exactly), ``metrics.json`` (first stage and
    reranked, means and per query), ``traces.jsonl`` (one line per window: query, bounds, prompt and output
    token counts, raw output, reasoning, parse repairs, seconds), ``summary.json`` (counts and throughput),
    ``cache.jsonl`` (every generation, for resuming) and ``manifest.json`` (the settings; a rerun with other
    settings is refused unless ``overwrite``). ``limit`` takes the first ``limit`` queries; it, ``scores``,
    ``metrics`` and ``average`` may change between runs of one directory (they do not change generations).
    ``strategy`` and ``window_mode`` are those of :meth:`Reranker.rerank` (default: the official sliding window).

    ``model_id`` names the model for the cache (default: the backend's class and model path); give one
    whenever two different models could look alike, e.g. two ``FakeBackend`` responders.
    At most ``query_batch_size`` queries are in flight at a time (:meth:`Reranker.rerank_stream`: streamed
    where the backend can stream, else in lockstep chunks of that many queries); metrics are computed on the
    run as written (scores rounded to 6 decimals).
    """
    if not isinstance(reranker, Reranker):
        raise InvalidInputError(f"reranker must be a Reranker, got {type(reranker).__name__}")
    model_id = model_id or _default_model_id(reranker.backend)
    directory, plan_strategy, metric_names, qids = _check_eval_args(
        data,
        output_dir,
        window=window,
        step=step,
        top_k=top_k,
        strategy=strategy,
        window_mode=window_mode,
        metrics=metrics,
        scores=scores,
        average=average,
        limit=limit,
        query_batch_size=query_batch_size,
        tag=tag,
        model_id=model_id,
        strict=reranker.strict,
        overwrite=overwrite,
    )
    with _directory_lock(directory):  # before anything in the directory is deleted or written
        _remove_stale_files(directory)
        _check_manifest(directory, _settings(reranker, model_id, data, window, step, top_k, plan_strategy), overwrite)
        return _rerank_and_report(
            reranker,
            data,
            directory,
            qids,
            plan_strategy,
            metric_names,
            window=window,
            step=step,
            top_k=top_k,
            scores=scores,
            average=average,
            limit=limit,
            model_id=model_id,
            progress=progress,
            query_batch_size=query_batch_size,
            tag=tag,
            extra_summary=extra_summary,
        )


def _check_eval_args(
    data: EvalData,
    output_dir: PathLike,
    *,
    window: int,
    step: int,
    top_k: int | None,
    strategy: str | Strategy,
    window_mode: str,
    metrics: str | Sequence[str],
    scores: ScoreConvention,
    average: Average,
    limit: int | None,
    query_batch_size: int,
    tag: str,
    model_id: str,
    strict: bool | None,
    overwrite: bool,
) -> tuple[Path, Strategy, list[str], list[str]]:
    """Everything :func:`run_eval` can check before a model runs (or, from the CLI, is loaded).

    Arguments and data; then the output directory: made if missing, not in use by another run, and its
    manifest's settings, as far as they are known without the model. Nothing in the directory is written.
    Returns the directory, the strategy, the metric names and the qids to rerank.
    """
    if not isinstance(data, EvalData):
        raise InvalidInputError(f"data must be an EvalData, got {type(data).__name__}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidInputError(f"limit must be an int >= 1 or None, got {limit!r}")
    if isinstance(query_batch_size, bool) or not isinstance(query_batch_size, int) or query_batch_size < 1:
        raise InvalidInputError(f"query_batch_size must be an int >= 1, got {query_batch_size!r}")
    metric_names = [metrics] if isinstance(metrics, str) else list(metrics)
    check_metrics(metric_names)  # a bad name fails before any model call
    if scores not in ("rank", "positional"):
        raise InvalidInputError(f"scores must be 'rank' or 'positional', got {scores!r}")
    if average not in ("both", "qrels"):
        raise InvalidInputError(f"average must be 'both' (trec_eval's default) or 'qrels', got {average!r}")
    if not isinstance(tag, str):
        raise InvalidInputError(f"tag must be a str, got {type(tag).__name__}")
    check_trec_field(tag, "tag")
    if not isinstance(model_id, str) or not model_id:
        raise InvalidInputError(f"model_id must be a non-empty string naming the model, got {model_id!r}")
    plan_strategy = resolve_strategy(strategy, window_mode)
    check_window_args(window, step)
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InvalidInputError(f"top_k must be an int >= 1 (or None for all passages), got {top_k!r}")
    qids = list(data.candidates)[:limit]
    for num in sorted({len(data.candidates[q]) for q in qids}):  # the strategy's own checks (e.g. tdpart's cutoff)
        plan_strategy.plan(num, window=window, step=step, top_k=top_k)
    judged = [q for q in qids if data.qrels.get(q)]
    if not judged and average == "both":
        raise InvalidInputError(
            f"none of the {len(qids)} queries has judgments in the qrels (query ids e.g. {qids[:3]}, qrels ids "
            f"e.g. {list(data.qrels)[:3]}); check that they use the same ids"
        )
    directory = _output_directory(output_dir)
    with _directory_lock(directory):
        known = _known_settings(model_id, data, window, step, top_k, plan_strategy, strict)
        _check_manifest(directory, known, overwrite, partial=True)
    return directory, plan_strategy, metric_names, qids


def _rerank_and_report(
    reranker: Reranker,
    data: EvalData,
    directory: Path,
    qids: list[str],
    plan_strategy: Strategy,
    metric_names: list[str],
    *,
    window: int,
    step: int,
    top_k: int | None,
    scores: ScoreConvention,
    average: Average,
    limit: int | None,
    model_id: str,
    progress: bool,
    query_batch_size: int,
    tag: str,
    extra_summary: Mapping[str, Any] | None,
) -> EvalResult:
    """Rerank through the cache, evaluate and write the final files (the caller holds the directory lock)."""
    started = time.perf_counter()
    cache = CachedBackend(reranker.backend, directory / CACHE, model_id=model_id)
    session = copy.copy(reranker)
    # Cached generations carry the model time recorded when they were made, so the traces of a resumed run
    # equal those of an uninterrupted one.
    session.backend = cache
    rankings: list[Ranking] = []
    from tqdm.auto import tqdm

    try:
        with tqdm(total=len(qids), desc="queries", unit="q", disable=not progress) as bar:
            items = ((q, data.queries[q], data.candidates[q]) for q in qids)
            for ranking in session.rerank_stream(
                items,
                window=window,
                step=step,
                top_k=top_k,
                max_in_flight=query_batch_size,
                progress=progress,
                strategy=plan_strategy,
            ):
                rankings.append(ranking)
                bar.update(1)
        position = {q: k for k, q in enumerate(qids)}
        rankings.sort(key=lambda r: position[r.qid or ""])  # streaming yields them as they complete
    except BaseException:
        logger.error(
            "reranking stopped; %d windows are cached in %s: rerun the same command to resume after them",
            len(cache),
            cache.path,
        )
        raise
    finally:
        cache.close(inner=False)
    rerank_seconds = time.perf_counter() - started
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
        windows_from_cache=cache.hits,
        windows_generated=cache.misses,
        wall_seconds=rerank_seconds,
        extra_summary=extra_summary,
    )


def _write_results(
    directory: Path,
    data: EvalData,
    qids: list[str],
    rankings: list[Ranking],
    metric_names: list[str],
    *,
    scores: ScoreConvention,
    average: Average,
    limit: int | None,
    tag: str,
    windows_from_cache: int,
    windows_generated: int,
    wall_seconds: float,
    extra_summary: Mapping[str, Any] | None,
) -> EvalResult:
    """Evaluate ``rankings`` (in ``qids`` order) and write run, traces, metrics and summary into ``directory``."""
    run = rankings_to_run(rankings, scores=scores, decimals=6)  # exactly what the written file reads back as
    # average="qrels" counts judged queries without candidates as empty rankings; with a limit, only the
    # queries taken part.
    qrels = data.qrels if limit is None else {q: data.qrels[q] for q in qids if q in data.qrels}
    runs = {"first_stage": data.first_stage_run(qids), "reranked": run}
    per_query = {name: _evaluate(r, qrels, metric_names, average, per_query=True) for name, r in runs.items()}
    means = {name: _evaluate(r, qrels, metric_names, average) for name, r in runs.items()}
    with _output_file(directory / RUN) as f:
        for ranking in rankings:
            f.writelines(line + "\n" for line in ranking.to_trec(tag=tag, scores=scores))
    with _output_file(directory / TRACES) as f:
        for ranking in rankings:
            for trace in ranking.windows:
                f.write(json_line(_trace_row(ranking, trace), separators=(", ", ": ")))
    metrics_doc = {
        "average": average,
        "queries_evaluated": len(per_query["reranked"]),
        "scores": scores,
        "first_stage": means["first_stage"],
        "reranked": means["reranked"],
        "per_query": per_query,
    }
    with _output_file(directory / METRICS) as f:
        json.dump(metrics_doc, f, indent=2)
        f.write("\n")

    windows = [w for r in rankings for w in r.windows]
    model_seconds = math.fsum(w.seconds or 0.0 for w in windows)
    generated = sum(w.output_tokens or 0 for w in windows)
    summary: dict[str, Any] = {
        "queries": len(qids),
        "queries_evaluated": len(per_query["reranked"]),
        "average": average,
        "windows": len(windows),
        "windows_from_cache": windows_from_cache,
        "windows_generated": windows_generated,
        "repaired_windows": sum(1 for w in windows if w.repairs),
        "generated_tokens": generated,
        "prompt_tokens": sum(w.prompt_tokens or 0 for w in windows),
        "model_seconds": model_seconds,
        "queries_per_second": len(qids) / model_seconds if model_seconds else None,
        "generated_tokens_per_second": generated / model_seconds if model_seconds else None,
        "wall_seconds": wall_seconds,
        "skipped_run_lines": data.skipped_lines,
        **(extra_summary or {}),
    }
    with _output_file(directory / SUMMARY) as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    return EvalResult(directory, rankings, run, means["reranked"], means["first_stage"], per_query, summary)


def _evaluate(
    run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]], names: list[str], average: Average, **kw: Any
) -> Any:
    if average == "both" and not any(q in qrels for q in run):
        return {}
    return evaluate(run, qrels, names, average=average, **kw)
