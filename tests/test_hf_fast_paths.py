"""HFBackend throughput options give the same greedy generations as the default path (tiny random Qwen2)."""

from __future__ import annotations

import pytest

from conftest import tiny_qwen2
from reasonrank import InvalidInputError, SamplingParams
from reasonrank.backends import GenerationRequest
from reasonrank.prompts import get_template

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from reasonrank.backends.hf import HFBackend  # noqa: E402

GREEDY = SamplingParams(max_tokens=12)
TEXTS = [
    "The sun is a star at the centre of the Solar System.",
    "Photosynthesis turns light into chemical energy.\nPlants and algae do it.",
    "A short one.",
    "Spider-Man: Across the Spider-Verse is a 2023 American computer-animated superhero film; "
    "Miles Morales meets a society of Spider-People charged with protecting the Multiverse.",
    "Mitochondria are the powerhouse of the cell. " * 6,
]


@pytest.fixture(scope="module")
def tiny_model(qwen25_tokenizer):
    return tiny_qwen2(qwen25_tokenizer, max_position_embeddings=2048)


@pytest.fixture(scope="module")
def requests_(qwen25_tokenizer):
    template = get_template("reasonrank")
    out = []
    for k in range(1, len(TEXTS) + 1):  # windows of different sizes, so prompts differ in length
        passages = TEXTS[:k]
        out.append(
            GenerationRequest(
                prompt=template.render(f"question {k}", passages, qwen25_tokenizer, max_passage_tokens=64),
                messages=(),
                sampling=GREEDY,
                key=f"w{k}",
            )
        )
    return out


@pytest.fixture(scope="module")
def eos_model(tiny_model, qwen25_tokenizer, requests_):
    """The tiny model with an extra EOS id that its greedy outputs hit mid-way, so some stop early."""
    plain = HFBackend(tiny_model, qwen25_tokenizer, batch_size=1)
    tokens = [qwen25_tokenizer.encode(g.text) for g in plain.generate(requests_)]
    tiny_model.generation_config.eos_token_id = tokens[1][4]
    return tiny_model


@pytest.fixture(scope="module")
def baseline(eos_model, qwen25_tokenizer, requests_):
    generations = HFBackend(eos_model, qwen25_tokenizer).generate(requests_)
    assert {g.finish_reason for g in generations} == {"stop", "length"}  # both endings are exercised
    return generations


def test_max_batch_tokens_buckets_by_length_and_changes_nothing(eos_model, qwen25_tokenizer, requests_, baseline):
    lengths = sorted((len(qwen25_tokenizer(r.prompt)["input_ids"]) for r in requests_), reverse=True)
    budget = 2 * (lengths[0] + GREEDY.max_tokens)  # the two longest prompts fit together, no third
    backend = HFBackend(eos_model, qwen25_tokenizer, batch_size=8, max_batch_tokens=budget)
    batches = [tokens for _, _, tokens in backend._batches(requests_)]
    assert len(batches[0]) == 2 and len(batches) > 2  # the longest first, and no batch over the budget
    for tokens in batches:
        assert len(tokens) * (max(map(len, tokens)) + GREEDY.max_tokens) <= budget
    assert sorted(i for _, b, _ in backend._batches(requests_) for i in b) == list(range(len(requests_)))
    assert backend.generate(requests_) == baseline
    assert HFBackend(eos_model, qwen25_tokenizer, max_batch_tokens=1).generate(requests_) == baseline


def test_static_cache_and_padding_to_a_multiple_change_nothing(eos_model, qwen25_tokenizer, requests_, baseline):
    backend = HFBackend(eos_model, qwen25_tokenizer, cache_implementation="static", compile=False)
    config = backend._generation_kwargs(GREEDY)["generation_config"]
    assert config.cache_implementation == "static" and config.disable_compile
    assert backend.generate(requests_) == baseline
    padded = HFBackend(eos_model, qwen25_tokenizer, batch_size=2, cache_implementation="static", pad_to_multiple_of=128)
    assert padded.generate(requests_) == baseline


def test_continuous_batching_changes_nothing(eos_model, qwen25_tokenizer, requests_, baseline):
    backend = HFBackend(
        eos_model,
        qwen25_tokenizer,
        engine="continuous",
        continuous_config={"num_blocks": 64, "max_batch_tokens": 256},
    )
    assert backend.generate(requests_) == baseline
    # Settings continuous batching cannot apply fall back to generate, with the same results as generate.
    forced = [
        GenerationRequest(r.prompt, (), SamplingParams(max_tokens=12, min_tokens=12), key=r.key) for r in requests_
    ]
    fallback = backend.generate(forced)
    assert all(g.output_tokens == 12 and g.finish_reason == "length" for g in fallback)
    assert fallback == HFBackend(eos_model, qwen25_tokenizer).generate(forced)
    assert HFBackend(eos_model, qwen25_tokenizer).generate(requests_) == baseline  # the model is unchanged


def test_continuous_batching_streams_requests_into_one_running_manager(
    eos_model, qwen25_tokenizer, requests_, baseline
):
    """agenerate adds each request to one running manager while others decode: the same greedy outputs."""
    import asyncio

    backend = HFBackend(
        eos_model, qwen25_tokenizer, engine="continuous", continuous_config={"num_blocks": 64, "max_batch_tokens": 256}
    )
    assert backend.can_stream and not HFBackend(eos_model, qwen25_tokenizer).can_stream

    async def main():
        first = await backend.agenerate(requests_[0])  # starts the manager
        rest = await asyncio.gather(*(backend.agenerate(r) for r in requests_[1:]))  # added while others decode
        return [first, *rest]

    try:
        assert asyncio.run(main()) == baseline
        manager = backend._manager
        assert manager is not None and manager.is_running()
        assert asyncio.run(main()) == baseline and backend._manager is manager  # one manager, reused
    finally:
        backend.close()
    assert not manager.is_running()
    assert HFBackend(eos_model, qwen25_tokenizer).generate(requests_) == baseline  # the model is unchanged


def test_compile_option_reaches_the_generation_config(tiny_model, qwen25_tokenizer):
    def config(**options):
        return HFBackend(tiny_model, qwen25_tokenizer, **options)._generation_kwargs(GREEDY)["generation_config"]

    assert config().compile_config is None and not config().disable_compile
    assert config(compile=False).disable_compile
    assert config(compile={"dynamic": True}).compile_config.dynamic is True
    assert config(compile=True).compile_config is not None


def test_bad_fast_path_options(tiny_model, qwen25_tokenizer):
    with pytest.raises(InvalidInputError, match="engine"):
        HFBackend(tiny_model, qwen25_tokenizer, engine="vllm")
    with pytest.raises(InvalidInputError, match="max_batch_tokens"):
        HFBackend(tiny_model, qwen25_tokenizer, max_batch_tokens=0)
    with pytest.raises(InvalidInputError, match="pad_to_multiple_of"):
        HFBackend(tiny_model, qwen25_tokenizer, pad_to_multiple_of=0)
    with pytest.raises(InvalidInputError, match="generate_batch"):
        HFBackend(torch.nn.Linear(2, 2), qwen25_tokenizer, engine="continuous")
