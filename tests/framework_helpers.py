"""Shared by the framework-integration tests: a fake model whose ranking is easy to predict."""

from __future__ import annotations

import threading

from reasonrank.backends import FakeBackend, GenerationRequest, answer

KEYWORD = "reasonrank"


class KeywordModel:
    """Ranks each window by how often ``KEYWORD`` occurs in a passage (most first; ties keep their order).

    Records every request it saw (with the thread it ran on) so that tests can check what the model read.
    """

    def __init__(self, barrier: threading.Barrier | None = None) -> None:
        self.requests: list[GenerationRequest] = []
        self.threads: set[int] = set()
        self.barrier = barrier
        self._lock = threading.Lock()

    def __call__(self, request: GenerationRequest) -> str:
        with self._lock:
            self.requests.append(request)
            self.threads.add(threading.get_ident())
        if self.barrier is not None:  # proves that calls overlap: a lone caller would time out here
            self.barrier.wait()
        counts = [c.lower().count(KEYWORD) for c in request.contents]
        return answer(sorted(range(len(counts)), key=lambda i: -counts[i]))

    @property
    def contents(self) -> list[str]:
        return [c for r in self.requests for c in r.contents]


def keyword_backend(barrier: threading.Barrier | None = None) -> tuple[FakeBackend, KeywordModel]:
    model = KeywordModel(barrier)
    return FakeBackend(model), model


# Six short texts; how often each mentions the keyword (0, 2, 1, 0, 3, 4 times) fixes the expected order.
TEXTS = [
    "Paris is the capital of France.",
    "reasonrank reranks passages with reasoning; reasonrank writes a chain of thought.",
    "reasonrank is a listwise reranker.",
    "Bananas are rich in potassium.",
    "reasonrank reasonrank reasonrank: sliding windows over the candidates.",
    "reasonrank, reasonrank and reasonrank again, and reasonrank once more.",
]
EXPECTED = [5, 4, 1, 2, 0, 3]  # input positions, best first
