"""Byte-for-byte agreement with the official ReasonRank code.

tests/fixtures/official_reasonrank.json was produced by executing the unmodified official functions
(8421BCD/ReasonRank @ 06721fd: utils.convert_doc_to_prompt_content, RankListwiseOSLLM.create_prompt,
RankLLM.receive_permutation, Reranker.rerank_batch + sliding_windows_batched) on the inputs recorded in it,
with the same tokenizers these tests load. See tests/fixtures/README.md.
"""

from __future__ import annotations

import hashlib

import pytest

from fake_outputs import fake_output, prompt_sha
from reasonrank import Passage, Reranker, parse_ranking, window_schedule
from reasonrank.backends import FakeBackend
from reasonrank.prompts import get_template
from reasonrank.prompts._reasonrank import (
    PREFIX,
    SUFFIX_QWEN3,
    SUFFIX_RANK_GPT,
    SUFFIX_REASONING,
    SYSTEM_PROMPT,
    SYSTEM_PROMPT_REASONING,
)

MODE_TO_TEMPLATE = {
    "rank_GPT_reasoning": "reasonrank",
    "rank_GPT_qwen3": "reasonrank-qwen3",
    "rank_GPT": "rankgpt",
}


def sha(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def test_interface_strings_match_model_reference_hashes():
    # model-reference §1.2: sha256 of each literal with placeholders left in
    assert sha(SYSTEM_PROMPT) == "7d9b4f9c08b34e3131aca5dff82b0be6f8aa9ab60d01e981246d3cf533699cd9"
    assert sha(SYSTEM_PROMPT_REASONING) == "646add87db8f5a564a0793b616dd8abc8d65d39d15b987ffcc94a472d5d4d882"
    assert sha(PREFIX) == "16fb76ab3f41daa69088a4505fed451fdc5a61690afb1a8629a43e14150dd284"
    assert sha(SUFFIX_REASONING) == "c8cdae3c2028c906880d7e9ae8585cb2cbdabb317ed030f3fa7459407beb6516"
    assert sha(SUFFIX_RANK_GPT) == "00105cc2ade7db2be9296b6635440a93552b30e15e1ad0be40975fa17b84e082"
    assert sha(SUFFIX_QWEN3) == "2b445e36996bd5c84de420ae6c18ebc933b5c1703daed6b7f21d008e045758a5"
    assert (len(SYSTEM_PROMPT), len(SYSTEM_PROMPT_REASONING), len(PREFIX)) == (103, 449, 158)


def _tokenizer(name, qwen25_tokenizer, qwen3_tokenizer):
    return {"qwen2.5": qwen25_tokenizer, "qwen3": qwen3_tokenizer}[name]


def test_passage_contents_match_official(official_reasonrank, qwen25_tokenizer):
    pool = official_reasonrank["pool"]
    template = get_template("reasonrank")
    for case in official_reasonrank["contents_cases"]:
        got = template.passage_content(
            pool[case["pool"]], tokenizer=qwen25_tokenizer, max_passage_tokens=case["max_passage_tokens"]
        )
        assert got == case["content"], (case["pool"], case["max_passage_tokens"])


def test_messages_and_rendered_prompts_match_official(official_reasonrank, qwen25_tokenizer, qwen3_tokenizer):
    cases = official_reasonrank["prompt_cases"]
    assert len(cases) >= 30
    for case in cases:
        tok = _tokenizer(case["tokenizer"], qwen25_tokenizer, qwen3_tokenizer)
        template = get_template(MODE_TO_TEMPLATE[case["mode"]])
        kwargs = dict(tokenizer=tok, max_passage_tokens=case["max_passage_tokens"])
        if case["messages"] is not None:
            assert template.build_messages(case["query"], case["passages"], **kwargs) == case["messages"]
        assert template.render(case["query"], case["passages"], **kwargs) == case["prompt"]


def test_builtin_chatml_equals_qwen25_template(official_reasonrank, qwen25_tokenizer):
    # Without a tokenizer we render ChatML ourselves; it must equal Qwen2.5's real template.
    for case in official_reasonrank["prompt_cases"]:
        if case["tokenizer"] != "qwen2.5" or case["messages"] is None:
            continue
        template = get_template(MODE_TO_TEMPLATE[case["mode"]])
        assert template.render_messages(case["messages"], None) == template.render_messages(
            case["messages"], qwen25_tokenizer
        )


@pytest.mark.parametrize("mode", ["rank_GPT_reasoning", "rank_GPT"])
def test_parser_matches_official_receive_permutation(official_reasonrank, mode):
    cases = [c for c in official_reasonrank["parse_cases"] if c["mode"] == mode]
    assert cases
    style = "reasonrank" if mode == "rank_GPT_reasoning" else "rankgpt"
    for case in cases:
        result = parse_ranking(case["text"], case["num"], style=style)
        assert list(result.order) == case["order"], case["text"]
        assert sorted(result.order) == list(range(case["num"]))


def test_window_schedules_match_official(official_reasonrank):
    schedules = official_reasonrank["schedules"]
    assert len(schedules) > 1000
    for case in schedules:
        got = window_schedule(case["n"], case["window"], case["step"], rank_end=case["top_k"])
        assert got == [tuple(w) for w in case["windows"]], case


def test_model_reference_window_examples():
    assert window_schedule(100) == [(s, s + 20) for s in range(80, -1, -10)]
    assert len(window_schedule(97)) == 9 and window_schedule(97)[-2:] == [(7, 27), (0, 17)]
    assert len(window_schedule(50)) == 4
    assert window_schedule(30) == [(10, 30), (0, 20)]
    assert window_schedule(21) == [(1, 21), (0, 11)]
    assert window_schedule(20) == [(0, 20)]
    assert len(window_schedule(100, 10, 5)) == 19


def _run_ours(case, pool, tok, *, batch_with=()):
    template = MODE_TO_TEMPLATE[case["mode"]]
    tags = case["mode"] != "rank_GPT"
    seen = []

    def responder(req):
        seen.append((req.query, prompt_sha(req.prompt), len(req.docids)))
        return fake_output(req.prompt, len(req.docids), tags=tags)

    reranker = Reranker(
        FakeBackend(responder),
        template=template,
        tokenizer=tok,
        max_passage_tokens=case["max_passage_tokens"],
        progress=False,
    )
    passages = [
        Passage(
            **{k: v for k, v in pool[c["pool"]].items() if k in ("title",)},
            text=next(
                pool[c["pool"]][k] for k in ("text", "segment", "contents", "body", "passage") if k in pool[c["pool"]]
            ),
            docid=c["docid"],
            score=c["score"],
        )
        if i % 2
        else {**pool[c["pool"]], "docid": c["docid"], "score": c["score"]}
        for i, c in enumerate(case["candidates"])
    ]  # alternate Passage objects and official-style mappings: both must give the same prompts
    queries = [case["query"], *[q for q, _ in batch_with]]
    lists = [passages, *[p for _, p in batch_with]]
    rankings = reranker.rerank_batch(queries, lists, window=case["window"], step=case["step"], top_k=case["top_k"])
    return rankings[0], [s for s in seen if s[0] == case["query"]]


def test_full_pipeline_matches_official(official_reasonrank, qwen25_tokenizer, qwen3_tokenizer):
    pool = official_reasonrank["pool"]
    cases = official_reasonrank["pipeline_cases"]
    assert len(cases) >= 25
    for case in cases:
        tok = _tokenizer(case["tokenizer"], qwen25_tokenizer, qwen3_tokenizer)
        ranking, seen = _run_ours(case, pool, tok)
        official_windows = [tuple(w) for w in case["windows"] if w[1] - w[0] >= 2]
        assert [(w.start, w.end) for w in ranking.windows] == official_windows
        official_calls = [(c["prompt_sha256"], c["num"]) for c in case["calls"] if c["num"] >= 2]
        assert [(s, n) for _, s, n in seen] == official_calls, case["query"]
        assert ranking.docids == case["docids"]
        assert ranking.scores("positional") == pytest.approx(case["scores"], abs=0)
        assert sorted(p.index for p in ranking) == list(range(len(case["candidates"])))


def test_cross_query_batching_changes_nothing(official_reasonrank, qwen25_tokenizer):
    # The same query reranked alone and together with others (different lengths) gives identical results.
    pool = official_reasonrank["pool"]
    cases = [c for c in official_reasonrank["pipeline_cases"] if c["mode"] == "rank_GPT_reasoning"]
    others = [(c["query"] + " other", [pool[x["pool"]] for x in c["candidates"]]) for c in cases[:4]]
    for case in cases[4:9]:
        ranking, _ = _run_ours(case, pool, qwen25_tokenizer, batch_with=others)
        assert ranking.docids == case["docids"]
