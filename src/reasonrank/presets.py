"""Settings of the known checkpoints: template, decoding, passage truncation (model-reference §1.6, §4, §5)."""

from __future__ import annotations

from dataclasses import dataclass

from ._types import SamplingParams

__all__ = ["PRESETS", "ModelPreset", "find_preset"]


@dataclass(frozen=True)
class ModelPreset:
    """How a released checkpoint must be prompted and decoded to reproduce its published numbers."""

    template: str
    sampling: SamplingParams
    #: passage truncation in model tokens: 512 as in the official BRIGHT/R2MED runs (they use 100 on BEIR/DL);
    #: None for templates that cut passages by characters or words themselves (REARANK, RankGPT)
    max_passage_tokens: int | None = 512
    note: str = ""


# reasoning_maxlen 3072 in every official command, + 100 -> max_tokens 3172; greedy; nothing else set.
_REASONRANK_GREEDY = SamplingParams(temperature=0.0, max_tokens=3172)
# rank_GPT_qwen3: temperature 0.6, top_p 0.95, top_k 20, min_p 0 (sampled: results vary run to run).
_REASONRANK_QWEN3 = SamplingParams(temperature=0.6, top_p=0.95, top_k=20, min_p=0.0, max_tokens=3172)

_REASONRANK_8B = ModelPreset("reasonrank-qwen3", _REASONRANK_QWEN3, note="Qwen3-8B")
# REARANK agent.QwenClient defaults: temperature 0.0, top_p 1.0, repetition_penalty 1.0, max_tokens 2048.
_REARANK_GREEDY = SamplingParams(temperature=0.0, top_p=1.0, repetition_penalty=1.0, max_tokens=2048)

PRESETS: dict[str, ModelPreset] = {
    "liuwenhan/reasonrank-7B": ModelPreset("reasonrank", _REASONRANK_GREEDY, note="Qwen2.5-7B-Instruct, full FT"),
    "liuwenhan/reasonrank-32B": ModelPreset("reasonrank", _REASONRANK_GREEDY, note="Qwen2.5-32B-Instruct, LoRA merged"),
    # run_rank_llm.sh uses the first id; the README links the ModelScope one.
    "liuwenhan/reasonrank-8B": _REASONRANK_8B,
    "lwhlwh/reasonrank-8B": _REASONRANK_8B,
    # Passages are cut to 400 characters by the template itself, so no token limit.
    "le723z/Rearank-7B": ModelPreset(
        "rearank", _REARANK_GREEDY, max_passage_tokens=None, note="Qwen2.5-7B-Instruct, GRPO only (no SFT)"
    ),
}


def find_preset(model: str) -> ModelPreset | None:
    """The preset for a hub id, or for a local directory named like one (``/models/reasonrank-7B``).

    Examples:
        >>> find_preset("liuwenhan/reasonrank-7B").template
        'reasonrank'
        >>> find_preset("/data/ckpt/ReasonRank-8B/").template
        'reasonrank-qwen3'
        >>> find_preset("le723z/Rearank-7B").sampling.max_tokens
        2048
        >>> find_preset("Qwen/Qwen2.5-7B-Instruct") is None
        True
    """
    if model in PRESETS:
        return PRESETS[model]
    basename = model.rstrip("/").rsplit("/", 1)[-1].lower()
    matches = {p for key, p in PRESETS.items() if key.rsplit("/", 1)[-1].lower() == basename}
    return matches.pop() if len(matches) == 1 else None
