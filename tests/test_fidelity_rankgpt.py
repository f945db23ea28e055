"""Byte-for-byte agreement with the original RankGPT code (sunnweiwei/RankGPT @ 0d62bc3).

tests/fixtures/official_rankgpt.json was produced by executing the unmodified official functions
(``run_retriever``, ``create_permutation_instruction``, ``clean_response`` + ``receive_permutation``,
``sliding_windows``, ``permutation_pipeline``) with ``run_llm`` replaced by tests/fake_outputs.py over the
messages rendered with Qwen2.5's chat template (as a local chat model would see them). See
tests/fixtures/README.md.
"""

from __future__ import annotations

import pytest

from family_pipeline import assert_matches_official, load_fixture, run_ours
from reasonrank import parse_ranking, window_schedule
from reasonrank.prompts import get_template
from reasonrank.prompts._rankgpt import POST_PROMPT, PREFIX, SYSTEM_PROMPT, RankGPTTemplate
from reasonrank.prompts._rearank import official_hit_content


@pytest.fixture(scope="module")
def official() -> dict:
    return load_fixture("official_rankgpt.json")


def test_interface_strings():
    assert SYSTEM_PROMPT.startswith("You are RankGPT, an intelligent assistant")
    assert PREFIX.endswith("[]. \nRank the passages based on their relevance to query: {query}.")
    assert "Only response the ranking results, do not say any word or explain." in POST_PROMPT  # verbatim


def test_hit_contents_match_official_run_retriever(official):
    for entry in official["pool"]:
        assert official_hit_content(entry["doc"], normalise_untitled=True) == entry["official_content"], entry["doc"]
    # the one case where RankGPT's loader matters: a literal "Title:  Content:" in a text without title
    literal = next(e for e in official["pool"] if e["doc"].get("contents", "").startswith("Title:  Content:"))
    content = get_template("rankgpt-classic").passage_content(literal["doc"])
    assert content.startswith("double-spaced literal prefix")
    assert get_template("rankgpt-rearank").passage_content(literal["doc"]).startswith("Title: Content: double")


def test_messages_match_official(official):
    pool = official["pool"]
    template = get_template("rankgpt-classic")
    cases = official["message_cases"]
    assert len(cases) >= 40
    for case in cases:
        got = template.build_messages(case["query"], [pool[i]["doc"] for i in case["passages"]])
        assert got == case["messages"], (case["query"], case["passages"])


def test_message_cases_cover_the_edge_cases(official):
    pool = official["pool"]
    cases = official["message_cases"]
    long_doc = [c for c in cases if any(len(pool[i]["official_content"].split()) > 300 for i in c["passages"])]
    assert long_doc  # cut to exactly 300 words
    assert any(len(m["content"].split()) == 301 for c in long_doc for m in c["messages"][3::2])
    assert any(len(c["passages"]) == 20 and len(c["messages"]) == 3 + 2 * 20 + 1 for c in cases)
    assert any("\n" in pool[i]["doc"].get("contents", "") for c in cases for i in c["passages"])


def test_builtin_chatml_equals_qwen25_template_on_multi_turn(official, qwen25_tokenizer):
    template = get_template("rankgpt-classic")
    for case in official["message_cases"]:
        assert template.render_messages(case["messages"], None) == template.render_messages(
            case["messages"], qwen25_tokenizer
        )


def test_no_fix_text_and_raw_query():
    msgs = get_template("rankgpt-classic").build_messages("  [1] query  ", ["cafÃ© [2] &amp;"])
    assert msgs[1]["content"].endswith("to query:   [1] query  .")
    assert msgs[3]["content"] == "[1] cafÃ© [2] &amp;"


def test_parser_matches_official_receive_permutation(official):
    cases = official["parse_cases"]
    assert len(cases) > 300
    errors = [c for c in cases if "error" in c]
    assert errors  # e.g. "²": the official int() raises and the whole run stops
    for case in cases:
        result = parse_ranking(case["text"], case["num"], style="rankgpt")
        if "error" in case:
            # Deviation (documented): instead of crashing, the window keeps its order and the repair says why.
            assert result.order == tuple(range(case["num"]))
            assert "invalid_number" in [r.kind for r in result.repairs]
        else:
            assert list(result.order) == case["order"], case["text"][:200]


def test_faithful_schedules_match_official_sliding_windows(official):
    schedules = official["schedules"]
    assert len(schedules) > 1000 and {c["n"] for c in schedules} == set(range(131))
    for case in schedules:
        n = case["n"]
        expected = [(s, min(e, n)) for s, e in case["windows"] if s < n]
        got = window_schedule(n, case["window"], case["step"], rank_end=case["rank_end"], mode="faithful")
        assert got == expected, case


@pytest.mark.parametrize("index", range(3))
def test_full_pipeline_matches_official(official, qwen25_tokenizer, index):
    """sliding_windows(rank_end=100) in faithful mode (top_k=100), and the fixed schedule via permutation_pipeline."""
    run = official["pipelines"][index]
    rankings, model = run_ours(
        run["queries"],
        official["pool"],
        template="rankgpt-classic",
        tokenizer=qwen25_tokenizer,
        tags=False,
        window=run["window"],
        step=run["step"],
        window_mode=run["mode"],
        top_k=run["rank_end"],
    )
    assert {len(r["pool"]) for r in run["queries"]} >= {1, 19, 20, 21, 99, 100, 101, 130}
    for record in run["queries"]:
        assert_matches_official(record, rankings[record["qid"]], model)


def test_custom_variants_are_validated():
    with pytest.raises(ValueError, match="exactly one of max_words"):
        RankGPTTemplate("x", max_words=300, max_chars=300)
    with pytest.raises(ValueError, match="max_words must be an int"):
        RankGPTTemplate("x", max_words=0)
    short = RankGPTTemplate("rankgpt-100-words", max_words=100)
    assert short.passage_content(" ".join(["w"] * 150)) == " ".join(["w"] * 100)
