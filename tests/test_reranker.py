"""Reranker behaviour with the fake backend: batching, bookkeeping, bad input, failures."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonrank import (
    BackendError,
    InvalidInputError,
    Passage,
    PassageTypeError,
    Reranker,
    SamplingParams,
    UnknownNameError,
    WindowFailedError,
)
from reasonrank.backends import Backend, FakeBackend, Generation, answer


def reverse_backend() -> FakeBackend:
    return FakeBackend(lambda req: answer(list(reversed(range(len(req.docids))))))


def passages(n: int, prefix: str = "d") -> list[dict]:
    return [{"docid": f"{prefix}{i}", "text": f"passage {i}", "score": float(100 - i)} for i in range(n)]


def test_rerank_keeps_every_passage_and_records_windows():
    r = Reranker(reverse_backend(), progress=False).rerank("q", passages(100), qid="q1")
    assert sorted(r.docids) == sorted(f"d{i}" for i in range(100)) and len(r) == 100
    assert [(w.start, w.end) for w in r.windows] == [(s, s + 20) for s in range(80, -1, -10)]
    assert r.qid == "q1" and r.query == "q"
    # each window's docids are what the model saw, and its order is what was applied
    w = r.windows[0]
    assert w.docids == tuple(f"d{i}" for i in range(80, 100)) and w.order == tuple(range(19, -1, -1))
    assert w.reasoning == "fake reasoning" and w.repairs == () and w.seconds is not None


def test_rerank_batch_sends_each_round_in_one_call():
    backend = reverse_backend()
    reranker = Reranker(backend, progress=False)
    rankings = reranker.rerank_batch(["a", "b", "c"], [passages(100), passages(30), passages(5)])
    # rounds: query a has 9 windows, b has 2, c has 1 -> 9 backend calls, first has 3 requests
    assert [len(batch) for batch in backend.calls] == [3, 2] + [1] * 7
    assert [len(r.windows) for r in rankings] == [9, 2, 1]
    assert {req.query for req in backend.calls[0]} == {"a", "b", "c"}


def test_top_k_reranks_only_the_head():
    r = Reranker(reverse_backend(), progress=False).rerank("q", passages(50), top_k=15)
    assert [(w.start, w.end) for w in r.windows] == [(0, 15)]
    assert r.docids[:15] == [f"d{i}" for i in range(14, -1, -1)]
    assert r.docids[15:] == [f"d{i}" for i in range(15, 50)]


def test_top_k_larger_than_list_is_clamped_as_official():
    r = Reranker(reverse_backend(), progress=False).rerank("q", passages(12), top_k=100)
    assert [(w.start, w.end) for w in r.windows] == [(0, 12)]


def test_single_passage_needs_no_model_call():
    backend = reverse_backend()
    r = Reranker(backend, progress=False).rerank("q", ["only one"])
    assert r.docids == ["0"] and backend.calls == [] and r.windows == []


def test_passage_inputs_of_all_kinds():
    items = ["plain string", {"contents": "mapping", "id": "m1", "score": 1}, Passage("object", docid="p1", title="T")]
    r = Reranker(reverse_backend(), progress=False).rerank("q", items)
    assert r.docids == ["p1", "m1", "0"]
    assert [p.index for p in r] == [2, 1, 0]
    assert r[0].title == "T" and r[1].score == 1.0


def test_unparseable_window_keeps_its_order_and_says_why():
    backend = FakeBackend(lambda req: "I cannot decide.")
    r = Reranker(backend, progress=False).rerank("q", passages(5))
    assert r.docids == [f"d{i}" for i in range(5)]
    assert [x.kind for x in r.windows[0].repairs] == ["no_answer", "missing"]


def test_strict_mode_raises_parse_errors():
    from reasonrank import ParseError

    with pytest.raises(ParseError):
        Reranker(FakeBackend(lambda req: "nothing"), strict=True, progress=False).rerank("q", passages(3))


def test_prompts_are_kept_on_request():
    r = Reranker(FakeBackend(), keep_prompts=True, progress=False).rerank("q", passages(3))
    assert r.windows[0].prompt.startswith("<|im_start|>system\nYou are RankLLM")
    assert Reranker(FakeBackend(), progress=False).rerank("q", passages(3)).windows[0].prompt is None


class Exploding(Backend):
    name = "exploding"

    def __init__(self, fail_on_call: int, partial: int = 0):
        self.fail_on_call, self.partial, self.calls = fail_on_call, partial, 0

    def generate(self, requests):  # pragma: no cover - stream is used
        raise AssertionError

    def stream(self, requests):
        self.calls += 1
        for i, req in enumerate(requests):
            if self.calls == self.fail_on_call and i >= self.partial:
                raise ConnectionError("server went away")
            yield i, Generation(answer(range(len(req.docids))))


def test_backend_failure_names_query_and_windows():
    with pytest.raises(WindowFailedError) as e:
        Reranker(Exploding(fail_on_call=2, partial=1), progress=False).rerank_batch(
            ["qa", "qb", "qc"], [passages(30), passages(30), passages(30)], qids=["A", "B", "C"]
        )
    err = e.value
    assert isinstance(err, BackendError) and isinstance(err.__cause__, ConnectionError)
    assert err.failed == (("B", (0, 20)), ("C", (0, 20)))
    assert err.completed == 1 and err.qid == "B" and err.window == (0, 20)
    assert "round 1" in str(err) and "server went away" in str(err) and "B [0, 20]" in str(err)


def test_backend_returning_wrong_things_is_reported():
    class Short(Backend):
        def generate(self, requests):
            return [Generation("x")] * (len(requests) - 1)

    with pytest.raises(BackendError, match="no result"):
        Reranker(Short(), progress=False).rerank_batch(["a", "b"], [passages(3), passages(3)])

    class NotAGeneration(Backend):
        def generate(self, requests):
            return ["[1] > [2]"] * len(requests)

    with pytest.raises(BackendError, match="expected a Generation"):
        Reranker(NotAGeneration(), progress=False).rerank("q", passages(2))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"window": 1}, "window must be an int >= 2"),
        ({"step": 0}, "step must be an int >= 1"),
        ({"window": 10, "step": 10}, "must be smaller than window"),
        ({"window": 5, "step": 7}, "must be smaller than window"),
        ({"top_k": 0}, "top_k must be an int >= 1"),
        ({"top_k": 2.5}, "top_k must be an int >= 1"),
        ({"window": "20"}, "window must be an int"),
    ],
)
def test_bad_window_arguments(kwargs, words):
    with pytest.raises(InvalidInputError, match=words):
        Reranker(FakeBackend(), progress=False).rerank("q", passages(3), **kwargs)


def test_bad_queries_and_passages():
    rr = Reranker(FakeBackend(), progress=False)
    with pytest.raises(InvalidInputError, match="query is empty"):
        rr.rerank("  ", passages(3))
    with pytest.raises(InvalidInputError, match="query must be a str"):
        rr.rerank(None, passages(3))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="no passages"):
        rr.rerank("q", [])
    with pytest.raises(InvalidInputError, match="query 1: passage 2 has no text"):
        rr.rerank_batch(["a", "b"], [passages(3), [{"text": "x"}, {"text": "y"}, {"title": "z"}]])
    with pytest.raises(PassageTypeError, match="passage 0: 'text' must be a str"):
        rr.rerank("q", [{"text": 3}])
    with pytest.raises(InvalidInputError, match="2 queries but 1 passage lists"):
        rr.rerank_batch(["a", "b"], [passages(3)])
    with pytest.raises(InvalidInputError, match="use rerank"):
        rr.rerank_batch("a", [passages(3)])
    with pytest.raises(InvalidInputError, match="qids"):
        rr.rerank_batch(["a"], [passages(3)], qids=["x", "y"])


def test_constructor_errors():
    with pytest.raises(UnknownNameError, match="fake"):
        Reranker("nope")
    with pytest.raises(UnknownNameError, match="reasonrank-qwen3"):
        Reranker(FakeBackend(), template="nope")
    with pytest.raises(InvalidInputError, match="needs a tokenizer"):
        Reranker(FakeBackend(), max_passage_tokens=100)
    with pytest.raises(InvalidInputError, match="backend options only apply"):
        Reranker(FakeBackend(), batch_size=4)
    with pytest.raises(InvalidInputError, match="must be a reasonrank Backend"):
        Reranker(object())  # type: ignore[arg-type]
    assert isinstance(Reranker("fake").backend, FakeBackend)


def test_from_pretrained_needs_template_for_unknown_models():
    with pytest.raises(InvalidInputError, match="pass template="):
        Reranker.from_pretrained("someone/some-model", backend="fake")
    with pytest.raises(InvalidInputError, match="cannot load models by name"):
        Reranker.from_pretrained("someone/some-model", backend="fake", template="reasonrank")


def test_from_pretrained_applies_presets_and_overrides():
    from reasonrank.backends import register_backend

    loaded = {}

    class Loader(FakeBackend):
        @classmethod
        def from_pretrained(cls, model, **options):
            loaded.update(options, model=model)
            return cls()

    register_backend("loader-test", Loader)
    with pytest.warns(UserWarning, match="no tokenizer"):
        r = Reranker.from_pretrained("liuwenhan/reasonrank-8B", backend="loader-test", max_tokens=100, device="cpu")
    assert r.template.name == "reasonrank-qwen3"
    assert r.sampling == SamplingParams(temperature=0.6, top_p=0.95, top_k=20, max_tokens=100)
    assert loaded == {"model": "liuwenhan/reasonrank-8B", "device": "cpu"}
    with pytest.warns(UserWarning, match="no tokenizer, so passages are not truncated to 512 tokens"):
        r7 = Reranker.from_pretrained("/models/reasonrank-7B", backend="loader-test", progress=False)
    assert r7.template.name == "reasonrank" and r7.sampling.greedy and r7.sampling.max_tokens == 3172


def test_sampling_reaches_the_backend():
    backend = FakeBackend()
    Reranker(backend, sampling=SamplingParams(max_tokens=77), progress=False).rerank("q", passages(3))
    assert backend.calls[0][0].sampling.max_tokens == 77
    # rankgpt decodes exactly the length of "[1] > ... > [n]" (official rank_GPT mode)
    backend = FakeBackend(lambda req: "[2] > [1] > [3]")
    Reranker(backend, template="rankgpt", progress=False).rerank("q", passages(3))
    s = backend.calls[0][0].sampling
    assert s.max_tokens == s.min_tokens == 15


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 130), min_size=1, max_size=4),
    window=st.integers(2, 25),
    data=st.data(),
    seed=st.integers(0, 10**6),
)
def test_no_passage_is_ever_lost_or_duplicated(sizes, window, data, seed):
    step = data.draw(st.integers(1, window - 1))
    rng = random.Random(seed)

    def chaotic(req):
        n = len(req.docids)
        ids = [rng.randint(-2, n + 3) for _ in range(rng.randint(0, 2 * n))]
        return rng.choice(["", "<think>x</think><answer>", "<answer>"]) + " > ".join(f"[{i}]" for i in ids)

    rankings = Reranker(FakeBackend(chaotic), progress=False).rerank_batch(
        [f"q{i}" for i in range(len(sizes))],
        [passages(n, f"q{i}-") for i, n in enumerate(sizes)],
        window=window,
        step=step,
    )
    for n, r in zip(sizes, rankings):
        assert sorted(p.index for p in r) == list(range(n))
        assert len(set(r.docids)) == n


def test_tokenizer_by_name_is_loaded(qwen25_tokenizer):
    from conftest import _qwen_tokenizer_dir

    r = Reranker(FakeBackend(), tokenizer=_qwen_tokenizer_dir(), progress=False)
    assert type(r.tokenizer).__name__ == type(qwen25_tokenizer).__name__
    assert r.max_passage_tokens == 512  # a tokenizer enables the template's default truncation


def test_progress_bar_counts_windows_as_they_stream(capsys):
    Reranker(reverse_backend(), progress=True).rerank("q", passages(30))
    err = capsys.readouterr().err
    assert "windows" in err and "2/2" in err
