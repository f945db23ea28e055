"""Teacher synthesis through a backend, resumable through the generation cache, filtered for self-consistency."""

from __future__ import annotations

import re

import pytest

from reasonrank import Passage
from reasonrank.backends import FakeBackend, GenerationRequest
from reasonrank.cli import main
from reasonrank.train import TrainingList, load_reasonrank_jsonl, synthesize


def teacher(request: GenerationRequest) -> str:
    """A fake teacher: a passage is relevant when it mentions 'moon'; its ranking puts those first."""
    if len(request.docids) == 1:  # a pointwise question
        verdict = "yes" if "moon" in request.prompt.split("Passage:")[1] else "no"
        return f"<think>checking</think><answer>{verdict}</answer>"
    texts = re.findall(r"^\[(\d+)\] (.*)$", request.prompt, re.MULTILINE)
    order = sorted(range(len(texts)), key=lambda i: "moon" not in texts[i][1])
    return "<think>moon passages first</think> <answer>" + " > ".join(f"[{i + 1}]" for i in order) + "</answer>"


def lists() -> list[TrainingList]:
    a = TrainingList(
        "q1",
        "tides",
        [Passage("the sun", docid="a1"), Passage("the moon pulls", docid="a2"), Passage("rocks", docid="a3")],
        dataset="earth",
    )
    b = TrainingList(
        "q2",
        "sky",
        [Passage(f"text {i}", docid=f"b{i}") for i in range(1, 10)],
        dataset="earth",
        relevant_docids=["b9"],
    )  # gold given: no pointwise questions; the teacher ranks it 9th
    return [a, b]


def test_synthesize_labels_ranks_and_filters(tmp_path):
    fake = FakeBackend(teacher)
    kept, report = synthesize(lists(), fake, progress=False, alpha=0.4, inclusive=False)
    assert fake.num_requests == 3 + 2  # 3 labels for q1 (q2 has gold), 2 rankings
    assert [x.qid for x in kept] == ["q1"]
    assert kept[0].relevant_docids == ["a2"]
    assert kept[0].final_list == ["a2", "a1", "a3"]
    assert kept[0].reasoning == "moon passages first"
    assert report is not None and report.per_dataset == {"earth": (1, 2)}


def test_synthesize_resumes_from_the_cache(tmp_path):
    cache = tmp_path / "teacher.jsonl"
    calls = []

    def flaky(request):
        calls.append(request.key)
        if len(calls) == 4:
            raise RuntimeError("server went away")
        return teacher(request)

    with pytest.raises(RuntimeError, match="server went away"):
        synthesize(lists(), FakeBackend(flaky), cache=cache, model_id="fake-r1", progress=False)
    first = len(calls)
    fake = FakeBackend(teacher)
    kept, _ = synthesize(lists(), fake, cache=cache, model_id="fake-r1", progress=False)
    assert first == 4
    assert fake.num_requests == 5 - 3  # the three answers before the failure came from the cache
    assert [x.qid for x in kept] == ["q1"]


def test_synthesize_command_writes_a_loadable_layout(tmp_path, monkeypatch, capsys):
    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\ttides\n")
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("a1\tthe sun\na2\tthe moon pulls\na3\trocks\n")
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 a1 1 3.0 bm25\nq1 Q0 a2 2 2.0 bm25\nq1 Q0 a3 3 1.0 bm25\n")
    import reasonrank.backends as backends

    monkeypatch.setattr(backends, "get_backend_class", lambda name: lambda **kw: FakeBackend(teacher))
    out = tmp_path / "out" / "training_data_all.jsonl"
    assert (
        main(
            [
                "train",
                "synthesize",
                "--queries",
                str(queries),
                "--run",
                str(run),
                "--corpus",
                str(corpus),
                "--model",
                "r1",
                "--output",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "1 lists written" in capsys.readouterr().out
    (item,) = load_reasonrank_jsonl(out)
    assert item.final_list == ["a2", "a1", "a3"] and item.query == "tides"
