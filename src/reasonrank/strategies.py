"""Window strategies: which passages the model sees in each round, and how its answers make one ranking.

A query's windows run in *rounds*: the windows of one round do not depend on each other, so the reranker
sends the windows of a round (of every query in a batch) to the backend in one call, and a query's latency is
its number of rounds times the time to decode one window.

- ``"sliding"`` (default, official): ReasonRank's back-to-front sliding window (model-reference §1.7), one
  window per round; 9 rounds for 100 candidates. Reproduces the official results.
- ``"tdpart"``: top-down partitioning around a pivot (Parry et al., SIGIR 2024), run in parallel and capped
  at 3 rounds: rank the top window; the passage at rank ``cutoff`` (12 of 20) becomes the pivot; every
  remaining passage is compared with the pivot in parallel windows; the passages that beat it are ranked in
  a final window. 7 model calls in 3 rounds for 100 candidates.
- ``"tournament"``: all passages in parallel windows, the best of each window go on to the next round,
  ``rounds`` rounds in all (default 3, the last one a single window). 9 calls in 3 rounds for 100.

Only ``"sliding"`` is what the models were evaluated with. Under a simulated ranker on BRIGHT
(docs/performance.md) ``"tdpart"`` matched sliding's nDCG@10 within noise with 3 rounds instead of 9, while
``"tournament"`` lost 1-3.5 points: prefer ``"tdpart"`` for latency.

A strategy hands out :class:`Window` s as *positions* in the query's current order (best first) and turns the
model's rankings of a round's windows into the next order. Custom strategies subclass :class:`Strategy` and
:class:`Plan`.

Examples:
    >>> plan = get_strategy("sliding").plan(30, window=20, step=10)
    >>> order = list(range(30))
    >>> [(w.start, w.end) for w in plan.next_round(order)]
    [(10, 30)]
    >>> plan = get_strategy("tdpart").plan(100, window=20, step=10)
    >>> [len(w) for w in plan.next_round(list(range(100)))]
    [20]
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from ._errors import InvalidInputError, UnknownNameError
from .window import check_window_args, check_window_mode, window_schedule

__all__ = [
    "Plan",
    "Sliding",
    "Strategy",
    "TDPart",
    "Tournament",
    "Window",
    "available_strategies",
    "get_strategy",
    "register_strategy",
    "resolve_strategy",
]


@dataclass(frozen=True)
class Window:
    """One model call: ``positions`` in the query's current order, in the order the model sees them.

    ``start``/``end`` span the positions the window draws from (exactly ``[start, end)`` for a sliding window).
    """

    positions: tuple[int, ...]

    @property
    def start(self) -> int:
        return min(self.positions)

    @property
    def end(self) -> int:
        return max(self.positions) + 1

    def __len__(self) -> int:
        return len(self.positions)

    @classmethod
    def span(cls, start: int, end: int) -> Window:
        return cls(tuple(range(start, end)))


class Plan(ABC):
    """One query's way through a strategy; the reranker calls ``next_round`` and ``update`` alternately."""

    #: the number of model calls the plan expects to make (for progress bars; may be an upper bound)
    expected_windows: int = 0

    @abstractmethod
    def next_round(self, order: Sequence[int]) -> list[Window]:
        """The windows of the next round over ``order`` (passage ids, best first); ``[]`` when done."""

    @abstractmethod
    def update(self, order: Sequence[int], windows: Sequence[Window], ranked: Sequence[Sequence[int]]) -> list[int]:
        """The new order after a round. ``ranked[i]`` lists window ``i``'s positions as the model ranked them.

        Must return a permutation of ``order``: a strategy never loses or duplicates a passage.
        """


class Strategy(ABC):
    """A way of covering a candidate list with windows; :meth:`plan` starts one query."""

    name: ClassVar[str]

    @abstractmethod
    def plan(self, num: int, *, window: int = 20, step: int = 10, top_k: int | None = None) -> Plan:
        """A plan for ``num`` candidates; only the first ``top_k`` are reranked (the rest keep their places)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _reranked_count(num: int, top_k: int | None) -> int:
    return num if top_k is None else min(num, top_k)


def _ranked_ids(order: Sequence[int], ranked_positions: Sequence[int]) -> list[int]:
    return [order[p] for p in ranked_positions]


# ---------------------------------------------------------------------------------------------- sliding


class _SlidingPlan(Plan):
    def __init__(self, schedule: list[tuple[int, int]]) -> None:
        self.schedule = schedule
        self.expected_windows = len(schedule)
        self.round = 0

    def next_round(self, order: Sequence[int]) -> list[Window]:
        if self.round >= len(self.schedule):
            return []
        return [Window.span(*self.schedule[self.round])]

    def update(self, order: Sequence[int], windows: Sequence[Window], ranked: Sequence[Sequence[int]]) -> list[int]:
        new = list(order)
        (window,), (positions,) = windows, ranked
        new[window.start : window.end] = _ranked_ids(order, positions)
        self.round += 1
        return new


class Sliding(Strategy):
    """The official back-to-front sliding window (:func:`~reasonrank.window_schedule`), one window per round.

    ``mode`` is the schedule variant: ``"fixed"`` (ReasonRank's loop, every candidate covered) or
    ``"faithful"`` (RankGPT's/REARANK's loop with its quirks). Windows of a single passage are skipped: they
    cannot change the order.
    """

    name: ClassVar[str] = "sliding"

    def __init__(self, mode: str = "fixed") -> None:
        check_window_mode(mode)
        self.mode = mode

    def plan(self, num: int, *, window: int = 20, step: int = 10, top_k: int | None = None) -> Plan:
        schedule = window_schedule(num, window, step, rank_end=top_k, mode=self.mode)
        return _SlidingPlan([(s, e) for s, e in schedule if e - s >= 2])

    def __repr__(self) -> str:
        return f"Sliding(mode={self.mode!r})"


# ---------------------------------------------------------------------------------------------- helpers


def _split_sizes(total: int, parts: int) -> list[int]:
    """``total`` items in ``parts`` groups whose sizes differ by at most one (larger groups first)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _single_window_plan(n: int) -> Plan:
    return _SlidingPlan([(0, n)] if n >= 2 else [])


# ---------------------------------------------------------------------------------------------- tdpart


class _TDPartPlan(Plan):
    """Round 1: top window. Round 2: the rest against the pivot, in parallel. Round 3: the pivot's betters."""

    def __init__(self, n: int, window: int, cutoff: int) -> None:
        self.n, self.window, self.cutoff = n, window, cutoff
        self.stage = 0
        self.partitions = _split_sizes(n - window, math.ceil((n - window) / (window - 1)))
        self.expected_windows = 2 + len(self.partitions)
        self.final_size = 0

    def next_round(self, order: Sequence[int]) -> list[Window]:
        if self.stage == 0:  # the top window, as the first-stage order has it
            return [Window.span(0, self.window)]
        if self.stage == 1:  # the pivot (at position cutoff - 1 now) first, then a slice of the rest
            pivot = self.cutoff - 1
            windows, start = [], self.window
            for size in self.partitions:
                windows.append(Window((pivot, *range(start, start + size))))
                start += size
            return windows
        if self.stage == 2 and self.final_size:
            return [Window.span(0, self.final_size)]
        return []

    def update(self, order: Sequence[int], windows: Sequence[Window], ranked: Sequence[Sequence[int]]) -> list[int]:
        self.stage += 1
        if self.stage == 1:
            return _ranked_ids(order, ranked[0]) + list(order[self.window :])
        if self.stage == 2:
            return self._partition(order, windows, ranked)
        final = _ranked_ids(order, ranked[0])
        return final + list(order[len(final) :])

    def _partition(self, order: Sequence[int], windows: Sequence[Window], ranked: Sequence[Sequence[int]]) -> list[int]:
        pivot_position = self.cutoff - 1
        pivot = order[pivot_position]
        winners: list[tuple[int, int, int]] = []  # (rank in its window, window number, passage)
        losers: list[int] = []
        for w, positions in enumerate(ranked):
            ids = _ranked_ids(order, positions)
            cut = ids.index(pivot)
            winners += [(rank, w, passage) for rank, passage in enumerate(ids[:cut])]
            losers += ids[cut + 1 :]
        # The final window holds the top cutoff - 1, the pivot and as many pivot-beaters as fit (best-placed
        # first); beaters that do not fit follow it. Then the top window's rest, then the other losers (their
        # windows are consecutive slices of the first-stage order: keep that order between windows).
        beaters = [passage for _, _, passage in sorted(winners)]
        head = [*order[:pivot_position], pivot, *beaters]
        self.final_size = min(len(head), self.window) if beaters else 0
        top_rest = list(order[self.cutoff : self.window])
        return head + top_rest + losers + list(order[self.n :])


class TDPart(Strategy):
    """Top-down partitioning around a pivot, in parallel, in at most 3 rounds (Parry et al., SIGIR 2024).

    ``cutoff`` is the pivot's rank in the top window, smaller than the window; the default, 60% of the window
    (12 of 20), was the most robust setting under a simulated noisy ranker on BRIGHT (the paper used 10 for
    nDCG@10; a pivot a little lower keeps strong first-stage passages in the final window and lets deep
    relevant ones beat it more easily). The top ``cutoff`` come out exact for an exact ranker whenever the
    pivot is among the ``window`` best overall. Lists of at most one window get a single window, like sliding.

    Examples:
        >>> plan = TDPart(cutoff=10).plan(100, window=20)
        >>> order = list(range(100))
        >>> first = plan.next_round(order)
        >>> order = plan.update(order, first, [list(range(20))])  # the model keeps the order
        >>> [w.positions[:3] for w in plan.next_round(order)]
        [(9, 20, 21), (9, 36, 37), (9, 52, 53), (9, 68, 69), (9, 84, 85)]
    """

    name: ClassVar[str] = "tdpart"

    def __init__(self, cutoff: int | None = None) -> None:
        if cutoff is not None and (isinstance(cutoff, bool) or not isinstance(cutoff, int) or cutoff < 1):
            raise InvalidInputError(f"cutoff must be an int >= 1 or None, got {cutoff!r}")
        self.cutoff = cutoff

    def plan(self, num: int, *, window: int = 20, step: int = 10, top_k: int | None = None) -> Plan:
        check_window_args(window, step)
        cutoff = self.cutoff if self.cutoff is not None else max(1, round(0.6 * window))
        if cutoff >= window:
            raise InvalidInputError(f"tdpart: cutoff ({cutoff}) must be smaller than the window ({window})")
        n = _reranked_count(num, top_k)
        if n <= window:
            return _single_window_plan(n)
        return _TDPartPlan(n, window, cutoff)

    def __repr__(self) -> str:
        return f"TDPart(cutoff={self.cutoff})"


# ---------------------------------------------------------------------------------------------- tournament


class _TournamentPlan(Plan):
    """Rounds of parallel windows; the best of each go on, until one window ranks the finalists."""

    def __init__(self, n: int, window: int, survivors: list[int]) -> None:
        self.window = window
        self.survivors = survivors  # pool size after each filtering round; the last one fits one window
        self.filtered = 0  # filtering rounds done
        self.pool = n  # the pool sits at positions [0, pool) of the order
        self.done = False
        self.groups: list[tuple[int, ...]] = []
        self.expected_windows = sum(math.ceil(c / window) for c in [n, *survivors[:-1]]) + 1

    def next_round(self, order: Sequence[int]) -> list[Window]:
        if self.done:
            return []
        if self.pool <= self.window:
            return [Window.span(0, self.pool)]
        # Deal the pool like cards, best first, so that every window gets a fair share of the strong
        # passages; each window shows its passages in their current order.
        groups = math.ceil(self.pool / self.window)
        self.groups = [tuple(range(g, self.pool, groups)) for g in range(groups)]
        # A group of one passage (window=2, odd pool) needs no model call: it ranks itself.
        return [Window(group) for group in self.groups if len(group) >= 2]

    def update(self, order: Sequence[int], windows: Sequence[Window], ranked: Sequence[Sequence[int]]) -> list[int]:
        if self.pool <= self.window:  # that was the final window
            self.done = True
            return _ranked_ids(order, ranked[0]) + list(order[self.pool :])
        answers = iter(ranked)
        ranked = [group if len(group) < 2 else next(answers) for group in self.groups]
        keeps = _apportion(self.survivors[self.filtered], [len(group) for group in self.groups])
        self.filtered += 1
        kept: list[tuple[int, int, int]] = []  # (rank in its window, window number, passage)
        dropped: list[tuple[int, int, int]] = []
        for w, (positions, keep) in enumerate(zip(ranked, keeps)):
            for rank, passage in enumerate(_ranked_ids(order, positions)):
                (kept if rank < keep else dropped).append((rank, w, passage))
        # New order: the survivors, then this round's losers (best-placed first), then the losers of earlier
        # rounds and the passages not reranked, as they were.
        new = [p for *_, p in sorted(kept)] + [p for *_, p in sorted(dropped)] + list(order[self.pool :])
        self.pool = len(kept)
        return new


def _apportion(total: int, sizes: list[int]) -> list[int]:
    """Split ``total`` survivors over windows in proportion to their sizes (largest remainders)."""
    whole = sum(sizes)
    exact = [total * s / whole for s in sizes]
    keeps = [min(s, math.floor(x)) for s, x in zip(sizes, exact)]
    for i in sorted(range(len(sizes)), key=lambda i: keeps[i] - exact[i]):
        if sum(keeps) >= total:
            break
        if keeps[i] < sizes[i]:
            keeps[i] += 1
    return keeps


class Tournament(Strategy):
    """Parallel windows whose best passages go on to the next round; at most ``rounds`` rounds.

    Round 1 deals the candidates into windows of at most ``window`` passages; each round keeps about the
    same share of every window (the pool shrinks geometrically to one window), and the last round ranks the
    finalists in one window. A list that one filtering round can bring to one window while keeping at least
    half of it uses fewer rounds. 100 candidates, window 20: 5 windows keep 9 each, 3 windows keep 7/7/6,
    one final window (9 calls, 3 rounds).
    """

    name: ClassVar[str] = "tournament"

    def __init__(self, rounds: int = 3) -> None:
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 2:
            raise InvalidInputError(f"rounds must be an int >= 2, got {rounds!r}")
        self.rounds = rounds

    def plan(self, num: int, *, window: int = 20, step: int = 10, top_k: int | None = None) -> Plan:
        check_window_args(window, step)
        n = _reranked_count(num, top_k)
        if n <= window:
            return _single_window_plan(n)
        filters = 1
        while filters < self.rounds - 1 and (window / n) ** (1 / filters) < 0.5:
            filters += 1
        ratio = (window / n) ** (1 / filters)
        survivors = [max(window, min(n - 1, round(n * ratio**r))) for r in range(1, filters)] + [window]
        return _TournamentPlan(n, window, survivors)

    def __repr__(self) -> str:
        return f"Tournament(rounds={self.rounds})"


# ---------------------------------------------------------------------------------------------- registry

_STRATEGIES: dict[str, type[Strategy]] = {"sliding": Sliding, "tdpart": TDPart, "tournament": Tournament}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Make a :class:`Strategy` subclass (constructible without arguments) available by its ``name``."""
    _STRATEGIES[cls.name] = cls
    return cls


def available_strategies() -> list[str]:
    return sorted(_STRATEGIES)


def get_strategy(strategy: str | Strategy) -> Strategy:
    """A strategy instance from a name (default settings) or the instance itself.

    Examples:
        >>> get_strategy("tdpart"), get_strategy(Tournament(rounds=4))
        (TDPart(cutoff=None), Tournament(rounds=4))
    """
    if isinstance(strategy, Strategy):
        return strategy
    try:
        return _STRATEGIES[strategy]()
    except (KeyError, TypeError):
        raise UnknownNameError("strategy", strategy, available_strategies()) from None


def resolve_strategy(strategy: str | Strategy, window_mode: str = "fixed") -> Strategy:
    """The strategy for ``rerank(..., strategy=, window_mode=)``: ``window_mode`` configures sliding windows.

    Examples:
        >>> resolve_strategy("sliding", "faithful")
        Sliding(mode='faithful')
    """
    check_window_mode(window_mode)
    if strategy == "sliding":
        return Sliding(mode=window_mode)
    if window_mode != "fixed":
        raise InvalidInputError(
            f"window_mode={window_mode!r} applies to the sliding strategy only; got strategy={strategy!r}"
        )
    return get_strategy(strategy)
