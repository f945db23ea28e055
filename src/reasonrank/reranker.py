"""The reranker: windows in rounds (official sliding windows by default), round k of every query in one call."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import warnings
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from ._errors import InvalidInputError, MissingDependencyError, PassageTypeError
from ._scheduler import (
    Dispatcher,
    QueryState,
    SchedulerStats,
    WindowCodec,
    check_schedule,
    finish,
    iterate_in_thread,
    run_lockstep,
    run_queries,
)
from ._types import Passage, PassageLike, Ranking, SamplingParams, as_passages
from .backends import Backend, get_backend_class
from .backends._base import check_options
from .presets import ModelPreset, find_preset
from .prompts import Template, available_templates, get_template
from .strategies import Strategy, resolve_strategy
from .window import check_window_args

__all__ = ["Reranker"]

logger = logging.getLogger(__name__)

_SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "max_tokens",
    "min_tokens",
    "repetition_penalty",
    "seed",
)
_RERANKER_OPTIONS = ("tokenizer", "max_passage_tokens", "sampling", "strict", "keep_prompts", "progress", "schedule")
#: queries a ``rerank_stream`` keeps started and not yet taken by its caller
DEFAULT_MAX_IN_FLIGHT = 64


def _check_passage_limit(template: Template, max_passage_tokens: Any) -> None:
    """``max_passage_tokens`` is None or an int >= 1, and only for templates that truncate by tokens."""
    if max_passage_tokens is None:
        return
    if isinstance(max_passage_tokens, bool) or not isinstance(max_passage_tokens, int) or max_passage_tokens < 1:
        raise InvalidInputError(f"max_passage_tokens must be an int >= 1 or None, got {max_passage_tokens!r}")
    if not template.truncates_by_tokens:
        raise InvalidInputError(
            f"the {template.name!r} template cuts passages by characters or words itself (as its "
            "official code does), so max_passage_tokens does not apply: leave it None"
        )


def _check_qids(qids: Any, count: int) -> list[str] | None:
    """``qids`` as a list of ``count`` non-empty strs (ints are turned into strs), or None."""
    if qids is None:
        return None
    if isinstance(qids, (str, bytes)) or not isinstance(qids, Sequence):
        raise InvalidInputError(
            f"qids must be a list with one qid per query, got {type(qids).__name__} {qids!r:.40}; "
            "for a single query use rerank(query, passages, qid=...)"
        )
    if len(qids) != count:
        raise InvalidInputError(f"got {len(qids)} qids for {count} queries")
    checked = []
    for i, qid in enumerate(qids):
        if isinstance(qid, bool) or not isinstance(qid, (str, int)) or str(qid) == "":
            raise InvalidInputError(f"qid {i} must be a non-empty str (or an int), got {qid!r:.40}")
        checked.append(str(qid))
    return checked


def _check_unique_docids(label: str, passages: Sequence[Passage]) -> None:
    """Each passage's docid (its input position when it has none) must be unique within a query: a ranking
    (and its run) cannot name one document twice."""
    first: dict[str, int] = {}
    for i, passage in enumerate(passages):
        docid = passage.docid if passage.docid is not None else str(i)
        if docid in first:
            positional = passage.docid is None or passages[first[docid]].docid is None
            why = " (a passage without a docid is named by its position)" if positional else ""
            raise InvalidInputError(
                f"{label}: passages {first[docid]} and {i} have the same docid {docid!r}{why}; docids must be "
                "unique within a query: drop the duplicate or give each passage its own docid"
            )
        first[docid] = i


def _load_tokenizer(name: str) -> Any:
    """A Hugging Face tokenizer from a hub id or local path (``tokenizer="Qwen/Qwen2.5-7B-Instruct"``)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise MissingDependencyError("transformers", "hf", "Loading a tokenizer by name") from None
    return AutoTokenizer.from_pretrained(name)


class Reranker:
    """A listwise reasoning reranker over any backend.

    The model reads a window of passages (20 by default) and writes a ranking such as ``[2] > [1] > [3]``, after
    reasoning inside ``<think>`` for the reasoning models; windows slide from the bottom of the list to the top
    as in the official code, so strong passages move up. Use :meth:`from_pretrained` for a known model, or
    build a backend and pass it here.

    Args:
        backend: a :class:`~reasonrank.backends.Backend`, or a registered backend name (``"fake"``, ``"hf"``,
            ``"vllm"``, ``"openai"`` or a plugin's) built with ``backend_options``.
        template: prompt template name (``reasonrank``, ``reasonrank-qwen3``, ``rankgpt``, ``rearank``,
            ``rankgpt-classic``, ``rankgpt-rearank``) or a :class:`~reasonrank.prompts.Template`.
        tokenizer: a Hugging Face tokenizer, or a hub id / path loaded with transformers (default: the
            backend's). It renders the chat template and truncates passages as the official code does; without
            one, prompts use the built-in Qwen2.5 ChatML template and passages are not truncated.
        max_passage_tokens: passage truncation in model tokens. ``None`` means the template's default (512
            tokens for the ReasonRank templates, as in the official BRIGHT runs; the official BEIR/TREC-DL runs
            used 100). Templates that cut by characters or words (RankGPT, REARANK) take none.
        sampling: decoding settings (default: greedy, 4096 new tokens).
        strict: raise :class:`~reasonrank.ParseError` on a malformed answer instead of repairing it.
        keep_prompts: keep each window's prompt string in its :class:`~reasonrank.WindowTrace`.
        progress: show a tqdm progress bar over windows (default for every call; each call can override it).
        schedule: ``"auto"`` (default: streaming where the backend can, :attr:`Backend.can_stream`, lockstep
            otherwise), ``"streaming"`` (every query advances as soon as its own windows are back) or
            ``"lockstep"`` (window round ``k`` of every query in one backend call, the official batch
            composition). Both give the same rankings and traces for deterministic decoding
            (docs/scaling-out.md). Each call may override it.
        **backend_options: options for the backend when ``backend`` is a name.

    Raises:
        InvalidInputError: an unusable option (the message says what to pass instead).
        UnknownNameError: an unknown template or backend name (the message lists the valid ones).

    Examples:
        >>> from reasonrank import Reranker
        >>> from reasonrank.backends import FakeBackend, answer
        >>> backend = FakeBackend(lambda req: answer([1, 0] + list(range(2, len(req.docids)))))
        >>> ranking = Reranker(backend, progress=False).rerank("q", ["first", "second", "third"])
        >>> ranking.docids, len(ranking.windows)
        (['1', '0', '2'], 1)
    """

    def __init__(
        self,
        backend: Backend | str,
        *,
        template: str | Template = "reasonrank",
        tokenizer: Any = None,
        max_passage_tokens: int | None = None,
        sampling: SamplingParams | None = None,
        strict: bool = False,
        keep_prompts: bool = False,
        progress: bool = True,
        schedule: str = "auto",
        **backend_options: Any,
    ) -> None:
        if isinstance(backend, str):
            backend_cls = get_backend_class(backend)
            check_options(backend_cls, backend_options, loading=False)
            backend = backend_cls(**backend_options)
        elif backend_options:
            raise InvalidInputError(
                f"unexpected options {sorted(backend_options)}: backend options only apply when the backend is "
                "given by name"
            )
        if not isinstance(backend, Backend):
            raise InvalidInputError(
                f"backend must be a reasonrank Backend or a registered name, got {type(backend).__name__}"
            )
        self.backend = backend
        self.template = get_template(template)
        _check_passage_limit(self.template, max_passage_tokens)
        if sampling is not None and not isinstance(sampling, SamplingParams):
            raise InvalidInputError(f"sampling must be a SamplingParams, got {type(sampling).__name__}")
        if isinstance(tokenizer, str):
            tokenizer = _load_tokenizer(tokenizer)
        self.tokenizer = tokenizer if tokenizer is not None else backend.tokenizer
        if max_passage_tokens is None and self.template.truncates_by_tokens and self.tokenizer is not None:
            max_passage_tokens = self.template.default_max_passage_tokens
        if max_passage_tokens is not None and self.template.truncates_by_tokens and self.tokenizer is None:
            raise InvalidInputError(
                "max_passage_tokens needs a tokenizer (truncation is by model tokens, as official): pass "
                "tokenizer=... or leave max_passage_tokens=None"
            )
        self.max_passage_tokens = max_passage_tokens
        self.sampling = sampling if sampling is not None else SamplingParams()
        self.strict = strict
        self.keep_prompts = keep_prompts
        self.progress = progress
        self.schedule = check_schedule(schedule)
        #: counts of windows and backend calls over the reranker's lifetime (all calls, all event loops)
        self.stats = SchedulerStats()
        self._dispatchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Dispatcher] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        *,
        backend: str | type[Backend] = "hf",
        template: str | Template | None = None,
        **options: Any,
    ) -> Reranker:
        """Load ``model`` on a backend with the settings of its preset.

        Args:
            model: a hub id, a local directory, or a ``.gguf`` file (``hf`` backend).
            backend: backend name (default ``"hf"``; ``"vllm"``, ``"openai"`` or a plugin's), or a
                :class:`~reasonrank.backends.Backend` subclass with a ``from_pretrained`` classmethod.
            template: prompt template; required for models without a preset.
            **options: reranker options, decoding fields and backend options (see below).

        Returns:
            A :class:`Reranker` on the loaded backend.

        Raises:
            InvalidInputError: no preset and no ``template=``, or a backend that cannot load models by name.
            MissingDependencyError: the backend's extra is not installed (the message names the ``pip install``).

        Known models (``liuwenhan/reasonrank-7B``/``-32B``/``-8B``, ``le723z/Rearank-7B``, or a local directory
        with the same name) get their template, decoding and passage limit from
        :data:`reasonrank.presets.PRESETS`; any other model needs ``template=``. Decoding can be overridden per
        field (``temperature=``, ``max_tokens=``, ...) or with ``sampling=``; reranker options
        (``max_passage_tokens``, ``strict``, ``progress``, ...) are taken out of ``options`` and everything else
        goes to the backend's ``from_pretrained`` (e.g. ``gguf_file=``, ``dtype=``, ``device=``,
        ``batch_size=`` for ``hf``).
        """
        if not isinstance(model, str) or not model:
            raise InvalidInputError("model must be a hub id or a local path")
        preset: ModelPreset | None = find_preset(model)
        if template is None:
            if preset is None:
                raise InvalidInputError(
                    f"no preset for model {model!r}; pass template= (one of {', '.join(available_templates())})"
                )
            template = preset.template
        # Everything below is checked before the (slow) load: names, options, decoding settings.
        reranker_kwargs = {k: options.pop(k) for k in _RERANKER_OPTIONS if k in options}
        _check_passage_limit(get_template(template), reranker_kwargs.get("max_passage_tokens"))
        overrides = {k: options.pop(k) for k in _SAMPLING_FIELDS if k in options}
        sampling = reranker_kwargs.pop("sampling", None) or (preset.sampling if preset else SamplingParams())
        if not isinstance(sampling, SamplingParams):
            raise InvalidInputError(f"sampling must be a SamplingParams, got {type(sampling).__name__}")
        if overrides:
            sampling = replace(sampling, **overrides)
        backend_cls = backend if isinstance(backend, type) else get_backend_class(backend)
        loader = getattr(backend_cls, "from_pretrained", None)
        if loader is None:
            raise InvalidInputError(
                f"backend {backend!r} cannot load models by name; build it and pass it to Reranker()"
            )
        check_options(backend_cls, options, also=_RERANKER_OPTIONS + _SAMPLING_FIELDS)
        loader_parameters = inspect.signature(loader).parameters
        if "progress" in loader_parameters and "progress" not in options:
            # e.g. the HF backend's per-token bars follow the reranker's progress setting
            options["progress"] = reranker_kwargs.get("progress", True)
        if "tokenizer" in reranker_kwargs and "tokenizer" in loader_parameters:
            # The backend loads it (a name or path works) and the reranker then uses the backend's tokenizer.
            options["tokenizer"] = reranker_kwargs.pop("tokenizer")
        loaded = loader(model, **options)
        if (
            preset is not None
            and "max_passage_tokens" not in reranker_kwargs
            and get_template(template).truncates_by_tokens
        ):
            if reranker_kwargs.get("tokenizer") is not None or loaded.tokenizer is not None:
                reranker_kwargs["max_passage_tokens"] = preset.max_passage_tokens
            else:
                warnings.warn(
                    f"{model}: the {backend} backend has no tokenizer, so passages are not truncated to "
                    f"{preset.max_passage_tokens} tokens as the official pipeline does; pass tokenizer=... for "
                    "byte-identical prompts",
                    UserWarning,
                    stacklevel=2,
                )
        return cls(loaded, template=template, sampling=sampling, **reranker_kwargs)

    # ------------------------------------------------------------------ public API

    def rerank(
        self,
        query: str,
        passages: Sequence[PassageLike],
        *,
        window: int = 20,
        step: int = 10,
        top_k: int | None = None,
        qid: str | None = None,
        window_mode: str = "fixed",
        strategy: str | Strategy = "sliding",
        progress: bool | None = None,
        schedule: str | None = None,
    ) -> Ranking:
        """Rerank ``passages`` for ``query``; the first ``top_k`` only if given (the rest keep their order).

        Args:
            query: the search query (a non-empty string).
            passages: the candidates, best first-stage candidate first. Each is a string, a dict with a
                ``text`` (or ``contents``) field and optional ``docid``/``title``/``score``, a
                :class:`~reasonrank.Passage`, or any object with such attributes. Passages without a docid get
                their input position (``"0"``, ``"1"``, ...) as docid.
            window: passages the model sees at once (default 20, the official setting).
            step: how far the window moves between model calls, in passages (default 10: windows overlap by
                ``window - step``); the windows go from the bottom of the list to the top.
            top_k: rerank only the first ``top_k`` passages (default: all).
            qid: the query's id, kept in the result (for TREC runs and evaluation).
            window_mode: ``"fixed"`` (default) always covers every candidate; ``"faithful"`` runs
                RankGPT's/REARANK's sliding-window loop with its quirks (see :func:`reasonrank.window_schedule`).
            strategy: ``"sliding"`` (official, 9 sequential model calls for 100 passages), or ``"tdpart"`` /
                ``"tournament"`` (at most 3 rounds of parallel calls: lower latency, not the setting the models
                were evaluated with); see :mod:`reasonrank.strategies`.
            progress: show a progress bar over windows (default: the reranker's ``progress`` setting).
            schedule: ``"auto"``, ``"streaming"`` or ``"lockstep"`` (see :class:`Reranker`; default: the
                reranker's).

        Returns:
            A :class:`~reasonrank.Ranking`: every input passage exactly once, best first, with each passage's
            original position and score, and one :class:`~reasonrank.WindowTrace` per model call (raw output,
            reasoning, parse repairs, token counts, seconds).

        Raises:
            InvalidInputError: an empty query or passage list, or bad ``window``/``step``/``top_k``.
            PassageTypeError: a passage of a type that has no text.
            WindowFailedError: the backend failed; the error names the windows that did not complete.

        Examples:
            >>> from reasonrank import Reranker
            >>> ranking = Reranker("fake", progress=False).rerank(
            ...     "q", [{"docid": "a", "text": "first"}, {"docid": "b", "text": "second"}], qid="q1"
            ... )
            >>> ranking.docids, ranking.qid
            (['a', 'b'], 'q1')
        """
        return self.rerank_batch(
            [query],
            [passages],
            window=window,
            step=step,
            top_k=top_k,
            qids=None if qid is None else [qid],
            progress=progress,
            window_mode=window_mode,
            strategy=strategy,
            schedule=schedule,
        )[0]

    def rerank_batch(
        self,
        queries: Sequence[str],
        passages_per_query: Sequence[Sequence[PassageLike]],
        *,
        window: int = 20,
        step: int = 10,
        top_k: int | None = None,
        qids: Sequence[str] | None = None,
        progress: bool | None = None,
        window_mode: str = "fixed",
        strategy: str | Strategy = "sliding",
        schedule: str | None = None,
    ) -> list[Ranking]:
        """Rerank many queries; one :class:`Ranking` per query, in input order.

        Every query's state is built up front: for very many queries use :meth:`rerank_stream`. With the
        ``"lockstep"`` schedule, window round ``k`` of every query goes to the backend in one call (queries
        with fewer candidates simply have fewer rounds); with ``"streaming"`` each query advances on its own.
        ``progress`` (default: the reranker's setting) shows a tqdm bar over windows. ``strategy`` and
        ``window_mode``: see :meth:`rerank`; in faithful mode ``top_k`` is the official ``rank_end`` and is not
        clamped to a query's candidate count.

        Args:
            queries: one query string per query (length ``Q``).
            passages_per_query: one list of passages per query (length ``Q``), each as in :meth:`rerank`.
            window: passages per model call (default 20).
            step: window stride in passages (default 10).
            top_k: rerank only the first ``top_k`` passages of each query (default: all).
            qids: one id per query (length ``Q``), kept in the results.
            progress: show a progress bar over windows (default: the reranker's setting).
            window_mode: see :meth:`rerank`.
            strategy: see :meth:`rerank`.
            schedule: see :class:`Reranker` (default: the reranker's).

        Returns:
            ``Q`` :class:`~reasonrank.Ranking` objects, in query order.

        Raises:
            InvalidInputError: mismatched lengths, or any input :meth:`rerank` rejects (the message names the
                query).
            WindowFailedError: the backend failed; the error names the windows that did not complete.
        """
        lockstep = self._lockstep(schedule)
        states = self._start(
            queries, passages_per_query, window, step, top_k, qids, resolve_strategy(strategy, window_mode)
        )
        with self._backend_progress(progress), self._bar(progress, sum(s.plan.expected_windows for s in states)) as bar:
            if lockstep:
                run_lockstep(self._codec(), self.backend, states, bar.update, self.stats)
                rankings = [finish(s) for s in states]
            else:
                codec = self._codec()

                def drive(slots: asyncio.Semaphore) -> AsyncIterator[tuple[QueryState, Ranking]]:
                    return run_queries(
                        codec, self._dispatcher(), states, lockstep=False, max_in_flight=len(states) or 1,
                        on_window=bar.update,
                    )  # fmt: skip

                done = dict(iterate_in_thread(drive, self.backend, slots=len(states) or 1))
                rankings = [done[s] for s in states]
            bar.total = bar.n  # plans may finish early (e.g. tdpart when nothing beats the pivot)
            bar.refresh()
        return rankings

    async def arerank(
        self,
        query: str,
        passages: Sequence[PassageLike],
        *,
        window: int = 20,
        step: int = 10,
        top_k: int | None = None,
        qid: str | None = None,
        window_mode: str = "fixed",
        strategy: str | Strategy = "sliding",
        schedule: str | None = None,
    ) -> Ranking:
        """:meth:`rerank` in the caller's event loop (servers, async RAG frameworks).

        Concurrent calls on one reranker share its backend: their windows are batched together (batch-only
        backends) or share the backend's in-flight pool (streaming backends). Cancelling the awaiting task
        cancels the query's windows: those not yet sent are never sent, those in flight are cancelled where
        the backend allows it. No progress bar.

        Examples:
            >>> import asyncio
            >>> from reasonrank import Reranker
            >>> from reasonrank.backends import FakeBackend
            >>> asyncio.run(Reranker(FakeBackend(), progress=False).arerank("q", ["a", "b"])).docids
            ['0', '1']
        """
        rankings = await self.arerank_batch(
            [query],
            [passages],
            window=window,
            step=step,
            top_k=top_k,
            qids=None if qid is None else [qid],
            progress=False,
            window_mode=window_mode,
            strategy=strategy,
            schedule=schedule,
        )
        return rankings[0]

    async def arerank_batch(
        self,
        queries: Sequence[str],
        passages_per_query: Sequence[Sequence[PassageLike]],
        *,
        window: int = 20,
        step: int = 10,
        top_k: int | None = None,
        qids: Sequence[str] | None = None,
        progress: bool | None = None,
        window_mode: str = "fixed",
        strategy: str | Strategy = "sliding",
        schedule: str | None = None,
    ) -> list[Ranking]:
        """:meth:`rerank_batch` in the caller's event loop; see :meth:`arerank`. Rankings in input order."""
        lockstep = self._lockstep(schedule)
        states = self._start(
            queries, passages_per_query, window, step, top_k, qids, resolve_strategy(strategy, window_mode)
        )
        done: dict[QueryState, Ranking] = {}
        with self._bar(progress, sum(s.plan.expected_windows for s in states)) as bar:
            driver = run_queries(
                self._codec(), self._dispatcher(), states, lockstep=lockstep, max_in_flight=len(states) or 1,
                on_window=bar.update,
            )  # fmt: skip
            try:
                async for state, ranking in driver:
                    done[state] = ranking
            finally:
                await driver.aclose()
            bar.total = bar.n
            bar.refresh()
        return [done[s] for s in states]

    def rerank_stream(
        self,
        items: Iterable[tuple[str | None, str, Sequence[PassageLike]]],
        *,
        window: int = 20,
        step: int = 10,
        top_k: int | None = None,
        window_mode: str = "fixed",
        strategy: str | Strategy = "sliding",
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        progress: bool | None = None,
        schedule: str | None = None,
    ) -> Iterator[Ranking]:
        """Rerank ``(qid, query, passages)`` items from any iterable, yielding each :class:`Ranking` (its
        ``qid`` set) as it completes, in bounded memory.

        At most ``max_in_flight`` queries are read from ``items`` and not yet handed to the caller, so a
        generator over a file of any size works. With the ``"streaming"`` schedule rankings come in the order
        they complete; with ``"lockstep"`` the items go through in chunks of ``max_in_flight`` queries (window
        round ``k`` of a chunk in one backend call), each chunk's rankings in input order. An item that is not
        a valid query raises :class:`InvalidInputError` when it is reached. Closing the iterator early
        cancels the windows not yet back.

        Examples:
            >>> from reasonrank import Reranker
            >>> from reasonrank.backends import FakeBackend
            >>> items = (("q%d" % i, "query", ["a", "b"]) for i in range(3))
            >>> [r.qid for r in Reranker(FakeBackend(), progress=False).rerank_stream(items, max_in_flight=2)]
            ['q0', 'q1', 'q2']
        """
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise InvalidInputError(f"max_in_flight must be an int >= 1, got {max_in_flight!r}")
        if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise InvalidInputError("items must be an iterable of (qid, query, passages) tuples")
        lockstep = self._lockstep(schedule)
        plan_strategy = resolve_strategy(strategy, window_mode)
        check_window_args(window, step)
        return self._stream(items, window, step, top_k, plan_strategy, max_in_flight, progress, lockstep)

    # ------------------------------------------------------------------ internals

    def _stream(
        self,
        items: Iterable[tuple[str | None, str, Sequence[PassageLike]]],
        window: int,
        step: int,
        top_k: int | None,
        strategy: Strategy,
        max_in_flight: int,
        progress: bool | None,
        lockstep: bool,
    ) -> Iterator[Ranking]:
        # A bad item (or a failing source) stops the reading, not the queries already started: their rankings are
        # still yielded, then the error is raised.
        failure: list[Exception] = []

        def read() -> Iterator[QueryState]:
            try:
                for k, item in enumerate(items):
                    yield self._item_state(k, item, window, step, top_k, strategy)
            except Exception as e:
                failure.append(e)

        states = read()
        with self._backend_progress(progress), self._bar(progress, 0) as bar:

            def on_start(state: QueryState) -> None:
                bar.total += state.plan.expected_windows

            if lockstep:
                codec, chunk = self._codec(), []
                for state in states:
                    on_start(state)
                    chunk.append(state)
                    if len(chunk) == max_in_flight:
                        run_lockstep(codec, self.backend, chunk, bar.update, self.stats)
                        yield from map(finish, chunk)
                        chunk = []
                run_lockstep(codec, self.backend, chunk, bar.update, self.stats)
                yield from map(finish, chunk)
            else:
                codec = self._codec()

                def drive(slots: asyncio.Semaphore) -> AsyncIterator[tuple[QueryState, Ranking]]:
                    return run_queries(
                        codec, self._dispatcher(), states, lockstep=False, max_in_flight=max_in_flight,
                        on_window=bar.update, on_start=on_start, slots=slots,
                    )  # fmt: skip

                for _, ranking in iterate_in_thread(drive, self.backend, slots=max_in_flight):
                    yield ranking
            bar.total = bar.n
            bar.refresh()
        if failure:
            raise failure[0]

    def _item_state(
        self, k: int, item: Any, window: int, step: int, top_k: int | None, strategy: Strategy
    ) -> QueryState:
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            got = f"a {len(item)}-tuple" if isinstance(item, (tuple, list)) else f"a {type(item).__name__}"
            raise InvalidInputError(f"item {k}: expected a (qid, query, passages) tuple, got {got}")
        qid, query, passages = item
        qids = None if qid is None else [qid]
        label = f"query {k}" + (f" (qid {qid})" if qid is not None else "")
        try:
            state = self._start([query], [passages], window, step, top_k, qids, strategy)[0]
        except (InvalidInputError, PassageTypeError) as e:  # name the item by its place in the stream
            first = "query 0" + (f" (qid {qid})" if qid is not None else "")
            message = str(e)
            if type(e) not in (InvalidInputError, PassageTypeError) or not message.startswith(first):
                raise
            raise type(e)(label + message[len(first) :]) from None
        state.label = label
        return state

    def _lockstep(self, schedule: str | None) -> bool:
        chosen = check_schedule(self.schedule if schedule is None else schedule)
        return chosen == "lockstep" or (chosen == "auto" and not self.backend.can_stream)

    def _codec(self) -> WindowCodec:
        return WindowCodec(
            self.template, self.tokenizer, self.max_passage_tokens, self.sampling, self.strict, self.keep_prompts
        )

    def _dispatcher(self) -> Dispatcher:
        """The dispatcher of the running event loop: every call of this reranker in the loop shares it."""
        loop = asyncio.get_running_loop()
        dispatcher = self._dispatchers.get(loop)
        if dispatcher is None or dispatcher.backend is not self.backend:
            dispatcher = self._dispatchers[loop] = Dispatcher(self.backend, self.stats)
        return dispatcher

    @contextlib.contextmanager
    def _backend_progress(self, progress: bool | None) -> Iterator[None]:
        """For one call, a backend's own bars (e.g. the HF backend's per-token bar) follow ``progress``."""
        backend_progress = getattr(self.backend, "progress", None)
        if not isinstance(backend_progress, bool):
            yield
            return
        show = self.progress if progress is None else progress
        self.backend.progress = backend_progress and show  # type: ignore[attr-defined]
        try:
            yield
        finally:
            self.backend.progress = backend_progress  # type: ignore[attr-defined]

    def _bar(self, progress: bool | None, total: int) -> Any:
        from tqdm.auto import tqdm

        show = self.progress if progress is None else progress
        return tqdm(total=total, desc="windows", unit="win", disable=not show)

    def _start(
        self,
        queries: Sequence[str],
        passages_per_query: Sequence[Sequence[PassageLike]],
        window: int,
        step: int,
        top_k: int | None,
        qids: Sequence[str] | None,
        strategy: Strategy,
    ) -> list[QueryState]:
        check_window_args(window, step)
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise InvalidInputError(f"top_k must be an int >= 1 (or None for all passages), got {top_k!r}")
        if isinstance(queries, str) or not isinstance(queries, Sequence):
            raise InvalidInputError("queries must be a list of query strings; use rerank() for a single query")
        if isinstance(passages_per_query, (str, bytes)) or not isinstance(passages_per_query, Sequence):
            raise InvalidInputError("passages_per_query must be a list with one list of passages per query")
        if len(queries) != len(passages_per_query):
            raise InvalidInputError(
                f"got {len(queries)} queries but {len(passages_per_query)} passage lists; give one list per query"
            )
        qids = _check_qids(qids, len(queries))
        states = []
        for i, query in enumerate(queries):
            qid = None if qids is None else qids[i]
            label = f"query {i}" + (f" (qid {qid})" if qid is not None else "")
            if not isinstance(query, str):
                raise InvalidInputError(f"{label}: query must be a str, got {type(query).__name__}")
            if not query.strip():
                raise InvalidInputError(f"{label}: query is empty; pass the search query text")
            try:
                passages = as_passages(passages_per_query[i])
            except (InvalidInputError, PassageTypeError) as e:
                raise type(e)(f"{label}: {e}") from None
            if not passages:
                raise InvalidInputError(f"{label}: no passages to rerank; pass at least one passage")
            _check_unique_docids(label, passages)
            states.append(
                QueryState(
                    qid, label, query, passages, strategy.plan(len(passages), window=window, step=step, top_k=top_k)
                )
            )
        return states

    def __repr__(self) -> str:
        return f"Reranker(backend={self.backend!r}, template={self.template.name!r})"
