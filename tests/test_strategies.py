"""Window strategies: official sliding unchanged, fewer rounds for tdpart/tournament, no passage ever lost."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonrank import InvalidInputError, Reranker, UnknownNameError, window_schedule
from reasonrank.backends import FakeBackend, answer
from reasonrank.strategies import Sliding, TDPart, Tournament, Window, available_strategies, get_strategy


def oracle(request):
    """Ranks by the number in the passage text: higher is better (so the true order is known)."""
    values = [int(c) for c in request.contents]
    return answer(sorted(range(len(values)), key=lambda i: -values[i]))


def shuffled(n, seed=0):
    values = list(range(n))
    random.Random(seed).shuffle(values)
    return values


def deep(n):
    """The first window holds every other one of the 40 best; the others follow in random order.

    Half of the true top 10 is deep in the list, and the pivot (10th of the first window) is 19th overall.
    """
    top = list(range(n - 1, n - 41, -2))
    rest = [v for v in shuffled(n) if v not in top]
    return top + rest


def run(strategy, n, *, queries=1, window=20, step=10, top_k=None, responder=oracle, values=shuffled):
    backend = FakeBackend(responder)
    reranker = Reranker(backend, progress=False)
    lists = [[{"docid": f"d{v}", "text": str(v)} for v in values(n)] for _ in range(queries)]
    rankings = reranker.rerank_batch(
        [f"q{i}" for i in range(queries)], lists, window=window, step=step, top_k=top_k, strategy=strategy
    )
    return rankings, backend


def rounds_of(ranking):
    return max((w.round for w in ranking.windows), default=-1) + 1


def test_sliding_is_the_default_and_follows_the_official_schedule():
    rankings, backend = run("sliding", 100)
    default, default_backend = run(Sliding(), 100)
    assert [(w.start, w.end) for w in rankings[0].windows] == window_schedule(100)
    assert [[r.prompt for r in call] for call in backend.calls] == [
        [r.prompt for r in call] for call in default_backend.calls
    ]
    assert rankings[0].docids == default[0].docids
    assert [w.round for w in rankings[0].windows] == list(range(9))


@pytest.mark.parametrize("strategy", ["tdpart", "tournament"])
def test_parallel_strategies_use_three_rounds_and_one_backend_call_per_round(strategy):
    rankings, backend = run(strategy, 100, queries=3)
    assert all(rounds_of(r) == 3 for r in rankings)
    assert len(backend.calls) == 3  # every window of a round, of every query, in one call
    per_round = [len(call) // 3 for call in backend.calls]
    assert per_round == ([1, 5, 1] if strategy == "tdpart" else [5, 3, 1])
    for call in backend.calls:
        assert all(2 <= len(r.docids) <= 20 and len(set(r.docids)) == len(r.docids) for r in call)


@pytest.mark.parametrize("strategy", ["sliding", "tdpart", "tournament", TDPart(cutoff=5), Tournament(rounds=2)])
def test_an_exact_ranker_brings_the_best_passage_up_from_the_bottom(strategy):
    rankings, _ = run(strategy, 100, values=lambda n: [*shuffled(n - 1), n - 1])
    assert rankings[0].docids[0] == "d99"


@pytest.mark.parametrize(("strategy", "exact"), [("sliding", 10), (TDPart(cutoff=10), 10), (TDPart(cutoff=5), 5)])
def test_an_exact_ranker_gets_the_true_top_k(strategy, exact):
    # sliding always; tdpart down to its cutoff when the pivot is within the window's reach overall
    rankings, _ = run(strategy, 100, values=deep)
    assert rankings[0].docids[:exact] == [f"d{v}" for v in range(99, 99 - exact, -1)]


def test_tdpart_stops_after_two_rounds_when_nothing_beats_the_pivot():
    def keep_order(request):  # the pivot comes first in its windows, so it wins every comparison
        return answer(range(len(request.docids)))

    rankings, backend = run("tdpart", 60, responder=keep_order)
    assert rounds_of(rankings[0]) == 2 and len(backend.calls) == 2
    assert rankings[0].order == list(range(60))  # nothing moved: the model kept every order


def test_tdpart_windows_put_the_pivot_first():
    rankings, _ = run("tdpart", 100)
    top, *partitions, final = rankings[0].windows
    pivot = top.docids[top.order[11]]  # the default pivot: rank 12 of 20
    assert [w.docids[0] for w in partitions] == [pivot] * 5
    assert sum(len(w.docids) - 1 for w in partitions) == 80
    assert (final.start, final.end) == (0, len(final.docids))


def test_small_lists_get_a_single_window_from_every_strategy():
    for strategy in ("sliding", "tdpart", "tournament"):
        rankings, backend = run(strategy, 15)
        assert [(w.start, w.end) for w in rankings[0].windows] == [(0, 15)]
        rankings, backend = run(strategy, 1)
        assert rankings[0].windows == [] and backend.calls == []


def test_top_k_leaves_the_tail_alone():
    for strategy in ("tdpart", "tournament"):
        rankings, backend = run(strategy, 100, top_k=50)
        seen = {d for call in backend.calls for r in call for d in r.docids}
        assert len(seen) == 50
        assert rankings[0].order[50:] == list(range(50, 100))


def test_window_positions_and_trace_spans():
    w = Window((9, 20, 21, 22))
    assert (w.start, w.end, len(w)) == (9, 23, 4)
    assert Window.span(3, 6).positions == (3, 4, 5)


def test_strategy_names_and_bad_settings():
    assert available_strategies() == ["sliding", "tdpart", "tournament"]
    assert isinstance(get_strategy("tdpart"), TDPart)
    with pytest.raises(UnknownNameError, match="tdpart"):
        get_strategy("bubble")
    with pytest.raises(InvalidInputError, match="cutoff"):
        TDPart(cutoff=0)
    with pytest.raises(InvalidInputError, match="smaller than the window"):
        TDPart(cutoff=20).plan(100, window=20)
    assert TDPart().plan(100, window=10, step=5).next_round(list(range(100)))[0].positions == tuple(range(10))
    with pytest.raises(InvalidInputError, match="rounds"):
        Tournament(rounds=1)
    with pytest.raises(UnknownNameError):
        Reranker(FakeBackend(), progress=False).rerank("q", ["a", "b"], strategy="nope")


def random_output(rng: random.Random):
    """Anything a model might write: clean, partial, duplicated, out-of-range or no answer at all."""

    def respond(request):
        n = len(request.docids)
        ids = list(range(1, n + 1))
        rng.shuffle(ids)
        kind = rng.randrange(5)
        if kind == 1:
            ids = ids[: rng.randint(0, n)]
        elif kind == 2:
            ids += [rng.randint(0, n + 3) for _ in range(3)]
        elif kind == 3:
            return "<think>no idea</think>"
        return "<think>r</think> <answer>" + " > ".join(f"[{i}]" for i in ids) + "</answer>"

    return respond


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 130),
    window=st.integers(2, 25),
    step_fraction=st.floats(0.05, 0.95),
    top_k=st.one_of(st.none(), st.integers(1, 140)),
    kind=st.sampled_from(["sliding", "tdpart", "tdpart-default", "tournament", "tournament4"]),
    cutoff=st.integers(1, 24),
    seed=st.integers(0, 2**32 - 1),
)
def test_no_strategy_loses_or_duplicates_a_passage(n, window, step_fraction, top_k, kind, cutoff, seed):
    step = max(1, min(window - 1, round(window * step_fraction)))
    strategy = {
        "sliding": Sliding(),
        "tdpart": TDPart(cutoff=min(cutoff, window - 1)),
        "tdpart-default": TDPart(),
        "tournament": Tournament(),
        "tournament4": Tournament(rounds=4),
    }[kind]
    rng = random.Random(seed)
    backend = FakeBackend(random_output(rng))
    passages = [{"docid": f"d{i}", "text": f"passage {i}"} for i in range(n)]
    ranking = Reranker(backend, progress=False).rerank(
        "q", passages, window=window, step=step, top_k=top_k, strategy=strategy
    )
    assert sorted(ranking.order) == list(range(n))
    assert sorted(ranking.docids) == sorted(p["docid"] for p in passages)
    reranked = n if top_k is None else min(n, top_k)
    assert ranking.order[reranked:] == list(range(reranked, n))
    for trace in ranking.windows:
        assert 2 <= len(trace.docids) <= window
        assert len(set(trace.docids)) == len(trace.docids)
        assert all(int(d[1:]) < reranked for d in trace.docids)
    if kind in ("tdpart", "tdpart-default", "tournament"):
        assert rounds_of(ranking) <= 3
    if kind == "tournament4":
        assert rounds_of(ranking) <= 4
