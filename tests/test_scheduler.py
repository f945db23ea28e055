"""The streaming window scheduler, the async API and bounded-memory streaming (issue 11).

Every test runs real event loops (``asyncio.run``) and real threads; backends are small Backend subclasses
whose answers are a function of the request, so schedules can be compared exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from dataclasses import replace

import pytest

from reasonrank import Reranker
from reasonrank._errors import InvalidInputError, WindowFailedError
from reasonrank.backends import Backend, FakeBackend, Generation, GenerationRequest, answer


def passages(n: int, tag: str = "") -> list[str]:
    return [f"{tag}passage {i}" for i in range(n)]


def hashed_order(request: GenerationRequest) -> list[int]:
    """A deterministic, request-dependent permutation: any change of window contents changes the answer."""
    n = len(request.docids)
    return sorted(range(n), key=lambda i: hashlib.sha256(f"{request.query}|{request.contents[i]}".encode()).digest())


def hashed_answer(request: GenerationRequest) -> str:
    return answer(hashed_order(request))


def latency(request: GenerationRequest) -> float:
    """A seeded per-window latency (1-12 ms) that varies between windows."""
    return 0.001 + (hashlib.sha256(request.prompt.encode()).digest()[0] / 255) * 0.011


class AsyncBackend(Backend):
    """A streaming backend: each request sleeps its own latency in the event loop, then answers."""

    name = "async-test"

    def __init__(self, delay=latency, respond=hashed_answer):
        self.delay, self.respond = delay, respond
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []
        self.in_flight = 0
        self.peak = 0

    def generate(self, requests):
        return [Generation(self.respond(r), finish_reason="stop") for r in requests]

    async def agenerate(self, request):
        self.started.append(request.key)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay(request))
        except asyncio.CancelledError:
            self.cancelled.append(request.key)
            raise
        finally:
            self.in_flight -= 1
        self.finished.append(request.key)
        return Generation(self.respond(request), finish_reason="stop")


def without_seconds(ranking):
    return replace(ranking, windows=[replace(w, seconds=None) for w in ranking.windows])


QUERIES = [f"query {q}" for q in range(7)]
LISTS = [passages(n, f"q{q} ") for q, n in enumerate((100, 35, 20, 3, 57, 2, 41))]


@pytest.mark.parametrize("strategy", ["sliding", "tdpart", "tournament"])
def test_streaming_gives_the_lockstep_rankings_and_traces(strategy):
    lockstep = Reranker(FakeBackend(hashed_answer), progress=False, schedule="lockstep")
    expected = lockstep.rerank_batch(QUERIES, LISTS, qids=[str(q) for q in range(7)], strategy=strategy)
    for backend in (AsyncBackend(), FakeBackend(hashed_answer)):
        streaming = Reranker(backend, progress=False, schedule="streaming")
        got = streaming.rerank_batch(QUERIES, LISTS, qids=[str(q) for q in range(7)], strategy=strategy)
        assert [without_seconds(r) for r in got] == [without_seconds(r) for r in expected]
        assert streaming.stats.windows_completed == sum(len(r.windows) for r in expected)
        assert streaming.stats.in_flight == 0
        got_async = asyncio.run(
            streaming.arerank_batch(QUERIES, LISTS, qids=[str(q) for q in range(7)], strategy=strategy)
        )
        assert [without_seconds(r) for r in got_async] == [without_seconds(r) for r in expected]


def test_auto_schedule_streams_only_where_the_backend_can():
    assert AsyncBackend().can_stream and not FakeBackend().can_stream
    assert Reranker(FakeBackend(), progress=False)._lockstep(None) is True
    assert Reranker(AsyncBackend(), progress=False)._lockstep(None) is False
    assert Reranker(AsyncBackend(), progress=False)._lockstep("lockstep") is True
    with pytest.raises(InvalidInputError, match="schedule must be"):
        Reranker(FakeBackend(), schedule="eager")
    with pytest.raises(InvalidInputError, match="schedule must be"):
        Reranker(FakeBackend(), progress=False).rerank("q", ["a", "b"], schedule="rounds")


def test_no_round_barrier_each_query_advances_on_its_own():
    """A slow query does not hold a fast one back: the fast one's 9 windows finish before the slow one's 2nd."""

    def delay(request):
        return 0.2 if request.query == "slow" else 0.002

    backend = AsyncBackend(delay=delay)
    reranker = Reranker(backend, progress=False)  # auto: streaming
    started = time.perf_counter()
    rankings = list(reranker.rerank_stream([("s", "slow", passages(30)), ("f", "fast", passages(100))]))
    elapsed = time.perf_counter() - started
    assert [r.qid for r in rankings] == ["f", "s"]  # yielded as they complete
    fast_done = max(backend.finished.index(k) for k in backend.finished if k.startswith("query 1"))
    slow_first = min(backend.finished.index(k) for k in backend.finished if k.startswith("query 0"))
    assert fast_done < slow_first
    assert elapsed < 0.4 + 0.3  # the slow chain (2 x 0.2 s), not 9 rounds of 0.2 s
    # lockstep waits for the slow window in every round the slow query takes part in
    lockstep = Reranker(AsyncBackend(delay=delay), progress=False, schedule="lockstep")
    order = [r.qid for r in lockstep.rerank_stream([("s", "slow", passages(30)), ("f", "fast", passages(100))])]
    assert order == ["s", "f"]


def test_concurrent_arerank_calls_share_backend_calls():
    """Windows of concurrent callers flow into one dispatcher: a batch-only backend sees them in one call."""
    backend = FakeBackend(hashed_answer)
    reranker = Reranker(backend, progress=False)

    async def main():
        return await asyncio.gather(*(reranker.arerank(f"q{k}", passages(30, f"{k}"), qid=str(k)) for k in range(5)))

    rankings = asyncio.run(main())
    assert [r.qid for r in rankings] == ["0", "1", "2", "3", "4"]
    assert [len(batch) for batch in backend.calls] == [5, 5]  # 2 windows per query, both rounds batched
    assert reranker.stats.backend_calls == 2 and reranker.stats.windows_sent == 10
    assert reranker.stats.windows_per_call == 5.0
    alone = Reranker(FakeBackend(hashed_answer), progress=False)
    assert [without_seconds(r) for r in rankings] == [
        without_seconds(alone.rerank(f"q{k}", passages(30, f"{k}"), qid=str(k))) for k in range(5)
    ]


def test_concurrent_arerank_calls_share_the_streaming_pool():
    backend = AsyncBackend(delay=lambda r: 0.01)
    reranker = Reranker(backend, progress=False)

    async def main():
        return await asyncio.gather(*(reranker.arerank(f"q{k}", passages(100)) for k in range(8)))

    asyncio.run(main())
    assert backend.peak == 8  # one window of each caller in flight at once
    assert reranker.stats.peak_in_flight == 8 and reranker.stats.backend_calls == 72


def test_cancelling_a_caller_cancels_its_windows_in_flight():
    backend = AsyncBackend(delay=lambda r: 10.0 if r.query == "doomed" else 0.001)
    reranker = Reranker(backend, progress=False)

    async def main():
        doomed = asyncio.create_task(reranker.arerank("doomed", passages(30)))
        other = asyncio.create_task(reranker.arerank("fine", passages(30)))
        while not any(k.startswith("query 0") for k in backend.started):
            await asyncio.sleep(0.001)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        return await other

    ranking = asyncio.run(main())
    assert ranking.query == "fine" and len(ranking.windows) == 2
    assert backend.cancelled == ["query 0 window 0 [10, 30)"]
    assert reranker.stats.windows_cancelled == 1 and reranker.stats.in_flight == 0


class GatedBackend(Backend):
    """A batch-only backend whose first call blocks until ``gate`` is set."""

    name = "gated"

    def __init__(self):
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[list[str]] = []

    def generate(self, requests):
        self.calls.append([r.query for r in requests])
        self.entered.set()
        self.gate.wait(5)
        return [Generation(answer(range(len(r.docids)))) for r in requests]


def test_cancelling_a_caller_drops_its_windows_not_yet_sent():
    backend = GatedBackend()
    reranker = Reranker(backend, progress=False)

    async def main():
        first = asyncio.create_task(reranker.arerank("first", passages(3)))
        while not backend.entered.is_set():
            await asyncio.sleep(0.001)
        second = asyncio.create_task(reranker.arerank("second", passages(3)))
        await asyncio.sleep(0.01)  # queued behind the running batch
        second.cancel()
        backend.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await second
        return await first

    assert asyncio.run(main()).query == "first"
    assert backend.calls == [["first"]]  # the cancelled caller's window was never sent


def test_streaming_failure_names_every_window_not_completed():
    def respond(request):
        if request.query == "bad":
            raise ConnectionError("server went away")
        return hashed_answer(request)

    class Failing(AsyncBackend):
        async def agenerate(self, request):
            if request.query == "bad":
                await asyncio.sleep(0.01)
                raise ConnectionError("server went away")
            return await super().agenerate(request)

    backend = Failing(delay=lambda r: 0.3 if r.query == "slow" else 0.001)
    reranker = Reranker(backend, progress=False)
    with pytest.raises(WindowFailedError) as e:
        reranker.rerank_batch(["ok", "bad", "slow"], [passages(3), passages(30), passages(30)], qids=["A", "B", "C"])
    err = e.value
    assert isinstance(err.__cause__, ConnectionError) and err.qid == "B"
    assert err.failed == (("B", (10, 30)),) and "server went away" in str(err) and "1 of 3 windows" in str(err)
    # The window in flight finished (a cache keeps it); nothing was sent after the failure.
    assert err.completed == 2 and backend.cancelled == []
    assert backend.started == ["query 0 (qid A) window 0 [0, 3)", "query 2 (qid C) window 0 [10, 30)"]


def test_rerank_stream_keeps_a_bounded_number_of_queries_in_flight():
    consumed = []

    def items():
        for k in range(40):
            consumed.append(k)
            yield str(k), f"query {k}", passages(25, f"{k}")

    for backend, schedule in ((AsyncBackend(delay=lambda r: 0.0), "streaming"), (FakeBackend(), "lockstep")):
        consumed.clear()
        reranker = Reranker(backend, progress=False, schedule=schedule)
        seen = []
        for taken, ranking in enumerate(reranker.rerank_stream(items(), max_in_flight=4), start=1):
            assert len(consumed) <= 4 + taken  # never more than max_in_flight ahead of the caller
            seen.append(ranking.qid)
        assert sorted(seen, key=int) == [str(k) for k in range(40)]
    assert [len(batch) for batch in backend.calls][:2] == [4, 4]  # lockstep: chunks of max_in_flight queries


def test_rerank_stream_closed_early_stops_reading_and_cancels():
    backend = AsyncBackend(delay=lambda r: 0.5 if r.query != "query 0" else 0.001)
    consumed = []

    def items():
        for k in range(1000):
            consumed.append(k)
            yield str(k), f"query {k}", passages(30)

    stream = Reranker(backend, progress=False).rerank_stream(items(), max_in_flight=3)
    first = next(stream)
    stream.close()
    assert first.qid == "0" and len(consumed) <= 4
    assert backend.cancelled  # the slow queries' windows in flight


@pytest.mark.parametrize("schedule", ["lockstep", "streaming"])
def test_rerank_stream_validates_items(schedule):
    reranker = Reranker(AsyncBackend(), progress=False, schedule=schedule)
    with pytest.raises(InvalidInputError, match="item 1"):
        list(reranker.rerank_stream([("a", "q", ["x", "y"]), ("b", "q")]))
    with pytest.raises(InvalidInputError, match="query 1 \\(qid b\\): no passages"):
        list(reranker.rerank_stream([("a", "q", ["x", "y"]), ("b", "q", [])]))
    with pytest.raises(InvalidInputError, match="query 0 \\(qid a\\): query is empty"):
        list(reranker.rerank_stream([("a", " ", ["x", "y"])]))
    with pytest.raises(InvalidInputError, match="max_in_flight"):
        reranker.rerank_stream([], max_in_flight=0)
    with pytest.raises(InvalidInputError, match="iterable"):
        reranker.rerank_stream("qid query passages")
    assert list(reranker.rerank_stream([])) == []


def test_sync_streaming_works_inside_a_running_event_loop():
    """A notebook calls the sync API from inside a running loop: no nested loop is needed."""

    async def main():
        return Reranker(AsyncBackend(), progress=False).rerank("q", passages(30)).docids

    expected = Reranker(FakeBackend(hashed_answer), progress=False).rerank("q", passages(30)).docids
    assert asyncio.run(main()) == expected


def test_progress_moves_per_finished_window_when_streaming(capsys):
    Reranker(AsyncBackend(), progress=True).rerank("q", passages(30))
    err = capsys.readouterr().err
    assert "windows" in err and "2/2" in err


class AsyncShuffled(Backend):
    """A streaming version of test_eval_pipeline's ``shuffled`` model that can die after ``budget`` windows."""

    name = "async-shuffled"

    def __init__(self, budget: int | None = None):
        self.budget, self.requests = budget, 0

    def generate(self, requests):
        raise AssertionError("a streaming backend is sent windows one at a time")

    async def agenerate(self, request):
        from test_eval_pipeline import shuffled

        if self.budget is not None and self.requests >= self.budget:
            raise ConnectionError("server died")
        self.requests += 1
        await asyncio.sleep(latency(request) / 4)
        return shuffled(request)


def test_eval_streams_and_resumes_with_a_streaming_backend(noveleval_data, tmp_path):
    from reasonrank.evaluation import run_eval
    from test_eval_pipeline import _without_seconds, shuffled

    def run(backend, out, **kw):
        return run_eval(
            Reranker(backend, progress=False), noveleval_data, out, progress=False, model_id="shuffled",
            window=10, step=5, limit=6, query_batch_size=4, **kw,
        )  # fmt: skip

    reference = tmp_path / "reference"
    run(FakeBackend(shuffled), reference)  # batch-only: lockstep chunks, as before
    resumed = tmp_path / "resumed"
    with pytest.raises(WindowFailedError, match="server died") as info:
        run(AsyncShuffled(budget=7), resumed)
    assert info.value.completed == 7 and info.value.failed  # names what did not complete
    assert len((resumed / "cache.jsonl").read_text().splitlines()[1:]) == 7  # every completed window kept
    counting = AsyncShuffled()
    result = run(counting, resumed)
    assert counting.requests == 18 - 7  # no window twice
    assert (result.summary["windows_from_cache"], result.summary["windows_generated"]) == (7, 11)
    for name in ("run.trec", "metrics.json"):
        assert (resumed / name).read_bytes() == (reference / name).read_bytes(), name
    assert _without_seconds(resumed / "traces.jsonl") == _without_seconds(reference / "traces.jsonl")


@pytest.fixture
def noveleval_data(shared_data):
    from reasonrank.evaluation import EvalData

    folder = shared_data / "noveleval"
    return EvalData.from_files(qrels=folder / "qrels.txt", data_json=folder / "data.json")


def test_fake_backend_can_keep_no_history():
    backend = FakeBackend(record=False)
    Reranker(backend, progress=False).rerank_batch(["a", "b"], [passages(30), passages(3)])
    assert backend.calls == [] and backend.num_requests == 3


@pytest.mark.parametrize("schedule", ["lockstep", "streaming"])
@pytest.mark.parametrize("max_in_flight", [1, 2, 8, 64])
def test_rerank_stream_yields_the_queries_before_a_bad_item_then_raises(schedule, max_in_flight):
    """A bad item stops the reading, not the queries already started: their rankings come first."""

    def items():
        for k in range(10):
            yield f"q{k}", "" if k == 5 else f"query {k}", [f"p{k} {i}" for i in range(3)]

    reranker = Reranker(AsyncBackend(), progress=False, schedule=schedule)
    got = []
    with pytest.raises(InvalidInputError, match="query 5 \\(qid q5\\): query is empty"):
        for ranking in reranker.rerank_stream(items(), max_in_flight=max_in_flight):
            got.append(ranking.qid)
    assert sorted(got) == [f"q{k}" for k in range(5)]
