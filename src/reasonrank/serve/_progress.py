"""Which windows of one request are done: a strategy wrapper that watches its plan, for the 504 message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ..strategies import Plan, Sliding, Strategy, Window
from ..window import window_schedule

__all__ = ["TrackedStrategy"]


class _TrackedPlan(Plan):
    def __init__(self, inner: Plan, tracker: TrackedStrategy) -> None:
        self.inner = inner
        self.tracker = tracker
        self.expected_windows = inner.expected_windows

    def next_round(self, order: Sequence[int]) -> list[Window]:
        windows = self.inner.next_round(order)
        self.tracker.current = [(w.start, w.end) for w in windows]
        return windows

    def update(self, order: Sequence[int], windows: Sequence[Window], ranked: Sequence[Sequence[int]]) -> list[int]:
        new_order = self.inner.update(order, windows, ranked)
        self.tracker.finished += len(windows)
        self.tracker.current = []
        return new_order


class TrackedStrategy(Strategy):
    """``inner`` for one query, remembering the round in progress and how many windows are done.

    A round's windows count as done when the whole round is back (only then do they change the ranking).
    """

    name: ClassVar[str] = "tracked"

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner
        self.current: list[tuple[int, int]] = []  # the round in progress, as [start, end) spans
        self.finished = 0
        self._later: list[tuple[int, int]] | None = None  # sliding: every window, known in advance
        self._expected = 0

    def plan(self, num: int, *, window: int = 20, step: int = 10, top_k: int | None = None) -> Plan:
        inner = self.inner.plan(num, window=window, step=step, top_k=top_k)
        self._expected = inner.expected_windows
        if isinstance(self.inner, Sliding):
            spans = window_schedule(num, window, step, rank_end=top_k, mode=self.inner.mode)
            self._later = [(s, e) for s, e in spans if e - s >= 2]
        return _TrackedPlan(inner, self)

    def unfinished(self) -> str:
        """``"2 of 3 windows did not finish: [5, 25) [0, 15)"`` (spans in the ranking's order at the time)."""
        total = max(self._expected, self.finished + len(self.current))
        if self._later is not None:
            spans = self._later[self.finished :]
            names = " ".join(f"[{s}, {e})" for s, e in spans[:10]) + (" ..." if len(spans) > 10 else "")
            return f"{len(spans)} of {len(self._later)} windows did not finish: {names or 'none'}"
        left = total - self.finished
        running = " ".join(f"[{s}, {e})" for s, e in self.current) or "none started"
        return f"{left} of about {total} windows did not finish (in progress: {running}; the rest not started)"

    def __repr__(self) -> str:
        return f"TrackedStrategy({self.inner!r})"
