"""Byte-for-byte agreement with the official REARANK code (lezhang7/Rearank @ abb4bd0).

tests/fixtures/official_rearank.json was produced by executing the unmodified official functions
(``run_retriever`` / ``get_hits_from_run_bright``, ``create_permutation_instruction_rearank``,
``create_permutation_instruction``, ``QwenClient.batch_chat``, ``clean_response`` + ``receive_permutation``,
``sliding_windows_batch``, ``process_rank_results_in_batches``) with tests/fake_outputs.py as the model. See
tests/fixtures/README.md for how, and where the official code and model-reference §5.1 disagree.
"""

from __future__ import annotations

import pytest

from family_pipeline import assert_matches_official, load_fixture, run_ours
from reasonrank import InvalidInputError, Reranker, UnknownNameError, parse_ranking, window_schedule
from reasonrank.backends import FakeBackend
from reasonrank.presets import find_preset
from reasonrank.prompts import get_template
from reasonrank.prompts._rearank import FINAL, INSTRUCTION, SYSTEM_PROMPT, official_hit_content

TEMPLATE_FOR_MODEL = {"le723z/Rearank-7B": "rearank", "Qwen/Qwen2.5-7B-Instruct": "rankgpt-rearank"}


@pytest.fixture(scope="module")
def official() -> dict:
    return load_fixture("official_rearank.json")


def test_interface_strings_keep_the_official_quirks():
    assert "search query.Search Query: {query}. \nRank the {num}" in INSTRUCTION  # no space, ". \n"
    assert "search query.The passages should be listed" in INSTRUCTION
    assert SYSTEM_PROMPT.endswith(
        "You first thinks about the reasoning process in the mind and then provides the user with the answer."
    )
    lines = FINAL.split("\n")
    assert lines[0] == 'Please rank these passages according to their relevance to the search query: "{query}"'
    assert lines[5] == "" and len(lines) == 7
    assert all(line.startswith(" " * 12) and line[12] != " " for i, line in enumerate(lines) if i not in (0, 5))


def test_hit_contents_match_official_loaders(official):
    # BEIR-style docs through the official run_retriever, BRIGHT docs through get_hits_from_run_bright
    for entry in official["pool"]:
        assert official_hit_content(entry["doc"]) == entry["official_content"], entry["doc"]


def test_messages_match_official(official):
    pool = official["pool"]
    for name, cases in official["message_cases"].items():
        template = get_template(name)
        assert len(cases) >= 40
        for case in cases:
            got = template.build_messages(case["query"], [pool[i]["doc"] for i in case["passages"]])
            assert got == case["messages"], (name, case["query"], case["passages"])


def test_message_cases_cover_the_edge_cases(official):
    """The vectors include a passage longer than the cut, internal newlines, and 20-passage windows."""
    pool = official["pool"]
    cases = official["message_cases"]["rearank"]
    cut = [
        c for c in cases if any(len(" ".join(pool[i]["doc"].get("contents", "").split())) > 400 for i in c["passages"])
    ]
    assert cut and all(len(m["content"]) <= len("[20] ") + 400 for c in cut for m in c["messages"][3:-1:2])
    assert any(len(m["content"]) == len("[1] ") + 400 for c in cut for m in c["messages"][3:-1:2])
    assert any("\n" in pool[i]["doc"].get("contents", "") for c in cases for i in c["passages"])
    twenty = [c for c in cases if len(c["passages"]) == 20]
    assert len(twenty) >= 3 and all(len(c["messages"]) == 3 + 2 * 20 + 1 for c in twenty)
    rankgpt_copy = official["message_cases"]["rankgpt-rearank"]
    assert any(len(m["content"]) == len("[1] ") + 300 for c in rankgpt_copy for m in c["messages"])


def test_rendered_prompts_match_official(official, qwen25_tokenizer):
    # QwenClient.batch_chat: apply_chat_template(..., add_generation_prompt=True) and nothing else (no ftfy)
    pool = official["pool"]
    for name, cases in official["message_cases"].items():
        template = get_template(name)
        for case in cases:
            passages = [pool[i]["doc"] for i in case["passages"]]
            assert template.render(case["query"], passages, qwen25_tokenizer) == case["prompt"]
            # the built-in ChatML renderer renders the multi-turn conversation exactly like Qwen2.5's template
            assert template.render(case["query"], passages) == case["prompt"]
    mojibake = next(p["doc"]["contents"] for p in pool if "cafÃ©" in p["doc"].get("contents", ""))
    assert "cafÃ©" in get_template("rearank").render("q", [mojibake])


def test_parser_matches_official_receive_permutation(official):
    cases = official["parse_cases"]
    assert len(cases) > 300 and all("error" not in c for c in cases)
    for case in cases:
        result = parse_ranking(case["text"], case["num"], style="rearank")
        assert list(result.order) == case["order"], case["text"][:200]
        # positional scores: the window's score sequence stays in place
        assert case["scores"] == sorted(case["scores"], reverse=True)


def test_parser_vectors():
    order = lambda text, n=3: parse_ranking(text, n, style="rearank").order  # noqa: E731
    assert order("<think>[1] is weak</think>\n<answer>[2] > [3] > [1]</answer>") == (1, 2, 0)
    assert order("<think>[3] is best, then [1]") == (2, 0, 1)  # cut off: digits of the reasoning
    assert order("<think>mentions [3]</think> [2] > [1]") == (1, 0, 2)  # no <answer>: after the last </think>
    assert order("<THINK>[3]</THINK><ANSWER>[2]</ANSWER>") == (2, 1, 0)  # tags are case-sensitive
    assert order("<answer>[2] > [²] > [3]</answer>") == (1, 2, 0)  # the bad number alone is skipped
    result = parse_ranking("<answer>[2] > [²] > [3]</answer>", 3, style="rearank")
    assert [r.kind for r in result.repairs] == ["invalid_number", "missing"]
    fallback = parse_ranking("<think>weighing [1]</think>\n<answer>[3] > [2]", 3, style="rearank")
    assert fallback.order == (2, 1, 0) and fallback.repairs[0].kind == "answer_fallback"
    assert fallback.reasoning == "weighing [1]"
    clean = parse_ranking("<think>ok</think><answer>[1] > [3] > [2]</answer>", 3, style="rearank", strict=True)
    assert clean.ok and clean.answer == "[1] > [3] > [2]"


def test_faithful_schedules_match_official_loop(official):
    schedules = official["schedules"]
    assert len(schedules) > 2000 and {c["n"] for c in schedules} == set(range(131))
    for case in schedules:
        n = case["n"]
        # hits[start:end] of the official loop, without the calls on empty slices
        expected = [(s, min(e, n)) for s, e in case["windows"] if s < n]
        got = window_schedule(
            n, case["window"], case["step"], rank_start=case["rank_start"], rank_end=case["rank_end"], mode="faithful"
        )
        assert got == expected, case


def test_faithful_quirks_and_fixed_coverage():
    for n in range(1, 131):
        fixed = window_schedule(n)
        covered = set().union(*(range(s, e) for s, e in fixed))
        assert covered == set(range(n)), n  # fixed mode: every candidate is in some window
        assert fixed[-1][0] == 0
        faithful = window_schedule(n, mode="faithful")
        if n < 20:
            assert faithful == []  # no window under 20 hits
        elif (n - 20) % 10:
            assert faithful[-1][0] == (n - 20) % 10 > 0  # the top window does not reach rank 0
        else:
            assert faithful == fixed
    assert window_schedule(100, mode="faithful") == window_schedule(100)  # the paper's setting: identical
    with pytest.raises(UnknownNameError, match="window mode"):
        window_schedule(10, mode="bogus")


@pytest.mark.parametrize("index", range(5))
def test_batched_pipeline_matches_official(official, qwen25_tokenizer, index):
    """process_rank_results_in_batches, quirks included: rank_end = min(len(first query of the batch), 100)."""
    run = official["pipelines"][index]
    template = TEMPLATE_FOR_MODEL[run["model_name"]]
    records = run["queries"]
    size = run["batch_size"]
    checked = 0
    for b in range(0, len(records), size):
        chunk = records[b : b + size]
        rankings, model = run_ours(
            chunk,
            official["pool"],
            template=template,
            tokenizer=qwen25_tokenizer,
            tags=run["enable_thinking"],
            window=run["window"],
            step=run["step"],
            window_mode="faithful",
            top_k=min(len(chunk[0]["pool"]), 100),
        )
        for record in chunk:
            assert_matches_official(record, rankings[record["qid"]], model)
            checked += len(record["calls"])
    assert checked > 0


def test_batched_pipelines_exercise_the_quirks(official):
    lengths = {len(r["pool"]) for run in official["pipelines"] for r in run["queries"]}
    assert {1, 19, 20, 21, 99, 100, 101, 130} <= lengths
    runs = official["pipelines"]
    # a query that got no window only because the first query of its batch was short
    assert any(len(r["pool"]) >= 20 and not r["calls"] for r in runs[0]["queries"])
    # and calls on windows cut short by a shorter query than the batch's first
    assert any(0 < c[2] < run["window"] for run in runs for r in run["queries"] for c in r["calls"])


@pytest.mark.parametrize("index", range(3))
def test_fixed_mode_matches_official_functions(official, qwen25_tokenizer, index):
    """The official per-window functions driven by the fixed (ReasonRank) schedule."""
    run = official["fixed_pipelines"][index]
    rankings, model = run_ours(
        run["queries"],
        official["pool"],
        template=TEMPLATE_FOR_MODEL[run["model_name"]],
        tokenizer=qwen25_tokenizer,
        tags=run["enable_thinking"],
        window=run["window"],
        step=run["step"],
        window_mode="fixed",
        top_k=None,
    )
    for record in run["queries"]:
        assert_matches_official(record, rankings[record["qid"]], model)


def test_preset_matches_official_sampling(official):
    preset = find_preset("le723z/Rearank-7B")
    assert preset is not None and preset.template == "rearank" and preset.max_passage_tokens is None
    sampling = official["pipelines"][0]["sampling"]  # what QwenClient hands to vLLM
    s = preset.sampling
    assert (s.temperature, s.top_p, s.repetition_penalty, s.max_tokens) == (
        sampling["temperature"],
        sampling["top_p"],
        sampling["repetition_penalty"],
        sampling["max_tokens"],
    )
    assert s.top_k == 0 and s.min_p == 0 and s.min_tokens == 0  # vLLM defaults: nothing else set
    assert find_preset("/models/Rearank-7B/") is preset


def test_character_templates_refuse_token_limits():
    backend = FakeBackend()
    for name in ("rearank", "rankgpt-rearank", "rankgpt-classic"):
        with pytest.raises(InvalidInputError, match="max_passage_tokens does not apply"):
            Reranker(backend, template=name, max_passage_tokens=100)
        with pytest.raises(InvalidInputError, match="cuts each passage"):
            get_template(name).passage_content("text", max_passage_tokens=100)
        # no tokenizer is needed: nothing is truncated by tokens
        assert Reranker(backend, template=name, progress=False).max_passage_tokens is None


def test_unknown_window_mode_is_refused_before_any_call():
    backend = FakeBackend()
    with pytest.raises(UnknownNameError, match="'fixed' always covers every candidate"):
        Reranker(backend, template="rearank", progress=False).rerank("q", ["a", "b"], window_mode="strict")
    assert backend.num_requests == 0
