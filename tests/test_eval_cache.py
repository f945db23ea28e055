"""CachedBackend: write-as-you-go, replay, torn lines, wrong model, locking, failures mid-stream."""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Iterator, Sequence

import pytest

from reasonrank import InvalidInputError, ReasonRankError, SamplingParams
from reasonrank.backends import Backend, FakeBackend, Generation, GenerationRequest
from reasonrank.cache import CachedBackend


def _request(prompt: str, max_tokens: int = 16) -> GenerationRequest:
    return GenerationRequest(prompt, (), SamplingParams(max_tokens=max_tokens), key=f"window {prompt}")


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[1:]]


class Streaming(Backend):
    """Yields one result at a time and lets the test look at the cache file between results."""

    name = "streaming"

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[str] = []
        self.fail_after = fail_after
        self.between: list[int] = []  # cache records on disk when each result is about to be yielded
        self.cache_path = None

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        return [g for _, g in self.stream(requests)]

    def stream(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Generation]]:
        for i, request in enumerate(requests):
            if self.fail_after is not None and len(self.calls) >= self.fail_after:
                raise RuntimeError("server went away")
            self.calls.append(request.prompt)
            if self.cache_path is not None:
                self.between.append(len(_records(self.cache_path)))
            yield i, Generation(f"out {request.prompt}", output_tokens=3, prompt_tokens=7, finish_reason="stop")


def test_generations_are_stored_as_they_arrive_and_replayed(tmp_path):
    path = tmp_path / "cache.jsonl"
    inner = Streaming()
    inner.cache_path = path
    with CachedBackend(inner, path, model_id="m") as cached:
        out = cached.generate([_request("a"), _request("b"), _request("c")])
    assert [g.text for g in out] == ["out a", "out b", "out c"]
    assert inner.between == [0, 1, 2]  # each result was on disk before the next one was produced
    assert (cached.hits, cached.misses) == (0, 3)
    header = json.loads(path.read_text().splitlines()[0])
    assert header == {"format": "reasonrank-generation-cache", "version": 1, "model_id": "m"}
    assert [r["text"] for r in _records(path)] == ["out a", "out b", "out c"]
    assert _records(path)[0]["window"] == "window a" and _records(path)[0]["output_tokens"] == 3

    inner2 = Streaming()
    with CachedBackend(inner2, path, model_id="m") as cached:
        out = cached.generate([_request("c"), _request("d"), _request("a")])
        assert (cached.hits, cached.misses) == (2, 1)
    assert inner2.calls == ["d"]  # only the new prompt reached the model
    assert [g.text for g in out] == ["out c", "out d", "out a"]
    assert out[0] == Generation("out c", output_tokens=3, prompt_tokens=7, finish_reason="stop")
    assert out[0].seconds is not None and out[0].seconds >= 0  # the time recorded when it was generated


def test_keys_cover_sampling_and_model(tmp_path):
    inner = Streaming()
    with CachedBackend(inner, tmp_path / "c.jsonl", model_id="m") as cached:
        cached.generate([_request("a", max_tokens=16), _request("a", max_tokens=32)])
        assert cached.key("a", SamplingParams(max_tokens=16)) != cached.key("a", SamplingParams(max_tokens=32))
    assert inner.calls == ["a", "a"]
    with CachedBackend(Streaming(), tmp_path / "other.jsonl", model_id="m2") as other:
        assert other.key("a", SamplingParams(max_tokens=16)) != cached.key("a", SamplingParams(max_tokens=16))


def test_identical_requests_in_one_batch_reach_the_model_once(tmp_path):
    inner = FakeBackend(lambda r: "[1]")
    with CachedBackend(inner, tmp_path / "c.jsonl", model_id="m") as cached:
        out = cached.generate([_request("same"), _request("same"), _request("other")])
        assert [g.text for g in out] == ["[1]"] * 3 and (cached.misses, cached.hits) == (2, 1)
    assert inner.num_requests == 2


def test_a_torn_last_line_is_dropped_and_recomputed(tmp_path, caplog):
    path = tmp_path / "cache.jsonl"
    with CachedBackend(Streaming(), path, model_id="m") as cached:
        cached.generate([_request("a"), _request("b")])
    intact = path.read_bytes()
    last = intact.rstrip(b"\n").rsplit(b"\n", 1)[1]
    path.write_bytes(intact[: len(intact) - len(last) - 1] + last[:25])  # "b" cut mid-write, as by kill -9
    inner = Streaming()
    with caplog.at_level(logging.WARNING), CachedBackend(inner, path, model_id="m") as cached:
        assert len(cached) == 1
        cached.generate([_request("a"), _request("b")])
    assert "incomplete last line" in caplog.text
    assert inner.calls == ["b"]
    assert [r["text"] for r in _records(path)] == ["out a", "out b"]  # the file is whole again
    assert path.read_bytes().count(b"\n") == intact.count(b"\n") == 3  # header + a + b, each complete


def test_a_torn_header_starts_a_fresh_cache(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_bytes(b'{"format": "reasonrank-gen')
    with CachedBackend(Streaming(), path, model_id="m") as cached:
        cached.generate([_request("a")])
    assert json.loads(path.read_text().splitlines()[0])["model_id"] == "m"


def test_refusals(tmp_path):
    path = tmp_path / "cache.jsonl"
    with CachedBackend(Streaming(), path, model_id="model-a") as cached:
        cached.generate([_request("a")])
        with pytest.raises(InvalidInputError, match="in use by another process"):
            CachedBackend(Streaming(), path, model_id="model-a")
    with pytest.raises(InvalidInputError, match="holds generations of model 'model-a', not 'model-b'"):
        CachedBackend(Streaming(), path, model_id="model-b")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(["{not json", lines[1]]) + "\n")
    with pytest.raises(InvalidInputError, match=r"cache.jsonl:1: the cache header is corrupted"):
        CachedBackend(Streaming(), path, model_id="model-a")
    (tmp_path / "notes.jsonl").write_text('{"hello": 1}\n')
    with pytest.raises(InvalidInputError, match="not a reasonrank generation cache"):
        CachedBackend(Streaming(), tmp_path / "notes.jsonl", model_id="model-a")
    with pytest.raises(InvalidInputError, match="model_id"):
        CachedBackend(Streaming(), tmp_path / "x.jsonl", model_id="")


def test_results_before_a_backend_failure_are_kept(tmp_path):
    path = tmp_path / "cache.jsonl"
    with CachedBackend(Streaming(fail_after=2), path, model_id="m") as cached:
        got = []
        with pytest.raises(RuntimeError, match="server went away"):
            for i, generation in cached.stream([_request("a"), _request("b"), _request("c")]):
                got.append((i, generation.text))
    assert got == [(0, "out a"), (1, "out b")]
    inner = Streaming()
    with CachedBackend(inner, path, model_id="m") as cached:
        cached.generate([_request("a"), _request("b"), _request("c")])
    assert inner.calls == ["c"]


def test_wrapper_passes_tokenizer_and_close(tmp_path):
    class WithTokenizer(FakeBackend):
        closed = False

        @property
        def tokenizer(self):
            return "tok"

        def close(self) -> None:
            self.closed = True

    inner = WithTokenizer()
    cached = CachedBackend(inner, tmp_path / "c.jsonl", model_id="m")
    assert cached.tokenizer == "tok"
    cached.close(inner=False)
    assert not inner.closed
    cached = CachedBackend(inner, tmp_path / "c.jsonl", model_id="m")  # the lock was released
    cached.close()
    assert inner.closed
    with pytest.raises(InvalidInputError, match="closed"):
        cached.generate([_request("new")])


# ------------------------------------------------------------------------------------- issue 9: bad records


def _full_disk_once(monkeypatch):
    """The next os.write in the cache writes half its bytes, then the disk is full."""
    real_write = os.write
    state = {"armed": True}

    def write(fd, data):
        if state["armed"]:
            state["armed"] = False
            real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr("reasonrank.cache.os.write", write)


def test_a_write_cut_short_by_a_full_disk_leaves_no_torn_line(tmp_path, monkeypatch):
    path = tmp_path / "cache.jsonl"
    with CachedBackend(Streaming(), path, model_id="m") as cached:
        cached.generate([_request("a")])
        _full_disk_once(monkeypatch)
        with pytest.raises(ReasonRankError, match=r"could not write to the cache .*1 generations stored before are"):
            cached.generate([_request("b")])
        cached.generate([_request("c")])  # space again: the append starts on a line of its own
    inner = Streaming()
    with CachedBackend(inner, path, model_id="m") as cached:
        cached.generate([_request("a"), _request("b"), _request("c")])
    assert inner.calls == ["b"]
    assert [r["text"] for r in _records(path)] == ["out a", "out c", "out b"]


def test_a_torn_tail_is_cut_before_appending(tmp_path, caplog):
    path = tmp_path / "cache.jsonl"
    with CachedBackend(Streaming(), path, model_id="m") as cached:
        cached.generate([_request("a")])
        os.write(cached._fd, b'{"key": "x", "te')  # as if truncating a failed write failed too
        with caplog.at_level(logging.WARNING):
            cached.generate([_request("b")])
    assert "cut off an incomplete last line" in caplog.text
    assert [r["text"] for r in _records(path)] == ["out a", "out b"]


def test_malformed_records_are_reported_by_line_and_only_their_windows_regenerated(tmp_path, caplog):
    path = tmp_path / "cache.jsonl"
    with CachedBackend(Streaming(), path, model_id="m") as cached:
        cached.generate([_request(p) for p in "abcde"])
    lines = path.read_text(encoding="utf-8").splitlines()
    b, c, d = (json.loads(line) for line in lines[2:5])
    lines[2] = json.dumps(dict(b, text=None))  # "text": null is the cache's fault, not the backend's
    lines[3] = "{not json"
    lines[4] = json.dumps(dict(d, output_tokens="12", extra=1))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    inner = Streaming()
    with caplog.at_level(logging.WARNING), CachedBackend(inner, path, model_id="m") as cached:
        assert len(cached) == 2
        out = cached.generate([_request(p) for p in "abcde"])
    assert "skipped 3 malformed record(s)" in caplog.text
    assert "line 3: 'text' must be a string, got None" in caplog.text
    assert "line 4: not JSON" in caplog.text and "line 5: unknown field(s) extra" in caplog.text
    assert inner.calls == ["b", "c", "d"]
    assert [g.text for g in out] == [f"out {p}" for p in "abcde"]
    assert c["key"] == cached.request_key(_request("c"))


def test_outputs_with_lone_surrogates_are_stored_and_replayed_exactly(tmp_path):
    text = "[2] > [1] \ud800 and \u00e9"
    path = tmp_path / "cache.jsonl"
    with CachedBackend(FakeBackend(lambda r: text), path, model_id="m") as cached:
        assert cached.generate([_request("a\udfff")])[0].text == text
    path.read_bytes().decode("utf-8")  # the file is valid UTF-8
    inner = FakeBackend(lambda r: "other")
    with CachedBackend(inner, path, model_id="m") as cached:
        assert cached.generate([_request("a\udfff")])[0].text == text
    assert inner.num_requests == 0


def test_a_backend_can_add_what_else_its_answers_depend_on_to_the_key(tmp_path):
    class Graded(FakeBackend):
        grades = "1"

        def cache_context(self, request):
            return self.grades

    inner = Graded(lambda r: f"grades {inner.grades}")
    with CachedBackend(inner, tmp_path / "c.jsonl", model_id="m") as cached:
        assert cached.generate([_request("a")])[0].text == "grades 1"
        inner.grades = "2"
        assert cached.generate([_request("a")])[0].text == "grades 2"
        inner.grades = "1"
        assert cached.generate([_request("a")])[0].text == "grades 1"
    assert inner.num_requests == 2
