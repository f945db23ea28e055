"""Sliding-window schedules: which ``[start, end)`` slices of the candidate list the model sees, in call order.

The schedule is the official ReasonRank/RankLLM one (model-reference §1.7): windows move from the back of the
list to the front, so strong passages found deep in the list bubble up to the top.

>>> window_schedule(100)[:3], window_schedule(100)[-1], len(window_schedule(100))
([(80, 100), (70, 90), (60, 80)], (0, 20), 9)
>>> window_schedule(25)
[(5, 25), (0, 15)]
>>> window_schedule(7)
[(0, 7)]
"""

from __future__ import annotations

from ._errors import InvalidInputError

__all__ = ["check_window_args", "window_schedule"]


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


def window_schedule(
    num: int, window: int = 20, step: int = 10, *, rank_start: int = 0, rank_end: int | None = None
) -> list[tuple[int, int]]:
    """The official windows over ``num`` candidates, in the order the model is called.

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
    rank_start = max(rank_start, 0)
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
