"""Writers and readers agree (issue 9 §2): what a writer writes reads back as the data, or the writer refuses.

Property-based over every writer/reader pair: write_run / read_run (strict and lenient), write_qrels /
read_qrels, Ranking.to_trec / read_run. Plus the files other tools write: a UTF-8 BOM, lone surrogates in
JSON, deeply nested JSON.
"""

from __future__ import annotations

import gzip
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reasonrank import InvalidInputError, Ranking
from reasonrank._types import RankedPassage
from reasonrank.io import (
    FileFormatError,
    read_corpus,
    read_qrels,
    read_queries,
    read_rankgpt_json,
    read_run,
    write_qrels,
    write_run,
)
from reasonrank.metrics import evaluate

# Ids as users have them: mostly plain, sometimes with whitespace, '#', lone surrogates or nothing at all.
_plain = st.text(st.characters(categories=("L", "N", "P", "S")), min_size=1, max_size=6)
_weird = st.one_of(
    st.text(min_size=1, max_size=4),  # any characters, whitespace included
    _plain.map(lambda s: "#" + s),
    _plain.map(lambda s: s + "\ud800"),
    st.just(""),
    st.integers(-5, 50),
)
_ids = st.one_of(*[_plain] * 8, _weird)
_scores = st.one_of(*[st.floats(allow_nan=False, allow_infinity=False)] * 4, st.floats(), st.integers(-(10**6), 10**6))
_runs = st.dictionaries(_ids, st.dictionaries(_ids, _scores, max_size=5), max_size=4)
_grades = st.one_of(
    *[st.integers(-3, 5)] * 6, st.integers(-1500, 1500), st.floats(-3, 3), st.sampled_from([1.7, 2.0, True])
)
_qrels = st.dictionaries(_ids, st.dictionaries(_ids, _grades, max_size=4), max_size=4)
_valid_ids = _plain.filter(lambda s: not s.startswith("#"))
_FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_METRICS = ["nDCG@10", "RR", "MAP", "P@2"]


def _as_text_keys(mapping: dict) -> dict:
    return {str(q): {str(d): v for d, v in docs.items()} for q, docs in mapping.items()}


@_FAST
@given(run=_runs, sort=st.booleans(), gz=st.booleans())
def test_write_run_then_read_run_gives_the_run_back_or_refuses(run, sort, gz):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("run.trec.gz" if gz else "run.trec")
        try:
            write_run(run, path, sort=sort)
        except InvalidInputError:
            assert not path.exists()  # nothing half-written
            event("refused")
            return
        event("written")
        expected = {q: {d: float(s) for d, s in docs.items()} for q, docs in _as_text_keys(run).items() if docs}
        assert read_run(path) == expected
        assert read_run(path, lenient=True) == expected
        judged = {q: {d: 1 for d in list(docs)[:1]} for q, docs in expected.items()}
        if judged:
            assert evaluate(read_run(path), judged, _METRICS) == evaluate(run, judged, _METRICS)


@_FAST
@given(
    docs=st.dictionaries(_plain, st.floats(-1, 1, allow_nan=False), min_size=1, max_size=6),
    decimals=st.integers(0, 8),
)
def test_rounded_runs_evaluate_as_the_run_in_memory_or_are_refused(docs, decimals):
    run = {"q": docs}
    qrels = {"q": {d: i % 3 for i, d in enumerate(docs)}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.trec"
        try:
            write_run(run, path, decimals=decimals)
        except InvalidInputError as e:
            assert "decimals=None" in str(e)
            event("refused")
            return
        event("written")
        assert evaluate(read_run(path), qrels, _METRICS, per_query=True) == evaluate(
            run, qrels, _METRICS, per_query=True
        )


@_FAST
@given(qrels=_qrels, gz=st.booleans())
def test_write_qrels_then_read_qrels_gives_the_qrels_back_or_refuses(qrels, gz):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("qrels.txt.gz" if gz else "qrels.txt")
        try:
            write_qrels(qrels, path)
        except InvalidInputError:
            assert not path.exists()
            event("refused")
            return
        event("written")
        expected = {q: {d: int(r) for d, r in docs.items()} for q, docs in _as_text_keys(qrels).items() if docs}
        assert read_qrels(path) == expected
        assert all(float(r) == int(r) for docs in qrels.values() for r in docs.values())  # 1.7 never became 1


@_FAST
@given(qid=_ids, tag=_ids, docids=st.lists(_ids, min_size=1, max_size=5, unique_by=str), positional=st.booleans())
def test_ranking_to_trec_then_read_run_gives_the_ranking_back_or_refuses(qid, tag, docids, positional):
    passages = [RankedPassage(d, "text", i, float(len(docids) - i)) for i, d in enumerate(docids)]  # type: ignore[arg-type]
    ranking = Ranking("query", passages[::-1], qid=qid)  # type: ignore[arg-type]
    scores = "positional" if positional else "rank"
    try:
        lines = ranking.to_trec(tag=tag, scores=scores)  # type: ignore[arg-type]
    except InvalidInputError:
        event("refused")
        return
    event("written")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.trec"
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        assert read_run(path) == {qid: ranking.to_run(scores)}  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    run=st.dictionaries(
        _valid_ids,
        st.dictionaries(_valid_ids, st.floats(allow_nan=False, allow_infinity=False), max_size=6),
        max_size=4,
    ),
    qrels=st.dictionaries(_valid_ids, st.dictionaries(_valid_ids, st.integers(-1000, 1000), max_size=4), max_size=4),
)
def test_valid_runs_and_qrels_are_always_written_and_read_back(run, qrels):
    with tempfile.TemporaryDirectory() as tmp:
        write_run(run, Path(tmp) / "run.trec")
        write_qrels(qrels, Path(tmp) / "qrels.txt")
        assert read_run(Path(tmp) / "run.trec") == {q: d for q, d in run.items() if d}
        assert read_qrels(Path(tmp) / "qrels.txt") == {q: d for q, d in qrels.items() if d}
        for qid, docs in run.items():
            if docs:
                lines = Ranking("q", [RankedPassage(d, "t", i, s) for i, (d, s) in enumerate(docs.items())]).to_trec(
                    qid, scores="positional"
                )
                (Path(tmp) / "r.trec").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
                assert list(read_run(Path(tmp) / "r.trec")[qid]) == list(docs)


# ------------------------------------------------------------------------------------------- examples


def test_written_scores_keep_their_order(tmp_path):
    """Issue 9: both scores printed as 0.123456 made the file evaluate b first (RR 0.5 instead of 1.0)."""
    run = {"q1": {"b": 0.1234561, "a": 0.1234564, "c": 0.05}}
    qrels = {"q1": {"a": 1}}
    write_run(run, tmp_path / "run.trec")
    assert evaluate(read_run(tmp_path / "run.trec"), qrels, "RR") == evaluate(run, qrels, "RR") == {"RR": 1.0}
    with pytest.raises(InvalidInputError, match=r"query 'q1': with 6 decimals .* use decimals=None"):
        write_run(run, tmp_path / "six.trec", decimals=6)
    assert not (tmp_path / "six.trec").exists()


@pytest.mark.parametrize(
    ("run", "kwargs", "message"),
    [
        ({"q": {"d": float("nan")}}, {}, "finite number"),
        ({"q": {"d": math.inf}}, {}, "finite number"),
        ({"q": {"d": "1"}}, {}, "finite number"),
        ({"#q": {"d": 1.0}}, {}, "starts with '#'"),
        ({"": {"d": 1.0}}, {}, "empty"),
        ({"q": {"": 1.0}}, {}, "empty"),
        ({"q": {"d": 1.0}}, {"tag": ""}, "tag '' is empty"),
        ({"q": {"d\ud800": 1.0}}, {}, "lone surrogate"),
        ({1: {"d": 1.0}, "1": {"e": 2.0}}, {}, "twice"),
        ({"q": {"d": 1.0}}, {"decimals": -1}, "decimals"),
    ],
)
def test_write_run_refuses_what_readers_would_reject_or_drop(tmp_path, run, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        write_run(run, tmp_path / "run.trec", **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ({"q": {"d": 1.7}}, "integer relevance"),
        ({"q": {"d": "1"}}, "integer relevance"),
        ({"#q": {"d": 1}}, "starts with '#'"),
        ({"q": {"": 1}}, "empty"),
        ({"q": {"d": 2**32 - 1}}, "outside the supported range"),
    ],
)
def test_write_qrels_refuses_what_readers_would_reject(tmp_path, qrels, message):
    with pytest.raises(InvalidInputError, match=message):
        write_qrels(qrels, tmp_path / "qrels.txt")
    assert list(tmp_path.iterdir()) == []
    write_qrels({"q": {"d": 2.0}}, tmp_path / "ok.txt")  # an integral float is that integer
    assert read_qrels(tmp_path / "ok.txt") == {"q": {"d": 2}}


def test_to_trec_refuses_empty_and_comment_fields():
    ranking = Ranking("query", [RankedPassage("d1", "t", 0, 1.0)], qid="q1")
    with pytest.raises(InvalidInputError, match="tag '' is empty"):
        ranking.to_trec(tag="")
    with pytest.raises(InvalidInputError, match="starts with '#'"):
        ranking.to_trec("#q1")
    with pytest.raises(InvalidInputError, match="empty"):
        Ranking("query", [RankedPassage("", "t", 0, 1.0)], qid="q1").to_trec()


# ------------------------------------------------------------------------------- what other tools write

BOM = "\ufeff"


def test_a_byte_order_mark_is_skipped_by_every_reader(tmp_path):
    """Issue 9: a run starting with a BOM read qid '\\ufeffq1', and RR came out 0.0 instead of 0.5."""
    (tmp_path / "run.trec").write_text(BOM + "q1 Q0 d1 1 2.0 r\nq1 Q0 d2 2 1.0 r\n", encoding="utf-8")
    (tmp_path / "qrels.txt").write_text(BOM + "q1 0 d2 1\n", encoding="utf-8")
    run, qrels = read_run(tmp_path / "run.trec"), read_qrels(tmp_path / "qrels.txt")
    assert list(run) == ["q1"] and list(qrels) == ["q1"]
    assert evaluate(run, qrels, "RR") == {"RR": 0.5}
    with gzip.open(tmp_path / "run.trec.gz", "wt", encoding="utf-8") as f:
        f.write(BOM + "q1 Q0 d1 1 2.0 r\n")
    assert read_run(tmp_path / "run.trec.gz") == {"q1": {"d1": 2.0}}

    (tmp_path / "qrels.json").write_text(BOM + '{"q1": {"d2": 1}}', encoding="utf-8")
    assert read_qrels(tmp_path / "qrels.json") == {"q1": {"d2": 1}}
    (tmp_path / "queries.tsv").write_text(BOM + "q1\twhat is it\n", encoding="utf-8")
    assert read_queries(tmp_path / "queries.tsv") == {"q1": "what is it"}
    (tmp_path / "queries.jsonl").write_text(BOM + '{"_id": "q1", "text": "what"}\n', encoding="utf-8")
    assert read_queries(tmp_path / "queries.jsonl") == {"q1": "what"}
    (tmp_path / "corpus.tsv").write_text(BOM + 'd1\t"say ""hi"""\n', encoding="utf-8")
    assert read_corpus(tmp_path / "corpus.tsv")["d1"].text == 'say "hi"'
    (tmp_path / "data.json").write_text(
        BOM + json.dumps([{"query": "q", "hits": [{"qid": "q1", "docid": "d1", "content": "a", "score": 1.0}]}]),
        encoding="utf-8",
    )
    assert read_rankgpt_json(tmp_path / "data.json")[0][0] == "q1"


def test_a_lone_surrogate_in_json_names_the_file_line_and_field(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "d1", "text": "fine \\ud83d\\ude00"}\n{"id": "d2", "text": "bad \\ud800 here"}\n')
    with pytest.raises(FileFormatError, match=r"corpus.jsonl:2: the string at \['text'\] holds a lone surrogate"):
        read_corpus(corpus)
    corpus.write_text('{"id": "d1", "text": "fine \\ud83d\\ude00"}\n')  # a proper pair is one emoji
    assert read_corpus(corpus)["d1"].text == "fine \U0001f600"
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"query": "q", "hits": [{"docid": "d1", "content": "x\ud800", "score": 1.0}]}]))
    with pytest.raises(FileFormatError, match=r"data.json: the string at \[0\]\['hits'\]\[0\]\['content'\]"):
        read_rankgpt_json(data)


def test_deeply_nested_json_is_a_file_format_error(tmp_path):
    for name in ("qrels.json", "data.json"):
        (tmp_path / name).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(FileFormatError, match=r"qrels\.json: JSON nested too deeply"):
        read_qrels(tmp_path / "qrels.json")
    with pytest.raises(FileFormatError, match=r"data\.json: JSON nested too deeply"):
        read_rankgpt_json(tmp_path / "data.json")
    (tmp_path / "q.jsonl").write_text('{"_id": "q1", "text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(FileFormatError, match=r"q.jsonl:1: JSON nested too deeply"):
        read_queries(tmp_path / "q.jsonl")


def test_rankgpt_hits_listing_a_docid_twice_or_a_nan_score_are_refused(tmp_path):
    path = tmp_path / "data.json"
    hits = [{"qid": "q1", "docid": d, "content": d, "score": s} for d, s in (("d1", 3.0), ("d2", 2.0), ("d1", 1.0))]
    path.write_text(json.dumps([{"query": "q", "hits": hits}]))
    with pytest.raises(FileFormatError, match=r"data.json: item 0 \(qid 'q1'\): docid 'd1' is hit 0 and hit 2"):
        read_rankgpt_json(path)
    path.write_text('[{"query": "q", "hits": [{"qid": "q1", "docid": "d1", "content": "a", "score": NaN}]}]')
    with pytest.raises(FileFormatError, match=r"hit 0 \(docid 'd1'\): score nan is not a finite number"):
        read_rankgpt_json(path)


def test_qrels_grades_outside_the_range_name_the_line(tmp_path):
    path = tmp_path / "qrels.txt"
    path.write_text(f"q1 0 d1 1\nq1 0 d2 {2**32 - 1}\n")
    with pytest.raises(FileFormatError, match=r"qrels.txt:2: relevance 4294967295 is outside the supported range"):
        read_qrels(path)
    (tmp_path / "qrels.json").write_text(json.dumps({"q1": {"d1": 2**63}}))
    with pytest.raises(FileFormatError, match=r"query 'q1', docid 'd1': relevance 9223372036854775808 is outside"):
        read_qrels(tmp_path / "qrels.json")
