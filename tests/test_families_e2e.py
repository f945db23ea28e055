"""The REARANK and RankGPT templates end to end on a real model (SmolLM2-135M-Instruct, GGUF, CPU).

SmolLM2 was never trained to rerank, so these tests assert what really happens, not ranking quality: the
exact prompt reaches the model through its own chat template, each output is parsed by the family's parser,
every window's permutation is applied where it belongs, and the result is a full permutation with traces.
One model is loaded for the whole module, through the ``le723z/Rearank-7B`` preset (a local directory named
``Rearank-7B`` holding the SmolLM2 file).
"""

from __future__ import annotations

import os
import re
from typing import ClassVar

import pytest

from reasonrank import InvalidInputError, Passage, Reranker, SamplingParams, parse_ranking
from reasonrank._demo import load_noveleval
from reasonrank.backends import Backend, FakeBackend, register_backend

MAX_TOKENS = 32


@pytest.fixture(scope="module")
def rearank_reranker(smollm2_gguf, tmp_path_factory):
    pytest.importorskip("transformers")
    folder, name = smollm2_gguf
    model_dir = tmp_path_factory.mktemp("models") / "Rearank-7B"
    model_dir.mkdir()
    os.symlink(os.path.join(folder, name), model_dir / name)
    return Reranker.from_pretrained(
        str(model_dir), gguf_file=name, max_tokens=MAX_TOKENS, batch_size=2, progress=False, keep_prompts=True
    )


@pytest.fixture(scope="module")
def noveleval():
    return load_noveleval()["queries"]


def _replay(n: int, windows) -> list[int]:
    order = list(range(n))
    for w in windows:
        inside = order[w.start : w.end]
        order[w.start : w.end] = [inside[j] for j in w.order]
    return order


def _check_windows(ranking, passages, template, tokenizer, style):
    by_docid = {p["docid"]: p for p in passages}
    for w in ranking.windows:
        n = w.end - w.start
        # the exact prompt of the template, rendered with the model's own chat template, reached the model
        window_passages = [by_docid[d] for d in w.docids]
        assert w.prompt == template.render(ranking.query, window_passages, tokenizer)
        assert w.prompt_tokens == len(tokenizer(w.prompt)["input_ids"])
        assert f"Received passage [{n}]." in w.prompt
        # the raw output was read by the family's parser
        parsed = parse_ranking(w.output, n, style=style)
        assert w.order == parsed.order and sorted(w.order) == list(range(n))
        assert w.repairs == parsed.repairs
        assert 1 <= w.output_tokens <= MAX_TOKENS and w.finish_reason in ("stop", "length")
    assert ranking.order == _replay(len(passages), ranking.windows)
    assert sorted(ranking.docids) == sorted(p["docid"] for p in passages)
    assert any(w.output.strip() for w in ranking.windows)


@pytest.mark.slow
def test_rearank_preset_end_to_end(rearank_reranker, noveleval):
    reranker = rearank_reranker
    assert reranker.template.name == "rearank" and reranker.max_passage_tokens is None
    s = reranker.sampling
    assert (s.temperature, s.top_p, s.repetition_penalty, s.max_tokens) == (0.0, 1.0, 1.0, MAX_TOKENS)
    tokenizer = reranker.tokenizer
    assert "<|im_start|>" in tokenizer.chat_template  # SmolLM2's own ChatML template renders the turns

    query = noveleval[0]
    passages = query["passages"][:6]
    rankings = reranker.rerank_batch([query["query"]], [passages], qids=[query["qid"]], window=4, step=2)
    for ranking in rankings:
        assert [(w.start, w.end) for w in ranking.windows] == [(2, 6), (0, 4)]  # fixed mode: reaches the top
        _check_windows(ranking, passages, reranker.template, tokenizer, "rearank")
        first = ranking.windows[0].prompt
        assert first.startswith("<|im_start|>system\nYou are DeepRerank")
        assert first.count("<|im_start|>assistant\nReceived passage [") == 4
        assert "\n            Follow these steps exactly:\n" in first
        cut = re.findall(r"<\|im_start\|>user\n\[\d\] (.*?)<\|im_end\|>", first, re.DOTALL)
        assert len(cut) == 4 and max(len(c) for c in cut) == 400  # NovelEval passages are longer than the cut
        assert ranking.scores("positional") == [p["score"] for p in passages]


@pytest.mark.slow
def test_rankgpt_classic_end_to_end_faithful_windows(rearank_reranker, noveleval):
    backend = rearank_reranker.backend  # the same loaded model, with another template
    reranker = Reranker(
        backend,
        template="rankgpt-classic",
        sampling=SamplingParams(max_tokens=MAX_TOKENS),
        keep_prompts=True,
        progress=False,
    )
    query = noveleval[14]  # short passages: RankGPT keeps up to 300 words of each
    passages = query["passages"][:7]
    ranking = reranker.rerank(query["query"], passages, window=4, step=2, qid=query["qid"], window_mode="faithful")
    # RankGPT's loop: (3, 7), then (1, 5); start -1 < 0 ends it, so rank 0 is never reranked
    assert [(w.start, w.end) for w in ranking.windows] == [(3, 7), (1, 5)]
    assert ranking.docids[0] == passages[0]["docid"]
    _check_windows(ranking, passages, reranker.template, backend.tokenizer, "rankgpt")
    prompt = ranking.windows[0].prompt
    assert prompt.startswith("<|im_start|>system\nYou are RankGPT")
    assert "Only response the ranking results, do not say any word or explain.<|im_end|>" in prompt
    assert all(w.reasoning is None for w in ranking.windows)


class _LoaderBackend(FakeBackend):
    """Stands in for a backend's from_pretrained: records what it was asked to load."""

    loaded: ClassVar[list] = []

    @classmethod
    def from_pretrained(cls, model: str, **options) -> Backend:
        cls.loaded.append((model, options))
        return cls()


def test_from_pretrained_unknown_model_needs_a_template():
    register_backend("families-test-loader", _LoaderBackend)
    reranker = Reranker.from_pretrained(
        "Qwen/Qwen2.5-7B-Instruct",
        backend="families-test-loader",
        template="rankgpt-classic",
        max_tokens=200,
        dtype="x",
    )
    assert reranker.template.name == "rankgpt-classic" and reranker.max_passage_tokens is None
    assert reranker.sampling == SamplingParams(max_tokens=200)
    assert _LoaderBackend.loaded[-1] == ("Qwen/Qwen2.5-7B-Instruct", {"dtype": "x"})
    with pytest.raises(InvalidInputError, match="pass template="):
        Reranker.from_pretrained("meta-llama/Llama-3.1-8B-Instruct", backend="families-test-loader")
    # a ReasonRank checkpoint with a character-cut template: its 512-token preset limit is not forced on it
    other = Reranker.from_pretrained("liuwenhan/reasonrank-7B", backend="families-test-loader", template="rearank")
    assert other.template.name == "rearank" and other.max_passage_tokens is None
    preset = Reranker.from_pretrained("le723z/Rearank-7B", backend="families-test-loader")
    assert preset.template.name == "rearank" and preset.sampling.max_tokens == 2048


def test_rearank_runs_without_a_tokenizer():
    # character/word cuts need no tokenizer; the built-in Qwen2.5 ChatML renders the prompt
    seen = []
    backend = FakeBackend(lambda req: seen.append(req.prompt) or "<think>x</think><answer>[2] > [1]</answer>")
    ranking = Reranker(backend, template="rearank", progress=False).rerank(
        "q", [Passage("a " * 300, docid="a"), Passage("b", docid="b")]
    )
    assert ranking.docids == ["b", "a"]
    assert (
        seen[0].startswith("<|im_start|>system\nYou are DeepRerank") and "[1] " + "a " * 200 + "<|im_end|>" in seen[0]
    )
