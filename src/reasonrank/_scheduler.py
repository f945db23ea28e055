"""Window scheduling: which windows go to the backend when, and how their answers become rankings.

Two schedules run the same windows and give the same rankings and traces (for deterministic decoding):

- ``"lockstep"`` (the official pipeline's): window round ``k`` of every query goes to the backend in one call,
  and round ``k + 1`` waits until every window of round ``k`` is back.
- ``"streaming"``: every query advances as soon as its own windows are back; its next windows are sent the
  moment its strategy can say what they are (sliding: after the previous window; tdpart/tournament: after the
  query's round). Backends that take requests one at a time (:attr:`Backend.can_stream`) get each window at
  once; batch-only backends get every window that is ready whenever their previous call returns (one worker
  thread).

The :class:`Dispatcher` is the one place windows leave for the backend from an event loop: every call of one
reranker in that loop (concurrent ``arerank`` calls of a server included) shares it, so their windows are
batched together or share the backend's in-flight pool, and its :class:`SchedulerStats` count them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ._errors import BackendError, WindowFailedError
from ._types import Passage, RankedPassage, Ranking, SamplingParams, WindowTrace
from .backends import Backend, Generation, GenerationRequest
from .backends._base import timed_stream
from .parsing import parse_ranking
from .prompts import Template
from .strategies import Plan, Window

__all__ = ["SCHEDULES", "Dispatcher", "SchedulerStats", "WindowCodec", "check_schedule"]

logger = logging.getLogger(__name__)

SCHEDULES = ("auto", "streaming", "lockstep")


def check_schedule(schedule: str) -> str:
    from ._errors import InvalidInputError

    if schedule not in SCHEDULES:
        raise InvalidInputError(
            f"schedule must be 'streaming' (each query advances on its own), 'lockstep' (official window "
            f"rounds) or 'auto' (streaming where the backend can stream), got {schedule!r}"
        )
    return schedule


@dataclass
class SchedulerStats:
    """Counts over a reranker's lifetime, for servers and benchmarks.

    ``backend_calls`` counts ``generate``/``stream`` batches of batch-only backends and single requests of
    streaming ones; ``windows_sent`` the windows they carried; ``peak_in_flight`` the most windows sent and
    not yet back at one time.
    """

    backend_calls: int = 0
    windows_sent: int = 0
    windows_completed: int = 0
    windows_failed: int = 0
    windows_cancelled: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0

    @property
    def windows_per_call(self) -> float:
        return self.windows_sent / self.backend_calls if self.backend_calls else 0.0


@dataclass(eq=False)
class QueryState:
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
    round: int = 0
    jobs: list[Job] = field(default_factory=list)  # the current round's jobs
    outstanding: int = 0  # jobs of the current round not back yet

    def __post_init__(self) -> None:
        self.order = list(range(len(self.passages)))
        self.contents = [None] * len(self.passages)


@dataclass(eq=False)
class Job:
    """One window of one query, and its parsed result once it is back."""

    state: QueryState
    window: Window
    number: int  # the window's number within its query
    request: GenerationRequest
    trace: WindowTrace | None = None
    ranked: tuple[int, ...] = ()
    done: bool = False

    def name(self) -> tuple[str, tuple[int, int]]:
        return (self.state.qid or self.state.label, (self.window.start, self.window.end))


class WindowCodec:
    """Turns a query's windows into requests and the backend's answers into rankings (the reranker's settings)."""

    def __init__(
        self,
        template: Template,
        tokenizer: Any,
        max_passage_tokens: int | None,
        sampling: SamplingParams,
        strict: bool,
        keep_prompts: bool,
    ) -> None:
        self.template = template
        self.tokenizer = tokenizer
        self.max_passage_tokens = max_passage_tokens
        self.sampling = sampling
        self.strict = strict
        self.keep_prompts = keep_prompts

    def next_jobs(self, state: QueryState) -> list[Job]:
        """The query's next round of windows as jobs (``[]`` when the query is done)."""
        state.windows = state.plan.next_round(state.order)
        jobs = []
        for number, window in enumerate(state.windows, start=len(state.traces)):
            if len(window) < 2:  # a window of one passage cannot change the order: no model call for it
                raise AssertionError(f"{state.label}: strategy produced a window of {len(window)} passage(s)")
            jobs.append(Job(state, window, number, self.request(state, window, number)))
        state.jobs, state.outstanding = jobs, len(jobs)
        return jobs

    def _content(self, state: QueryState, index: int) -> str:
        # A passage's prompt text does not depend on its window: compute it once (fix_text and tokenizing
        # are the expensive parts of building a prompt).
        content = state.contents[index]
        if content is None:
            content = self.template.passage_content(
                state.passages[index], tokenizer=self.tokenizer, max_passage_tokens=self.max_passage_tokens
            )
            state.contents[index] = content
        return content

    def request(self, state: QueryState, window: Window, number: int) -> GenerationRequest:
        indices = [state.order[p] for p in window.positions]
        contents = tuple(self._content(state, i) for i in indices)
        messages = self.template.messages_from_contents(state.query, contents)
        return GenerationRequest(
            prompt=self.template.render_messages(messages, self.tokenizer),
            messages=tuple(messages),
            sampling=self.template.sampling_for_window(len(indices), self.sampling, self.tokenizer),
            query=state.query,
            docids=tuple(_docid(state, i) for i in indices),
            contents=contents,
            key=f"{state.label} window {number} [{window.start}, {window.end})",
        )

    def read(self, job: Job, generation: Any, seconds: float) -> None:
        """Parse one window's answer into ``job.ranked`` and ``job.trace``."""
        request, window = job.request, job.window
        if not isinstance(getattr(generation, "text", None), str):
            raise BackendError(f"backend returned {generation!r} for {request.key}; expected a Generation")
        parsed = parse_ranking(generation.text, len(window), style=self.template.parser_style, strict=self.strict)
        job.ranked = tuple(window.positions[j] for j in parsed.order)
        if parsed.repairs:
            logger.debug("%s: repaired %s", request.key, [r.kind for r in parsed.repairs])
        job.trace = WindowTrace(
            round=job.state.round,
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
        job.done = True


def _docid(state: QueryState, index: int) -> str:
    docid = state.passages[index].docid
    return docid if docid is not None else str(index)


def advance(state: QueryState) -> None:
    """Every window of the query's round is back: its plan turns their rankings into the new order."""
    jobs = state.jobs
    new_order = state.plan.update(state.order, state.windows, [j.ranked for j in jobs])
    if sorted(new_order) != sorted(state.order):
        raise AssertionError(f"{state.label}: strategy {state.plan!r} lost or duplicated passages")
    state.order = new_order
    state.traces.extend(j.trace for j in jobs if j.trace is not None)
    state.round += 1
    state.jobs, state.windows = [], []


def finish(state: QueryState) -> Ranking:
    if sorted(state.order) != list(range(len(state.passages))):  # cannot happen: parse_ranking permutes
        raise AssertionError(f"{state.label}: order is not a permutation")
    passages = [RankedPassage.from_passage(state.passages[i], i) for i in state.order]
    return Ranking(query=state.query, passages=passages, windows=state.traces, qid=state.qid)


def _failure(
    backend: Backend, where: str, lost: Sequence[Job], total: int, completed: int, exc: BaseException, first: Job
) -> WindowFailedError:
    failed = [j.name() for j in lost]
    names = ", ".join(f"{q} {list(w)}" for q, w in failed[:5]) + (" ..." if len(failed) > 5 else "")
    return WindowFailedError(
        f"backend {type(backend).__name__} failed in {where} ({len(failed)} of {total} windows not completed: "
        f"{names}): {type(exc).__name__}: {exc}",
        failed=failed,
        completed=completed,
        query=first.state.query,
        qid=first.state.qid,
        window=(first.window.start, first.window.end),
    )


# ---------------------------------------------------------------------------------------------- lockstep, sync


def run_lockstep(
    codec: WindowCodec,
    backend: Backend,
    states: Sequence[QueryState],
    on_window: Callable[[int], Any] | None,
    stats: SchedulerStats | None = None,
) -> None:
    """The official schedule without threads or event loops: round ``k`` of every query in one backend call."""
    round_index = 0
    while True:
        jobs = [job for state in states for job in codec.next_jobs(state)]
        if not jobs:
            return
        if stats is not None:
            stats.backend_calls += 1
            stats.windows_sent += len(jobs)
        _run_round(codec, backend, round_index, jobs, on_window)
        if stats is not None:
            stats.windows_completed += len(jobs)
        for state in states:
            if state.jobs:
                advance(state)
        round_index += 1


def _run_round(
    codec: WindowCodec, backend: Backend, round_index: int, jobs: list[Job], on_window: Callable[[int], Any] | None
) -> None:
    results = timed_stream(backend, [job.request for job in jobs])
    while True:
        try:
            i, generation, seconds = next(results)
        except StopIteration:
            break
        except Exception as e:  # the backend failed: say which windows are lost, keep the cause
            lost = [j for j in jobs if not j.done]
            first = lost[0] if lost else jobs[0]
            where = f"window round {round_index}"
            raise _failure(backend, where, lost, len(jobs), len(jobs) - len(lost), e, first) from e
        if not 0 <= i < len(jobs) or jobs[i].done:
            raise BackendError(f"backend {backend!r} returned result index {i} twice or out of range")
        codec.read(jobs[i], generation, seconds)
        if on_window is not None:  # progress moves per window as results stream in
            on_window(1)
    missing = [j for j in jobs if not j.done]
    if missing:
        raise BackendError(
            f"backend {type(backend).__name__} returned no result for {len(missing)} window(s) "
            f"of round {round_index}: {', '.join(j.request.key for j in missing[:5])}",
            query=missing[0].state.query,
            window=round_index,
        )


# ---------------------------------------------------------------------------------------------- dispatcher

_Result = tuple[Generation, float]
_T = TypeVar("_T")


class Dispatcher:
    """Sends windows to one backend from one event loop, for every call of a reranker in that loop.

    Streaming backends get each request as its own ``agenerate`` task (the backend bounds its concurrency);
    batch-only backends get every pending request in one ``stream()`` call in a worker thread, one call at a
    time, so windows submitted together by concurrent callers share a batch.
    """

    def __init__(self, backend: Backend, stats: SchedulerStats) -> None:
        self.backend = backend
        self.stats = stats
        self.native = backend.can_stream
        self.loop = asyncio.get_running_loop()
        self._pending: list[tuple[GenerationRequest, asyncio.Future[_Result]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._unsent: set[asyncio.Future[_Result]] = set()

    def unsent(self, future: asyncio.Future[Any]) -> bool:
        """Whether ``future``'s request is still waiting for the next batch (cancelling it drops it)."""
        return future in self._unsent

    def submit(self, request: GenerationRequest) -> asyncio.Future[_Result]:
        """A future for ``request``'s ``(generation, seconds)``; cancelling it before it is sent drops it."""
        if self.native:
            self.stats.backend_calls += 1
            self.stats.windows_sent += 1
            return self.loop.create_task(self._one(request))
        future: asyncio.Future[_Result] = self.loop.create_future()
        self._pending.append((request, future))
        self._unsent.add(future)
        if self._flushing is None:
            self._flushing = self.loop.create_task(self._flush())
        return future

    async def _one(self, request: GenerationRequest) -> _Result:
        started = time.perf_counter()
        generation = await self.backend.agenerate(request)
        own = getattr(generation, "seconds", None)
        return generation, own if own is not None else time.perf_counter() - started

    async def _flush(self) -> None:
        try:
            while self._pending:
                # Let every caller woken by the last results queue its next windows before the batch goes out.
                for _ in range(8):
                    size = len(self._pending)
                    await asyncio.sleep(0)
                    if len(self._pending) == size:
                        break
                batch = [(r, f) for r, f in self._pending if not f.done()]
                self._pending = []
                self._unsent.clear()
                if not batch:
                    continue
                self.stats.backend_calls += 1
                self.stats.windows_sent += len(batch)
                await self.loop.run_in_executor(None, self._run_batch, batch)
        finally:
            self._flushing = None
            for _, future in self._pending:  # only when the loop is going away
                future.cancel()

    def _run_batch(self, batch: list[tuple[GenerationRequest, asyncio.Future[_Result]]]) -> None:
        """In the worker thread: one ``stream()`` call, each result handed to the loop as it arrives."""
        delivered = [False] * len(batch)
        try:
            for i, generation, seconds in timed_stream(self.backend, [r for r, _ in batch]):
                if not 0 <= i < len(batch) or delivered[i]:
                    raise BackendError(f"backend {self.backend!r} returned result index {i} twice or out of range")
                delivered[i] = True
                self.loop.call_soon_threadsafe(_resolve, batch[i][1], (generation, seconds), None)
            if not all(delivered):
                missing = [r.key for (r, _), ok in zip(batch, delivered) if not ok]
                raise BackendError(
                    f"backend {type(self.backend).__name__} returned no result for {len(missing)} window(s): "
                    + ", ".join(missing[:5])
                )
        except BaseException as e:
            for (_, future), ok in zip(batch, delivered):
                if not ok:
                    self.loop.call_soon_threadsafe(_resolve, future, None, e)


def _resolve(future: asyncio.Future[_Result], result: _Result | None, error: BaseException | None) -> None:
    if future.done():  # cancelled by its caller meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- async driver


async def run_queries(
    codec: WindowCodec,
    dispatcher: Dispatcher,
    states: Iterable[QueryState] | Iterator[QueryState],
    *,
    lockstep: bool,
    max_in_flight: int,
    on_window: Callable[[int], Any] | None = None,
    on_start: Callable[[QueryState], Any] | None = None,
    slots: asyncio.Semaphore | None = None,
) -> AsyncGenerator[tuple[QueryState, Ranking], None]:
    """Run queries' windows through ``dispatcher``; yield each query and its ranking as it completes.

    At most ``max_in_flight`` queries are started and not yet yielded (``slots``, when given, is acquired per
    query started and released by the consumer instead). ``lockstep`` holds every query's next round until
    all started queries finished their current one. The first failure stops new windows; windows in flight
    finish, then :class:`WindowFailedError` names every window that failed or was not sent. Cancelling the
    consumer cancels every window not yet back.
    """
    source = iter(states)
    exhausted = False
    active: list[QueryState] = []
    waiting: list[QueryState] = []  # lockstep: queries whose round is back, held for the others
    futures: dict[asyncio.Future[_Result], Job] = {}
    failed: list[Job] = []
    first_error: BaseException | None = None
    completed = 0
    stats = dispatcher.stats

    # Completed windows arrive through a queue: one callback per window, O(1) per completion (asyncio.wait over
    # every future in flight is O(in flight) per call, quadratic over a run of hundreds of queries).
    arrived: asyncio.Queue[asyncio.Future[_Result]] = asyncio.Queue()

    def send(state: QueryState) -> bool:
        jobs = codec.next_jobs(state)
        for job in jobs:
            future = dispatcher.submit(job.request)
            futures[future] = job
            future.add_done_callback(arrived.put_nowait)
        stats.in_flight += len(jobs)
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        return bool(jobs)

    ready: list[tuple[QueryState, Ranking]] = []

    def start_or_finish(state: QueryState) -> None:
        if not send(state):
            active.remove(state)
            ready.append((state, finish(state)))

    try:
        while True:
            while ready:
                yield ready.pop(0)
            # Start new queries while there is room.
            while not exhausted and first_error is None and (slots is not None or len(active) < max_in_flight):
                if slots is not None:
                    if active and slots.locked():
                        break
                    await slots.acquire()
                try:
                    state = next(source)
                except StopIteration:
                    exhausted = True
                    if slots is not None:
                        slots.release()
                    break
                if on_start is not None:
                    on_start(state)
                active.append(state)
                if lockstep:
                    waiting.append(state)  # starts with the others at the next round barrier
                else:
                    start_or_finish(state)
            if lockstep and waiting and len(waiting) == len(active) and first_error is None:
                held, waiting[:] = list(waiting), []
                for state in held:
                    start_or_finish(state)
                continue
            if not futures:
                if first_error is not None:
                    break
                if ready:
                    continue
                if exhausted and not active:
                    return
                raise AssertionError("scheduler stalled with queries in flight and no windows out")
            done = [await arrived.get()]
            while not arrived.empty():
                done.append(arrived.get_nowait())
            for future in done:
                job = futures.pop(future, None)
                if job is None:  # already handled
                    continue
                stats.in_flight -= 1
                if future.cancelled():  # not sent after a failure
                    stats.windows_cancelled += 1
                    failed.append(job)
                    continue
                try:
                    generation, seconds = future.result()
                except Exception as e:
                    stats.windows_failed += 1
                    failed.append(job)
                    if first_error is None:
                        first_error = e
                    continue
                codec.read(job, generation, seconds)  # a strict parse error propagates as it is
                stats.windows_completed += 1
                completed += 1
                if on_window is not None:
                    on_window(1)
                state = job.state
                state.outstanding -= 1
                if state.outstanding or first_error is not None:
                    continue
                advance(state)
                if lockstep:
                    waiting.append(state)
                else:
                    start_or_finish(state)
            if first_error is not None:
                # Send nothing more; windows already sent finish (a cache keeps them for a rerun).
                for future in futures:
                    if dispatcher.unsent(future):
                        future.cancel()
    finally:
        for future, job in futures.items():
            if future.cancel():
                stats.windows_cancelled += 1
            failed.append(job)
        stats.in_flight -= len(futures)
        futures.clear()
    if first_error is not None:
        first = failed[0]
        where = f"{first.state.label}'s window round {first.state.round}"
        total = completed + len(failed)
        raise _failure(dispatcher.backend, where, failed, total, completed, first_error, first) from first_error


# ---------------------------------------------------------------------------------------------- sync bridge


def iterate_in_thread(
    rankings: Callable[[asyncio.Semaphore], AsyncIterator[_T]], backend: Backend, *, slots: int
) -> Iterator[_T]:
    """Run the async driver in one helper thread with its own event loop; yield its rankings here.

    The sync API works this way inside a running event loop too (a notebook): no nested loop. ``slots``
    bounds the queries started and not yet taken by the caller; each is released when the caller asks for
    the next ranking. Closing the iterator early cancels every window not yet back.
    """
    results: queue.Queue[tuple[str, Any]] = queue.Queue()
    started = threading.Event()
    handles: dict[str, Any] = {}

    async def consume() -> None:
        handles["loop"], handles["task"] = asyncio.get_running_loop(), asyncio.current_task()
        handles["slots"] = semaphore = asyncio.Semaphore(slots)
        started.set()
        try:
            async for ranking in rankings(semaphore):
                results.put(("ranking", ranking))
        finally:
            await backend.aclose()

    def main() -> None:
        try:
            asyncio.run(consume())
        except BaseException as e:  # never leave the caller waiting
            results.put(("error", e))
        else:
            results.put(("end", None))
        finally:
            started.set()

    thread = threading.Thread(target=main, name="reasonrank-scheduler", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = results.get()
            if kind == "error":
                raise value
            if kind == "end":
                return
            yield value
            with contextlib.suppress(RuntimeError):  # the loop is closed: the driver is done
                handles["loop"].call_soon_threadsafe(handles["slots"].release)
    finally:
        started.wait()
        loop, task = handles.get("loop"), handles.get("task")
        if loop is not None and task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(task.cancel)
        thread.join()
