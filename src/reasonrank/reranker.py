"""The reranker: windows in rounds (official sliding windows by default), round k of every query in one call."""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ._errors import BackendError, InvalidInputError, MissingDependencyError, PassageTypeError, WindowFailedError
from ._types import Passage, PassageLike, RankedPassage, Ranking, SamplingParams, WindowTrace, as_passages
from .backends import Backend, GenerationRequest, get_backend_class
from .backends._base import timed_stream
from .parsing import parse_ranking
from .presets import ModelPreset, find_preset
from .prompts import Template, available_templates, get_template
from .strategies import Plan, Strategy, Window, resolve_strategy
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
_RERANKER_OPTIONS = ("tokenizer", "max_passage_tokens", "sampling", "strict", "keep_prompts", "progress")


@dataclass
class _QueryState:
    """One query in flight: the current order (input indices by position) and its strategy's plan."""

    qid: str | None
    label: str
    query: str
    passages: list[Passage]
    plan: Plan
    order: list[int] = field(default_factory=list)
    contents: list[str | None] = field(default_factory=list)
    traces: list[WindowTrace] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)  # the current round's windows

    def __post_init__(self) -> None:
        self.order = list(range(len(self.passages)))
        self.contents = [None] * len(self.passages)


@dataclass
class _Job:
    """One window of one query in the current round, and its parsed result once it is back."""

    state: _QueryState
    window: Window
    number: int  # the window's number within its query
    request: GenerationRequest
    trace: WindowTrace | None = None
    ranked: tuple[int, ...] = ()


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
        **backend_options: Any,
    ) -> None:
        if isinstance(backend, str):
            backend = get_backend_class(backend)(**backend_options)
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
        if isinstance(tokenizer, str):
            tokenizer = _load_tokenizer(tokenizer)
        self.tokenizer = tokenizer if tokenizer is not None else backend.tokenizer
        if max_passage_tokens is not None and (
            isinstance(max_passage_tokens, bool) or not isinstance(max_passage_tokens, int) or max_passage_tokens < 1
        ):
            raise InvalidInputError(f"max_passage_tokens must be an int >= 1 or None, got {max_passage_tokens!r}")
        if max_passage_tokens is None and self.template.truncates_by_tokens and self.tokenizer is not None:
            max_passage_tokens = self.template.default_max_passage_tokens
        if max_passage_tokens is not None and self.template.truncates_by_tokens and self.tokenizer is None:
            raise InvalidInputError(
                "max_passage_tokens needs a tokenizer (truncation is by model tokens, as official): pass "
                "tokenizer=... or leave max_passage_tokens=None"
            )
        if max_passage_tokens is not None and not self.template.truncates_by_tokens:
            raise InvalidInputError(
                f"the {self.template.name!r} template cuts passages by characters or words itself (as its "
                "official code does), so max_passage_tokens does not apply: leave it None"
            )
        self.max_passage_tokens = max_passage_tokens
        self.sampling = sampling if sampling is not None else SamplingParams()
        self.strict = strict
        self.keep_prompts = keep_prompts
        self.progress = progress

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
        reranker_kwargs = {k: options.pop(k) for k in _RERANKER_OPTIONS if k in options}
        overrides = {k: options.pop(k) for k in _SAMPLING_FIELDS if k in options}
        sampling = reranker_kwargs.pop("sampling", None) or (preset.sampling if preset else SamplingParams())
        if overrides:
            sampling = replace(sampling, **overrides)
        backend_cls = backend if isinstance(backend, type) else get_backend_class(backend)
        loader = getattr(backend_cls, "from_pretrained", None)
        if loader is None:
            raise InvalidInputError(
                f"backend {backend!r} cannot load models by name; build it and pass it to Reranker()"
            )
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
    ) -> list[Ranking]:
        """Rerank many queries, sending the windows of round ``k`` of every query to the backend in one call.

        Queries with fewer candidates simply have fewer rounds. ``progress`` (default: the reranker's
        setting) shows a tqdm bar over windows. ``strategy`` and ``window_mode``: see :meth:`rerank`; in
        faithful mode ``top_k`` is the official ``rank_end`` and is not clamped to a query's candidate count.

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

        Returns:
            ``Q`` :class:`~reasonrank.Ranking` objects, in query order.

        Raises:
            InvalidInputError: mismatched lengths, or any input :meth:`rerank` rejects (the message names the
                query).
            WindowFailedError: the backend failed; the error names the windows that did not complete.
        """
        plan_strategy = resolve_strategy(strategy, window_mode)
        states = self._start(queries, passages_per_query, window, step, top_k, qids, plan_strategy)
        show = self.progress if progress is None else progress
        backend_progress = getattr(self.backend, "progress", None)  # e.g. the HF backend's per-token bars
        if isinstance(backend_progress, bool):
            self.backend.progress = backend_progress and show  # type: ignore[attr-defined]
        try:
            return self._rerank_states(states, show)
        finally:
            if isinstance(backend_progress, bool):
                self.backend.progress = backend_progress  # type: ignore[attr-defined]

    def _rerank_states(self, states: list[_QueryState], show: bool) -> list[Ranking]:
        from tqdm.auto import tqdm

        with tqdm(
            total=sum(s.plan.expected_windows for s in states), desc="windows", unit="win", disable=not show
        ) as bar:
            round_index = 0
            while True:
                jobs = self._next_jobs(states, round_index)
                if not jobs:
                    break
                self._run_round(round_index, jobs, bar.update)
                round_index += 1
            bar.total = bar.n  # plans may finish early (e.g. tdpart when nothing beats the pivot)
            bar.refresh()
        return [self._finish(s) for s in states]

    # ------------------------------------------------------------------ internals

    def _start(
        self,
        queries: Sequence[str],
        passages_per_query: Sequence[Sequence[PassageLike]],
        window: int,
        step: int,
        top_k: int | None,
        qids: Sequence[str] | None,
        strategy: Strategy,
    ) -> list[_QueryState]:
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
        if qids is not None and len(qids) != len(queries):
            raise InvalidInputError(f"got {len(qids)} qids for {len(queries)} queries")
        states = []
        for i, query in enumerate(queries):
            qid = None if qids is None else str(qids[i])
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
            states.append(
                _QueryState(
                    qid, label, query, passages, strategy.plan(len(passages), window=window, step=step, top_k=top_k)
                )
            )
        return states

    def _content(self, state: _QueryState, index: int) -> str:
        # A passage's prompt text does not depend on its window: compute it once (fix_text and tokenizing
        # are the expensive parts of building a prompt).
        content = state.contents[index]
        if content is None:
            content = self.template.passage_content(
                state.passages[index], tokenizer=self.tokenizer, max_passage_tokens=self.max_passage_tokens
            )
            state.contents[index] = content
        return content

    def _next_jobs(self, states: list[_QueryState], round_index: int) -> list[_Job]:
        jobs: list[_Job] = []
        for state in states:
            state.windows = state.plan.next_round(state.order)
            for number, window in enumerate(state.windows, start=len(state.traces)):
                if len(window) < 2:  # a window of one passage cannot change the order: no model call for it
                    raise AssertionError(f"{state.label}: strategy produced a window of {len(window)} passage(s)")
                jobs.append(_Job(state, window, number, self._request(state, window, number)))
        return jobs

    def _request(self, state: _QueryState, window: Window, number: int) -> GenerationRequest:
        indices = [state.order[p] for p in window.positions]
        contents = tuple(self._content(state, i) for i in indices)
        messages = self.template.messages_from_contents(state.query, contents)
        return GenerationRequest(
            prompt=self.template.render_messages(messages, self.tokenizer),
            messages=tuple(messages),
            sampling=self.template.sampling_for_window(len(indices), self.sampling, self.tokenizer),
            query=state.query,
            docids=tuple(self._docid(state, i) for i in indices),
            contents=contents,
            key=f"{state.label} window {number} [{window.start}, {window.end})",
        )

    @staticmethod
    def _docid(state: _QueryState, index: int) -> str:
        docid = state.passages[index].docid
        return docid if docid is not None else str(index)

    def _run_round(self, round_index: int, jobs: list[_Job], on_window: Callable[[int], Any] | None = None) -> None:
        results = timed_stream(self.backend, [job.request for job in jobs])
        done = [False] * len(jobs)
        while True:
            try:
                i, generation, seconds = next(results)
            except StopIteration:
                break
            except Exception as e:  # the backend failed: say which windows are lost, keep the cause
                failed = [
                    (j.state.qid or j.state.label, (j.window.start, j.window.end))
                    for j, ok in zip(jobs, done)
                    if not ok
                ]
                names = ", ".join(f"{q} {list(w)}" for q, w in failed[:5]) + (" ..." if len(failed) > 5 else "")
                first = jobs[done.index(False)] if not all(done) else jobs[0]
                raise WindowFailedError(
                    f"backend {type(self.backend).__name__} failed in window round {round_index} "
                    f"({len(failed)} of {len(jobs)} windows not completed: {names}): {type(e).__name__}: {e}",
                    failed=failed,
                    completed=sum(done),
                    query=first.state.query,
                    qid=first.state.qid,
                    window=(first.window.start, first.window.end),
                ) from e
            if not 0 <= i < len(jobs) or done[i]:
                raise BackendError(f"backend {self.backend!r} returned result index {i} twice or out of range")
            done[i] = True
            self._read(jobs[i], round_index, generation, seconds)
            if on_window is not None:  # progress moves per window as results stream in
                on_window(1)
        if not all(done):
            missing = [j.request.key for j, ok in zip(jobs, done) if not ok]
            raise BackendError(
                f"backend {type(self.backend).__name__} returned no result for {len(missing)} window(s) "
                f"of round {round_index}: {', '.join(missing[:5])}",
                query=jobs[done.index(False)].state.query,
                window=round_index,
            )
        # Every window of the round is back: each query's plan turns its windows' rankings into a new order.
        by_state: dict[int, list[_Job]] = {}
        for job in jobs:
            by_state.setdefault(id(job.state), []).append(job)
        for state_jobs in by_state.values():
            state = state_jobs[0].state
            new_order = state.plan.update(state.order, state.windows, [j.ranked for j in state_jobs])
            if sorted(new_order) != sorted(state.order):
                raise AssertionError(f"{state.label}: strategy {state.plan!r} lost or duplicated passages")
            state.order = new_order
            state.traces.extend(j.trace for j in state_jobs if j.trace is not None)

    def _read(self, job: _Job, round_index: int, generation: Any, seconds: float) -> None:
        request, window = job.request, job.window
        if not isinstance(getattr(generation, "text", None), str):
            raise BackendError(f"backend returned {generation!r} for {request.key}; expected a Generation")
        parsed = parse_ranking(generation.text, len(window), style=self.template.parser_style, strict=self.strict)
        job.ranked = tuple(window.positions[j] for j in parsed.order)
        if parsed.repairs:
            logger.debug("%s: repaired %s", request.key, [r.kind for r in parsed.repairs])
        job.trace = WindowTrace(
            round=round_index,
            start=window.start,
            end=window.end,
            docids=request.docids,
            output=generation.text,
            order=parsed.order,
            reasoning=parsed.reasoning,
            answer=parsed.answer,
            repairs=parsed.repairs,
            prompt_tokens=generation.prompt_tokens,
            output_tokens=generation.output_tokens,
            finish_reason=generation.finish_reason,
            seconds=seconds,
            prompt=request.prompt if self.keep_prompts else None,
        )

    @staticmethod
    def _finish(state: _QueryState) -> Ranking:
        if sorted(state.order) != list(range(len(state.passages))):  # cannot happen: parse_ranking permutes
            raise AssertionError(f"{state.label}: order is not a permutation")
        passages = [RankedPassage.from_passage(state.passages[i], i) for i in state.order]
        return Ranking(query=state.query, passages=passages, windows=state.traces, qid=state.qid)

    def __repr__(self) -> str:
        return f"Reranker(backend={self.backend!r}, template={self.template.name!r})"
