"""A backend that answers from a Python function: for tests, docs and users' own tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ._base import Backend, Generation, GenerationRequest

__all__ = ["FakeBackend", "answer"]

Responder = Callable[[GenerationRequest], "str | Generation"]


def answer(order: Sequence[int], reasoning: str = "fake reasoning") -> str:
    """A well-formed ReasonRank output for a 0-based ``order``.

    Examples:
        >>> answer([1, 0])
        '<think>fake reasoning</think> <answer>[2] > [1]</answer>'
    """
    ranked = " > ".join(f"[{i + 1}]" for i in order)
    return f"<think>{reasoning}</think> <answer>{ranked}</answer>"


def _keep_order(request: GenerationRequest) -> str:
    return answer(range(len(request.docids)))


class FakeBackend(Backend):
    """Answers each request with ``responder(request)`` (a string or a :class:`Generation`).

    Every batch it receives is recorded in ``calls`` (``record=False`` keeps no history, for long runs:
    ``calls`` stays empty and ``num_requests`` still counts). The default responder keeps each window's order.

    Examples:
        >>> from reasonrank import Reranker
        >>> reverse = FakeBackend(lambda req: answer(reversed(range(len(req.docids)))))
        >>> Reranker(reverse, progress=False).rerank("q", ["a", "b", "c"]).docids
        ['2', '1', '0']
    """

    name = "fake"

    def __init__(self, responder: Responder | None = None, *, record: bool = True) -> None:
        self.responder: Responder = responder or _keep_order
        self.record = record
        self.calls: list[list[GenerationRequest]] = []
        self._requests = 0

    @property
    def num_requests(self) -> int:
        return sum(len(batch) for batch in self.calls) if self.record else self._requests

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        self._requests += len(requests)
        if self.record:
            self.calls.append(list(requests))
        out = []
        for request in requests:
            result = self.responder(request)
            out.append(result if isinstance(result, Generation) else Generation(result, finish_reason="stop"))
        return out
