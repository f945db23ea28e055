from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reasonrank import InvalidInputError, ParseError, UnknownNameError, parse_ranking


def kinds(result):
    return [r.kind for r in result.repairs]


def test_clean_answer():
    r = parse_ranking("<think>because</think>\n<answer>[2] > [3] > [1]</answer>", 3)
    assert r.order == (1, 2, 0) and r.ok
    assert r.reasoning == "because" and r.answer == "[2] > [3] > [1]"
    assert r.ids == (2, 3, 1)


def test_repairs_are_recorded():
    r = parse_ranking("<think>x</think><answer>[0] > [2] > [9] > [2]</answer>", 3)
    assert r.order == (1, 0, 2)
    assert kinds(r) == ["duplicate", "out_of_range", "missing"]
    assert r.repairs[1].ids == (0, 9) and r.repairs[2].ids == (1, 3)


def test_no_answer_block_scrapes_the_whole_text():
    # model-reference §1.8 vector truncated_no_answer_digits_scraped_from_reasoning
    r = parse_ranking("Passage [3] is best, then [1]; it cites 2024 and 1", 3)
    assert r.order == (2, 0, 1)
    assert kinds(r) == ["no_answer", "duplicate", "out_of_range", "missing"]


def test_unclosed_answer_reads_after_last_answer_tag():
    r = parse_ranking("<think>long reasoning [1]</think>\n<answer>[3] > [2]", 3)
    assert r.order == (2, 1, 0)
    assert kinds(r)[0] == "answer_fallback"


def test_tags_are_case_insensitive_like_official():
    assert parse_ranking("<THINK>r</THINK><ANSWER>[2] > [1]</ANSWER>", 2).order == (1, 0)


def test_invalid_number_keeps_window():
    r = parse_ranking("<think>x</think><answer>[2] > [²] > [1]</answer>", 3)
    assert r.order == (0, 1, 2) and kinds(r) == ["invalid_number"]


def test_unicode_decimal_digits_are_numbers():
    assert parse_ranking("<think>x</think><answer>[٣] > [١]</answer>", 3).order == (2, 0, 1)


def test_rankgpt_style_reads_everything():
    r = parse_ranking("[2] > [1]", 2, style="rankgpt")
    assert r.order == (1, 0) and r.ok


def test_strict_mode_raises_with_details():
    with pytest.raises(ParseError) as e:
        parse_ranking("<think>x</think><answer>[1] > [1]</answer>", 2, strict=True)
    assert "duplicate" in str(e.value) and e.value.text.startswith("<think>")
    assert parse_ranking("<think>x</think><answer>[1] > [2]</answer>", 2, strict=True).ok


def test_bad_arguments():
    with pytest.raises(InvalidInputError):
        parse_ranking(None, 3)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        parse_ranking("x", -1)
    with pytest.raises(UnknownNameError, match="reasonrank"):
        parse_ranking("x", 2, style="nope")


def test_empty_window():
    assert parse_ranking("<think></think><answer></answer>", 0).order == ()


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300), st.integers(0, 40))
def test_always_a_full_permutation(text, num):
    for style in ("reasonrank", "rankgpt"):
        r = parse_ranking(text, num, style=style)
        assert sorted(r.order) == list(range(num))


@given(st.permutations(list(range(1, 21))))
def test_clean_permutations_round_trip(perm):
    text = "<think>t</think><answer>" + " > ".join(f"[{i}]" for i in perm) + "</answer>"
    r = parse_ranking(text, 20)
    assert r.ok and r.order == tuple(i - 1 for i in perm)
