from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reasonrank import InvalidInputError, ParseError, UnknownNameError, parse_ranking
from reasonrank.parsing import ANSWER_PATTERN


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


# ----------------------------------------------------------------------------------------------- issue 9 §6

# The official readers, written from model-reference §1.8 (ReasonRank) and §5.1 (REARANK), with their regexes:
# the linear extraction must find exactly the ids these find.
_TAGS = st.lists(
    st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "<THINK>", " ", "\n", "\u00a0", "[1]", "2", "x"]),
    max_size=14,
).map("".join)


def _digit_ids(text: str) -> list[int]:
    return [int(t) for t in "".join(c if c.isdigit() else " " for c in text).split()]


def _official_reasonrank_ids(text: str) -> list[int]:
    match = re.search(ANSWER_PATTERN, text.lower(), re.DOTALL)
    if match:
        return _digit_ids(match.group(1).strip())
    return _digit_ids(text.split("<answer>")[-1] if "<answer>" in text else text)


def _official_rearank_ids(text: str) -> list[int]:
    response = text
    if "<answer>" in response:
        match = re.search(r"<answer>(.*?)</answer>", response, re.DOTALL)
        response = match.group(1).strip() if match else response.strip()
    if "<think>" in response:
        response = response.split("</think>")[-1]
    return _digit_ids(response)


@given(_TAGS)
def test_linear_extraction_reads_the_ids_the_official_regexes_read(text):
    assert list(parse_ranking(text, 3).ids) == _official_reasonrank_ids(text)
    assert list(parse_ranking(text, 3, style="rearank").ids) == _official_rearank_ids(text)


@pytest.mark.timeout(120)  # the regexes took 4-23 s (and minutes on a loaded machine) on 117-234 KiB outputs
def test_outputs_full_of_opening_tags_parse_in_linear_time():
    size = 2 * 234 * 1024
    for text in ("<think>" * (size // 7), "<answer>" * (size // 8), "<think>x</think>" + "<answer>" * (size // 8)):
        for style in ("reasonrank", "rearank", "rankgpt"):
            assert sorted(parse_ranking(text + "[2] > [1]", 2, style=style).order) == [0, 1]


def test_closing_think_without_opening_think_is_reasoning():
    # Qwen3/R1 chat templates put <think> in the prompt, so the output starts inside the reasoning.
    r = parse_ranking("passage [2] wins\n</think>\n<answer>[2] > [1]</answer>", 2)
    assert r.reasoning == "passage [2] wins" and r.answer == "[2] > [1]" and r.order == (1, 0)
    r = parse_ranking("passage [2] wins</think><answer>[2] > [1]</answer>", 2, style="rearank")
    assert r.reasoning == "passage [2] wins" and r.answer == "[2] > [1]" and r.order == (1, 0)
    assert parse_ranking("<answer>[2] > [1]</answer>", 2).reasoning is None


def test_answer_holds_only_the_answer_part():
    # ids are still read from the whole text, as official (model-reference §1.8: "the reasoning length is too long")
    cut = parse_ranking("<think>[3] is best, then [1]", 3)
    assert cut.answer is None and cut.reasoning == "[3] is best, then [1]" and cut.order == (2, 0, 1)
    assert parse_ranking("no tags [2]", 2).answer is None
    after = parse_ranking("<think>maybe [1]</think> [2] > [1]", 2)
    assert after.answer == "[2] > [1]" and after.reasoning == "maybe [1]" and after.ids == (1, 2, 1)
    fallback = parse_ranking("<think>r [1]</think>\n<answer>[2] > [1]", 2)
    assert fallback.answer == "[2] > [1]" and fallback.order == (1, 0)
    rearank = parse_ranking("<think>r [1]</think> [2] > [1]", 2, style="rearank")
    assert rearank.answer == "[2] > [1]" and rearank.ids == (2, 1)
    assert parse_ranking("<think>cut off [2]", 2, style="rearank").answer is None
    assert parse_ranking("[2] > [1]", 2, style="rankgpt").answer == "[2] > [1]"  # no reasoning in rank_GPT mode
