"""Issue 9 §1, §6, §7: names, options and inputs are checked before a model loads or is called, and every
public entry point answers bad input with a ReasonRankError that says what to fix."""

from __future__ import annotations

import os

import pytest

from reasonrank import (
    BackendError,
    InvalidInputError,
    Passage,
    Reranker,
    UnknownNameError,
    WindowFailedError,
    window_schedule,
)
from reasonrank.backends import Backend, FakeBackend, Generation, answer, get_backend_class


@pytest.fixture
def no_loading(monkeypatch):
    """Make any model or tokenizer load fail loudly: a check that fires first proves it ran before loading."""
    transformers = pytest.importorskip("transformers")

    def refuse(*args, **kwargs):
        raise AssertionError("a model or tokenizer was loaded before the bad argument was reported")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


@pytest.fixture
def gguf_path(smollm2_gguf):
    return os.path.join(*smollm2_gguf)


def test_a_template_typo_fails_before_loading_and_suggests_the_name(no_loading, gguf_path):
    with pytest.raises(UnknownNameError) as e:
        Reranker.from_pretrained(gguf_path, template="rank-gpt")
    message = str(e.value)
    assert "did you mean 'rankgpt'?" in message and "reasonrank-qwen3" in message  # the valid names are listed


def test_an_option_typo_fails_before_loading_and_suggests_the_name(no_loading, gguf_path):
    with pytest.raises(
        UnknownNameError, match=r"unknown hf backend option 'max_token' \(did you mean 'max_tokens'\?\)"
    ):
        Reranker.from_pretrained(gguf_path, template="reasonrank", max_token=10)
    with pytest.raises(UnknownNameError, match=r"'batchsize' \(did you mean 'batch_size'\?\)") as e:
        Reranker.from_pretrained(gguf_path, template="reasonrank", batchsize=2, dtpye="bf16")
    assert "also unknown: 'dtpye'" in str(e.value) and isinstance(e.value, InvalidInputError)
    with pytest.raises(UnknownNameError, match="did you mean 'hf'"):
        Reranker.from_pretrained(gguf_path, template="reasonrank", backend="hf_")
    # decoding and reranker options are checked too, before loading
    with pytest.raises(InvalidInputError, match="max_tokens must be an int"):
        Reranker.from_pretrained(gguf_path, template="reasonrank", max_tokens="10")
    with pytest.raises(InvalidInputError, match="max_passage_tokens does not apply"):
        Reranker.from_pretrained(gguf_path, template="rearank", max_passage_tokens=100)
    with pytest.raises(InvalidInputError, match="sampling must be a SamplingParams"):
        Reranker.from_pretrained(gguf_path, template="reasonrank", sampling={"max_tokens": 5})


def test_options_of_each_backend_are_known():
    hf = get_backend_class("hf").option_names()
    assert hf is not None and {"gguf_file", "dtype", "batch_size", "max_batch_tokens", "engine"} <= hf
    openai = get_backend_class("openai").option_names()
    assert openai is not None and {"base_url", "api_key", "served_model_name", "max_response_bytes"} <= openai
    assert get_backend_class("fake").option_names(loading=False) == {"responder", "record"}
    with pytest.raises(UnknownNameError, match="did you mean 'responder'"):
        Reranker("fake", responer=None)


def test_a_missing_local_path_is_named_as_such(no_loading):
    for path in ("/nope/model.gguf", "./nope/model", "nope/deeper/model", "~/nope-model-dir/x.gguf"):
        with pytest.raises(InvalidInputError, match=r"local path .* does not exist"):
            Reranker.from_pretrained(path, template="reasonrank")
    with pytest.raises(InvalidInputError, match=r"local path '/nope/model' does not exist"):
        Reranker.from_pretrained("/nope/model", backend="vllm", template="reasonrank")


def test_duplicate_docids_within_a_query_are_a_clear_error():
    reranker = Reranker(FakeBackend(), progress=False)
    duplicated = [{"docid": "d1", "text": "a"}, {"docid": "d1", "text": "b"}]
    with pytest.raises(InvalidInputError, match="passages 0 and 1 have the same docid 'd1'"):
        reranker.rerank("q", duplicated)
    with pytest.raises(InvalidInputError, match=r"query 1 \(qid B\): passages 0 and 1 have the same docid"):
        reranker.rerank_batch(["q", "r"], [["x", "y"], duplicated], qids=["A", "B"])
    # a passage without a docid is named by its position: it may not clash with another's docid
    with pytest.raises(InvalidInputError, match="named by its position"):
        reranker.rerank("q", [{"docid": "1", "text": "a"}, "b"])
    assert reranker.rerank("q", [Passage("a", docid=5), Passage("b", docid=6)]).docids == ["5", "6"]
    assert FakeBackend().calls == []


@pytest.mark.parametrize(
    "qids, words",
    [
        (5, "qids must be a list"),
        ("q1", "qids must be a list"),
        ([None], "qid 0 must be a non-empty str"),
        ([""], "qid 0 must be a non-empty str"),
        ([1.5], "qid 0 must be a non-empty str"),
        (["a", "b"], "2 qids for 1 queries"),
    ],
)
def test_qids_are_checked(qids, words):
    backend = FakeBackend()
    with pytest.raises(InvalidInputError, match=words):
        Reranker(backend, progress=False).rerank_batch(["q"], [["a", "b"]], qids=qids)
    assert backend.calls == []  # nothing was generated


def test_int_qids_become_strs():
    ranking = Reranker(FakeBackend(), progress=False).rerank_batch(["q"], [["a", "b"]], qids=[7])[0]
    assert ranking.qid == "7" and ranking.to_trec()[0].startswith("7 Q0 ")


class _Yields(Backend):
    name = "yields"

    def __init__(self, items):
        self.items = items

    def generate(self, requests):
        raise AssertionError("stream is overridden")

    def stream(self, requests):
        yield from self.items(len(requests))


@pytest.mark.parametrize(
    "items, words",
    [
        (lambda n: [("0", Generation(answer([0, 1])))], "request index '0' \\(str\\); it must be an int"),
        (lambda n: [(True, Generation(answer([0, 1])))], "request index True"),
        (lambda n: [(n, Generation(answer([0, 1])))], "request index 1, out of range for 1 request"),
        (lambda n: [(-1, Generation(answer([0, 1])))], "request index -1, out of range"),
        (lambda n: [(0, Generation(answer([0, 1])))] * 2, "request index 0 twice"),
        (lambda n: [Generation(answer([0, 1]))], "expected \\(request_index, Generation\\) pairs"),
        (lambda n: [(0, answer([0, 1]))], "expected a Generation"),
    ],
)
def test_a_backend_breaking_the_stream_contract_is_named(items, words):
    with pytest.raises(BackendError, match=words) as e:
        Reranker(_Yields(items), progress=False).rerank("q", ["a", "b"])
    assert "backend _Yields ('yields')" in str(e.value)
    assert isinstance(e.value, WindowFailedError) and isinstance(e.value.__cause__, BackendError)


@pytest.mark.timeout(60)
def test_faithful_windows_with_a_huge_top_k_do_not_hang():
    # RankGPT's loop starts at rank_end and steps down by `step`: 10**18 took 10**17 iterations
    assert window_schedule(45, rank_end=10**18, mode="faithful") == [(40, 45), (30, 45), (20, 40), (10, 30), (0, 20)]
    reranker = Reranker(FakeBackend(lambda req: answer(reversed(range(len(req.docids))))), progress=False)
    ranking = reranker.rerank("q", [f"p{i}" for i in range(45)], top_k=10**18, window_mode="faithful")
    assert sorted(ranking.docids, key=int) == [str(i) for i in range(45)] and len(ranking.windows) == 5


def _eval_argv(tmp_path, *extra):
    import json

    hits = [{"qid": "1", "docid": d, "content": d.upper(), "score": s} for d, s in (("a", 2.0), ("b", 1.0))]
    (tmp_path / "data.json").write_text(json.dumps([{"query": "q", "hits": hits}]))
    (tmp_path / "qrels.txt").write_text("1 0 b 1\n")
    return [
        "eval", "--data-json", str(tmp_path / "data.json"), "--qrels", str(tmp_path / "qrels.txt"),
        "--output-dir", str(tmp_path / "out"), "--no-progress", *extra,
    ]  # fmt: skip


def test_eval_cli_options_are_checked_and_never_echo_a_value(tmp_path, capsys):
    from reasonrank.cli import main

    with pytest.raises(SystemExit) as e:  # a key pasted without "api_key=" is not shown back
        main(_eval_argv(tmp_path, "--backend", "openai", "--model", "m", "--backend-option", "sk-Q3x9-pasted"))
    assert "KEY=VALUE" in str(e.value.code) and "Q3x9" not in str(e.value.code)
    assert main(_eval_argv(tmp_path, "--backend", "fake", "--backend-option", "batch_size=2")) == 1
    assert "--backend fake runs no model: batch_size" in capsys.readouterr().err
    assert main(_eval_argv(tmp_path, "--backend", "hf", "--model", "/nope/model.gguf", "--template", "reasonrank")) == 1
    assert "local path '/nope/model.gguf' does not exist" in capsys.readouterr().err
    argv = _eval_argv(tmp_path, "--backend", "openai", "--model", "m", "--template", "rankgpt")
    assert main([*argv, "--backend-option", "max_retrys=1"]) == 1
    assert "unknown openai backend option 'max_retrys' (did you mean 'max_retries'?)" in capsys.readouterr().err


def test_backend_loaders_check_their_options_before_loading(no_loading, gguf_path):
    from reasonrank.backends.hf import HFBackend
    from reasonrank.backends.openai_compat import OpenAIBackend

    with pytest.raises(UnknownNameError, match="did you mean 'batch_size'"):
        HFBackend.from_pretrained(gguf_path, batchsize=2)
    with pytest.raises(UnknownNameError, match="did you mean 'base_url'"):
        OpenAIBackend.from_pretrained("m", tokenizer=None, baseurl="http://127.0.0.1:1/v1")
