"""Sliding-window schedules: which ``[start, end)`` slices of the candidate list the model sees, in call order.

Windows move from the back of the list to the front, so strong passages found deep in the list bubble up to the
top. Two modes:

- ``"fixed"`` (default): the official ReasonRank/RankLLM loop (model-reference §1.7). It always covers every
  candidate: the last window is clamped to the top of the list.
- ``"faithful"``: the loop of RankGPT and REARANK, ``while start_pos >= rank_start`` (model-reference §5.1, §6),
  with its quirks kept: the top window does not reach rank 0 when ``rank_end - window`` is not a multiple of
  ``step``, fewer than ``window`` candidates get no window at all, and ``rank_end`` is not clamped to the
  number of candidates (RankGPT's script always passes 100; REARANK passes the *first* query of each batch's
  count), so windows may run past the end of the list and are cut there.

Examples:
    >>> window_schedule(100)[:3], window_schedule(100)[-1], len(window_schedule(100))
    ([(80, 100), (70, 90), (60, 80)], (0, 20), 9)
    >>> window_schedule(25)
    [(5, 25), (0, 15)]
    >>> window_schedule(7)
    [(0, 7)]
    >>> window_schedule(25, mode="faithful"), window_schedule(7, mode="faithful")
    ([(5, 25)], [])
    >>> window_schedule(45, rank_end=100, mode="faithful")  # RankGPT's script on a short list
    [(40, 45), (30, 45), (20, 40), (10, 30), (0, 20)]
"""

from __future__ import annotations

from ._errors import InvalidInputError, UnknownNameError

__all__ = ["WINDOW_MODES", "check_window_args", "check_window_mode", "window_schedule"]

#: the schedule variants :func:`window_schedule` knows
WINDOW_MODES: tuple[str, ...] = ("fixed", "faithful")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_window_args(window: int, step: int) -> None:
    """Raise :class:`~reasonrank.InvalidInputError` unless ``2 <= window`` and ``1 <= step < window``."""
    if not _is_int(window) or window < 2:
        raise InvalidInputError(f"window must be an int >= 2 (passages per model call), got {window!r}")
    if not _is_int(step) or step < 1:
        raise InvalidInputError(f"step must be an int >= 1, got {step!r}")
    if step >= window:
        raise InvalidInputError(
            f"step ({step}) must be smaller than window ({window}) so that consecutive windows overlap and "
            f"good passages can move up; the usual setting is window=20, step=10"
        )


def check_window_mode(mode: str) -> None:
    """Raise :class:`~reasonrank.UnknownNameError` unless ``mode`` is one of :data:`WINDOW_MODES`."""
    if mode not in WINDOW_MODES:
        raise UnknownNameError(
            "window mode",
            mode,
            WINDOW_MODES,
            "'fixed' always covers every candidate; 'faithful' keeps the RankGPT/REARANK loop's quirks",
        )


def window_schedule(
    num: int,
    window: int = 20,
    step: int = 10,
    *,
    rank_start: int = 0,
    rank_end: int | None = None,
    mode: str = "fixed",
) -> list[tuple[int, int]]:
    """The official windows over ``num`` candidates, in the order the model is called.

    ``mode="fixed"`` (default) is ReasonRank's loop, described here; ``mode="faithful"`` is RankGPT's and
    REARANK's (see :func:`_faithful_schedule`).

    Mirrors ``Reranker.rerank_batch`` + ``RankLLM.sliding_windows`` of the official code exactly:
    ``rank_end`` is clamped to ``num`` and ``window`` to ``num``; then, from ``end = rank_end`` and
    ``start = rank_end - window``, while ``end > rank_start`` and ``start + step != rank_start``: clamp
    ``start`` to ``rank_start``, emit ``(start, end)``, and move both back by ``step`` (the *clamped* start is
    decremented, which is what ends the loop). So ``num <= window`` gives one window ``(0, num)``, and the
    last window can be shorter than ``window`` (21 candidates: ``(1, 21), (0, 11)``).

    ``rank_end`` is the official ``rerank_topk``: only the first ``rank_end`` candidates are reranked.
    """
    if not _is_int(num) or num < 0:
        raise InvalidInputError(f"num must be an int >= 0, got {num!r}")
    check_window_args(window, step)
    if rank_end is not None and (not _is_int(rank_end) or rank_end < 0):
        raise InvalidInputError(f"rank_end must be an int >= 0 or None, got {rank_end!r}")
    if not _is_int(rank_start):
        raise InvalidInputError(f"rank_start must be an int, got {rank_start!r}")
    check_window_mode(mode)
    rank_start = max(rank_start, 0)
    if mode == "faithful":
        return _faithful_schedule(num, window, step, rank_start, num if rank_end is None else rank_end)
    rank_end = num if rank_end is None else min(rank_end, num)
    window = min(window, num)
    windows: list[tuple[int, int]] = []
    end, start = rank_end, rank_end - window
    while end > rank_start and start + step != rank_start:
        start = max(start, rank_start)
        windows.append((start, end))
        end -= step
        start -= step
    return windows


def _faithful_schedule(num: int, window: int, step: int, rank_start: int, rank_end: int) -> list[tuple[int, int]]:
    """RankGPT ``sliding_windows`` / REARANK ``sliding_windows_batch``, quirks kept (model-reference §5.1).

    From ``end = rank_end`` and ``start = rank_end - window``, while ``start >= rank_start``: emit
    ``(start, end)`` and move both back by ``step``. Neither ``rank_end`` nor ``window`` is clamped to ``num``:
    the official code slices ``hits[start:end]``, so a window reaching past the list is cut to
    ``(start, num)``, and one starting at or past ``num`` gets an empty slice. The official code still calls
    the model for such an empty window (with a prompt for zero passages) and changes nothing; it is left out
    here, so no model call is spent on it.
    """
    windows: list[tuple[int, int]] = []
    end, start = rank_end, rank_end - window
    if start >= num:  # skip the empty windows past the list at once (rank_end=10**18 must not loop 10**17 times)
        skipped = (start - num) // step + 1
        end, start = end - skipped * step, start - skipped * step
    while start >= rank_start:
        if start < num:
            windows.append((start, min(end, num)))
        end -= step
        start -= step
    return windows
