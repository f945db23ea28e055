"""The Hugging Face backend on CPU: a tiny random Qwen2 model (fast) and the real SmolLM2 (slow)."""

from __future__ import annotations

import sys

import pytest

from conftest import tiny_qwen2
from reasonrank import InvalidInputError, MissingDependencyError, Reranker, SamplingParams
from reasonrank.backends import GenerationRequest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from reasonrank.backends.hf import HFBackend  # noqa: E402


@pytest.fixture(scope="module")
def tiny(qwen25_tokenizer):
    # initializer_range 0.5: decisive logits, so greedy choices do not hinge on float noise between batch shapes
    model = tiny_qwen2(qwen25_tokenizer, initializer_range=0.5, tie_word_embeddings=True)
    model.generation_config = checkpoint_generation_config(repetition_penalty=1.05)
    return model


def checkpoint_generation_config(repetition_penalty: float):
    """What Qwen2.5-Instruct checkpoints ship: sampling defaults that must NOT leak into our decoding."""
    return transformers.GenerationConfig(
        do_sample=True,
        temperature=0.7,
        top_p=0.8,
        top_k=20,
        repetition_penalty=repetition_penalty,
        eos_token_id=[151645, 151643],
        pad_token_id=151643,
    )


def request(prompt: str, **sampling) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, messages=(), sampling=SamplingParams(**sampling))


def manual_greedy(model, tokenizer, prompt: str, n: int) -> list[int]:
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(ids).logits[0, -1].argmax())
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out


PROMPTS = [
    "<|im_start|>user\nshort<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\na much longer prompt, so that left padding is needed in the batch<|im_end|>\n"
    "<|im_start|>assistant\n",
    "<|im_start|>user\nmedium length prompt here<|im_end|>\n<|im_start|>assistant\n",
]


def test_greedy_ignores_checkpoint_sampling_defaults(qwen25_tokenizer):
    # A flat (default-init) model, so sampling or a repetition penalty would visibly change the tokens.
    flat = tiny_qwen2(qwen25_tokenizer, seed=1)
    flat.generation_config = checkpoint_generation_config(repetition_penalty=1.3)
    expected = manual_greedy(flat, qwen25_tokenizer, PROMPTS[1], 12)
    ids = torch.tensor([qwen25_tokenizer(PROMPTS[1])["input_ids"]])
    torch.manual_seed(0)
    leaky = flat.generate(ids, max_new_tokens=12, min_new_tokens=12)[0, ids.shape[1] :].tolist()
    assert leaky != expected  # the checkpoint's own defaults would change decoding...

    backend = HFBackend(flat, qwen25_tokenizer, batch_size=8)
    for _ in range(2):  # ...ours never do
        out = backend.generate([request(PROMPTS[1], max_tokens=12, min_tokens=12)])[0]
        assert out.text == qwen25_tokenizer.decode(expected, skip_special_tokens=True)
    assert out.output_tokens == 12 and out.finish_reason == "length"
    assert out.prompt_tokens == len(qwen25_tokenizer(PROMPTS[1])["input_ids"])


def test_left_padded_batches_equal_single_requests(tiny, qwen25_tokenizer):
    reqs = [request(p, max_tokens=5, min_tokens=5) for p in PROMPTS]
    batched = HFBackend(tiny, qwen25_tokenizer, batch_size=3).generate(reqs)
    single = HFBackend(tiny, qwen25_tokenizer, batch_size=1).generate(reqs)
    assert [g.text for g in batched] == [g.text for g in single]
    # results come back in request order although batches are sorted by length
    for p, g in zip(PROMPTS, batched):
        assert g.text == qwen25_tokenizer.decode(manual_greedy(tiny, qwen25_tokenizer, p, 5), skip_special_tokens=True)


def test_stream_yields_every_index_once(tiny, qwen25_tokenizer):
    backend = HFBackend(tiny, qwen25_tokenizer, batch_size=2)
    results = list(backend.stream([request(p, max_tokens=2) for p in PROMPTS]))
    assert sorted(i for i, _ in results) == [0, 1, 2] and len(results) == 3
    # batches are sorted by prompt length: the longest prompt (1) and the medium one (2) share a batch and its time
    seconds = {i: g.seconds for i, g in results}
    assert seconds[1] == seconds[2] > 0 and seconds[0] > 0


def test_eos_stops_generation(tiny, qwen25_tokenizer):
    first = manual_greedy(tiny, qwen25_tokenizer, PROMPTS[0], 1)[0]
    backend = HFBackend(tiny, qwen25_tokenizer)
    backend.eos_token_ids = [first]  # the model's first greedy token now ends the answer
    out = backend.generate([request(PROMPTS[0], max_tokens=10)])[0]
    assert out.finish_reason == "stop" and out.output_tokens == 1


def test_sampling_with_seed_is_reproducible(tiny, qwen25_tokenizer):
    backend = HFBackend(tiny, qwen25_tokenizer)
    sampled = dict(temperature=1.0, top_p=0.95, top_k=50, max_tokens=8, min_tokens=8)
    a = backend.generate([request(PROMPTS[0], seed=1, **sampled)])[0].text
    b = backend.generate([request(PROMPTS[0], seed=1, **sampled)])[0].text
    others = {backend.generate([request(PROMPTS[0], seed=s, **sampled)])[0].text for s in range(2, 7)}
    assert a == b and len(others | {a}) > 1


def test_reranker_over_tiny_model_end_to_end(tiny, qwen25_tokenizer):
    backend = HFBackend(tiny, qwen25_tokenizer, batch_size=4)
    reranker = Reranker(backend, sampling=SamplingParams(max_tokens=8), progress=False)
    assert reranker.tokenizer is qwen25_tokenizer and reranker.max_passage_tokens == 512
    docs = [{"docid": f"d{i}", "text": f"passage number {i} " * 5} for i in range(25)]
    rankings = reranker.rerank_batch(["first query", "second query?"], [docs, docs[:7]])
    assert [len(r.windows) for r in rankings] == [2, 1]
    for r, n in zip(rankings, (25, 7)):
        assert sorted(p.index for p in r) == list(range(n))
        for w in r.windows:
            assert w.prompt_tokens and w.prompt_tokens > 100 and 1 <= w.output_tokens <= 8


def test_hf_backend_names_the_extra_when_torch_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'reasonrank\[hf\]'"):
        HFBackend.from_pretrained("anything")


@pytest.mark.slow
def test_real_smollm2_reranks_a_noveleval_query(smollm2_gguf):
    from reasonrank._demo import load_noveleval, smollm2_gguf_path

    path = smollm2_gguf_path()
    assert path.startswith(smollm2_gguf[0])
    item = load_noveleval()["queries"][2]
    reranker = Reranker.from_pretrained(
        path,
        template="reasonrank",
        max_tokens=24,
        max_passage_tokens=48,
        batch_size=2,
        keep_prompts=True,
        progress=False,
    )
    ranking = reranker.rerank(item["query"], item["passages"], qid=item["qid"], window=12, step=6)
    assert sorted(p.index for p in ranking) == list(range(20))
    assert [(w.start, w.end) for w in ranking.windows] == [(8, 20), (2, 14), (0, 8)]
    for w in ranking.windows:
        # the real tokenizer's chat template rendered the official messages, then fix_text
        assert w.prompt.startswith("<|im_start|>system\nYou are RankLLM, an intelligent assistant")
        assert w.prompt.endswith("<|im_start|>assistant\n")
        assert f"Search Query: {item['query']}." in w.prompt
        assert 1 <= w.output_tokens <= 24 and w.finish_reason in ("stop", "length")
        assert w.prompt_tokens > 200
        assert sorted(w.order) == list(range(w.end - w.start))
    # passages were truncated to 48 model tokens before entering the prompt
    first = reranker.template.passage_content(item["passages"][0], tokenizer=reranker.tokenizer, max_passage_tokens=48)
    assert len(reranker.tokenizer.tokenize(first)) <= 49


def test_from_pretrained_local_directory_dtype_and_device_map(tmp_path, qwen25_tokenizer):
    model = tiny_qwen2(qwen25_tokenizer)
    model.save_pretrained(tmp_path)
    qwen25_tokenizer.save_pretrained(tmp_path)
    backend = HFBackend.from_pretrained(str(tmp_path), dtype="bf16", device_map="cpu")
    assert next(backend.model.parameters()).dtype == torch.bfloat16
    out = backend.generate([request(PROMPTS[0], max_tokens=3, min_tokens=3)])[0]
    assert out.output_tokens == 3
    assert next(HFBackend.from_pretrained(str(tmp_path)).model.parameters()).dtype == torch.float32  # CPU: fp32
    with pytest.raises(InvalidInputError, match="unknown dtype 'int4'"):
        HFBackend.from_pretrained(str(tmp_path), dtype="int4")


def test_prompts_longer_than_the_context_are_reported(qwen25_tokenizer):
    # A warning (not a log record): visible without any logging configuration.
    small = tiny_qwen2(qwen25_tokenizer, max_position_embeddings=64)
    backend = HFBackend(small, qwen25_tokenizer)
    with pytest.warns(UserWarning, match="exceeds the model's context of 64 tokens"):
        backend.generate([request(PROMPTS[1], max_tokens=60, min_tokens=1)])


def test_a_stop_string_reaches_generate_whole(tiny, qwen25_tokenizer):
    # issue 9: a bare str was split into its characters, so the model would have stopped at the first "<"
    backend = HFBackend(tiny, qwen25_tokenizer)
    config = backend._generation_kwargs(SamplingParams(stop="</answer>"))["generation_config"]
    assert config.stop_strings == ["</answer>"]
    out = backend.generate([request(PROMPTS[0], max_tokens=6, stop="</answer>")])[0]
    assert 1 <= out.output_tokens <= 6


def test_progress_moves_with_every_generated_token(tiny, qwen25_tokenizer, capsys):
    # A batch of long reasoning outputs can take minutes on a CPU: its bar moves per token, not per batch.
    backend = HFBackend(tiny, qwen25_tokenizer, batch_size=2, progress=True)
    backend.generate([request(PROMPTS[0], max_tokens=6, min_tokens=6), request(PROMPTS[1], max_tokens=6, min_tokens=6)])
    err = capsys.readouterr().err
    assert "batch 1/1 (2 windows)" in err and "6/6" in err and "tok" in err
    # The reranker's progress setting governs the backend's bars, per call too.
    Reranker(backend, progress=True).rerank("q", ["a", "b"], progress=False)
    assert "tok" not in capsys.readouterr().err and backend.progress is True
