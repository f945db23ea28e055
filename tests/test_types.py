from __future__ import annotations

import pytest

from reasonrank import (
    InvalidInputError,
    Passage,
    PassageTypeError,
    RankedPassage,
    Ranking,
    SamplingParams,
    WindowTrace,
)
from reasonrank._types import as_passage, as_passages


def test_mapping_keys_follow_official_priority():
    assert as_passage({"text": "t", "contents": "c"}).text == "t"
    assert as_passage({"segment": "s", "contents": "c"}).text == "s"
    assert as_passage({"contents": "c", "body": "b"}).text == "c"
    assert as_passage({"body": "b", "passage": "p"}).text == "b"
    assert as_passage({"passage": "p"}).text == "p"
    assert as_passage({"content": "rankgpt style"}).text == "rankgpt style"
    # key presence wins even when the value is empty, as in the official code
    assert as_passage({"text": "", "contents": "c"}).text == ""


def test_mapping_keeps_everything_else():
    p = as_passage({"_id": 3, "text": "x", "title": "T", "score": 2, "url": "u", "lang": "en"})
    assert (p.docid, p.title, p.score) == ("3", "T", 2.0)
    assert p.metadata == {"url": "u", "lang": "en"}


@pytest.mark.parametrize(
    "bad, error, words",
    [
        ({"title": "only a title"}, InvalidInputError, "has no text"),
        ({"text": 5}, PassageTypeError, "must be a str"),
        ({"text": None}, PassageTypeError, "must be a str"),
        ({"text": "x", "title": 3}, PassageTypeError, "'title' must be a str"),
        ({"text": "x", "score": "high"}, PassageTypeError, "score must be a number"),
        ({"text": "x", "docid": 1.5}, PassageTypeError, "docid must be a str or int"),
        (b"bytes", PassageTypeError, "pass a str"),
        (42, PassageTypeError, "pass a str"),
    ],
)
def test_bad_passages_say_what_to_fix(bad, error, words):
    with pytest.raises(error) as e:
        as_passage(bad, 7)
    assert words in str(e.value) and "passage 7" in str(e.value)


def test_passage_list_must_be_a_list():
    with pytest.raises(PassageTypeError, match="wrap a single passage in a list"):
        as_passages("just one string")
    with pytest.raises(PassageTypeError):
        as_passages({"text": "a mapping"})


def test_sampling_params_validate():
    assert SamplingParams().greedy
    assert not SamplingParams(temperature=0.6).greedy
    for kwargs in ({"temperature": -1}, {"top_p": 0}, {"max_tokens": 0}, {"min_tokens": 5, "max_tokens": 4}):
        with pytest.raises(InvalidInputError):
            SamplingParams(**kwargs)


def _ranking() -> Ranking:
    passages = [
        RankedPassage("b", "B text", 1, 9.5, None, {"url": "u"}),
        RankedPassage("c", "C text", 2, 9.5),
        RankedPassage("a", "A text", 0, 10.0, "Title A"),
    ]
    trace = WindowTrace(0, 0, 3, ("a", "b", "c"), "<think>r</think><answer>[2] > [3]</answer>", (1, 2, 0))
    return Ranking("the query", passages, [trace], qid="q1")


def test_ranking_scores_conventions():
    r = _ranking()
    assert r.scores("rank") == [3.0, 2.0, 1.0]
    # positional: input scores stay with positions (official), docs move
    assert r.scores("positional") == [10.0, 9.5, 9.5]
    assert r.to_run() == {"b": 3.0, "c": 2.0, "a": 1.0}
    with pytest.raises(InvalidInputError):
        r.scores("bogus")  # type: ignore[arg-type]


def test_positional_scores_need_input_scores():
    r = Ranking("q", [RankedPassage("a", "A", 0)])
    with pytest.raises(InvalidInputError, match="scores='rank'"):
        r.scores("positional")


def test_trec_lines():
    r = _ranking()
    assert r.to_trec(tag="run1", scores="positional") == [
        "q1 Q0 b 1 10.000000 run1",
        "q1 Q0 c 2 9.500000 run1",
        "q1 Q0 a 3 9.500000 run1",
    ]
    with pytest.raises(InvalidInputError, match="pass one"):
        Ranking("q", r.passages).to_trec()
    bad = Ranking("q", [RankedPassage("has space", "x", 0)], qid="q")
    with pytest.raises(InvalidInputError, match="whitespace"):
        bad.to_trec()


def test_ranking_json_round_trip():
    r = _ranking()
    again = Ranking.from_json(r.to_json())
    assert again == r
    assert again.passages[0].metadata == {"url": "u"}
    assert again.windows[0].order == (1, 2, 0)


# ----------------------------------------------------------------------------------------------- issue 9 §6, §7


def test_a_stop_string_is_one_stop_string_not_its_characters():
    assert SamplingParams(stop="</answer>").stop == ("</answer>",)
    assert SamplingParams(stop=["</answer>", "\n\n"]).stop == ("</answer>", "\n\n")  # a list becomes a (hashable) tuple
    hash(SamplingParams(stop=["x"]))  # the HF backend groups requests by their SamplingParams
    for bad in (["</answer>", 1], [""], b"</answer>", 5):
        with pytest.raises(InvalidInputError, match="stop"):
            SamplingParams(stop=bad)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"max_tokens": "5"}, "max_tokens must be an int"),
        ({"max_tokens": 1.5}, "max_tokens must be an int"),
        ({"max_tokens": True}, "max_tokens must be an int"),
        ({"min_tokens": 2.0}, "min_tokens must be an int"),
        ({"top_k": "20"}, "top_k must be an int"),
        ({"top_k": -2}, "top_k must be >= 1"),
        ({"seed": 1.5}, "seed must be an int"),
        ({"temperature": "0.6"}, "temperature must be a finite number"),
        ({"temperature": float("nan")}, "temperature must be a finite number"),
        ({"top_p": float("inf")}, "top_p must be a finite number"),
        ({"min_p": 2}, "min_p must be in"),
        ({"repetition_penalty": 0}, "repetition_penalty must be > 0"),
    ],
)
def test_sampling_fields_have_their_types_checked(kwargs, words):
    with pytest.raises(InvalidInputError, match=words):
        SamplingParams(**kwargs)


def test_passage_checks_at_construction_and_coerces_int_docids():
    p = Passage("a", docid=5)
    assert p.docid == "5" and p == Passage("a", docid="5")
    ranking = Ranking("q", [RankedPassage.from_passage(p, 0)], qid="q1")
    assert ranking.to_trec() == ["q1 Q0 5 1 1.000000 reasonrank"]
    for kwargs, words in (
        ({"text": None}, "text must be a str"),
        ({"text": "a", "docid": 1.5}, "docid must be a str or int"),
        ({"text": "a", "docid": True}, "docid must be a str or int"),
        ({"text": "a", "title": 3}, "title must be a str"),
        ({"text": "a", "score": "high"}, "score must be a number"),
        ({"text": "a", "metadata": 3}, "metadata must be a mapping"),
    ):
        with pytest.raises(PassageTypeError, match=words):
            Passage(**kwargs)


def test_trec_lines_never_repeat_a_docid():
    ranking = Ranking("q", [RankedPassage("d1", "a", 0), RankedPassage("d1", "b", 1)], qid="q1")
    with pytest.raises(InvalidInputError, match="appears twice"):
        ranking.to_trec()


def test_generation_counts_are_checked():
    from reasonrank.backends import Generation

    assert Generation("x", output_tokens=3, prompt_tokens=0).output_tokens == 3
    for kwargs in (
        {"output_tokens": "12"},
        {"output_tokens": -1},
        {"prompt_tokens": 1.0},
        {"prompt_tokens": True},
        {"finish_reason": 3},
        {"seconds": float("nan")},
    ):
        with pytest.raises(InvalidInputError, match="Generation"):
            Generation("x", **kwargs)
    with pytest.raises(InvalidInputError, match="text must be a str"):
        Generation(None)  # type: ignore[arg-type]
