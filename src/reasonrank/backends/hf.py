"""Hugging Face transformers backend: batched ``generate`` with left padding and explicit decoding settings.

Install with ``pip install 'reasonrank[hf]'``.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from .._errors import InvalidInputError, MissingDependencyError
from .._types import SamplingParams
from ._base import Backend, Generation, GenerationRequest

__all__ = ["HFBackend"]

logger = logging.getLogger(__name__)


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "hf", "The Hugging Face backend") from None
    return torch


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError("transformers", "hf", "The Hugging Face backend") from None
    return transformers


def _split_gguf(model: str, gguf_file: str | None) -> tuple[str, str | None]:
    """Accept ``model="dir/file.gguf"`` as well as ``model="dir", gguf_file="file.gguf"``."""
    if gguf_file is None and model.endswith(".gguf") and os.path.isfile(model):
        return os.path.dirname(os.path.abspath(model)), os.path.basename(model)
    return model, gguf_file


class HFBackend(Backend):
    """Generate with a transformers causal LM.

    Requests are grouped by decoding settings, sorted by prompt length (less padding), cut into batches of
    ``batch_size`` and run with left padding. Decoding settings come only from each request's
    :class:`~reasonrank.SamplingParams`; the checkpoint's ``generation_config`` contributes nothing but its
    EOS ids, so it cannot silently turn greedy decoding into sampling (model-reference §1.6).

    As with vLLM's offline ``LLM.generate`` (the official pipeline), prompts are tokenized with the
    tokenizer's default ``add_special_tokens=True``, output counts include the EOS token, and text is decoded
    with ``skip_special_tokens=True``.
    """

    name = "hf"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int = 8,
        add_special_tokens: bool = True,
        sort_by_length: bool = True,
    ) -> None:
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self._tokenizer = tokenizer
        self.batch_size = batch_size
        self.add_special_tokens = add_special_tokens
        self.sort_by_length = sort_by_length
        self.eos_token_ids = self._eos_ids()
        pad = tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else self.eos_token_ids[0]

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        *,
        gguf_file: str | None = None,
        tokenizer: Any = None,
        dtype: str | Any = "auto",
        device: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        attn_implementation: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> HFBackend:
        """Load a model and tokenizer from a hub id or local path (``gguf_file=`` for a GGUF checkpoint).

        ``dtype="auto"`` keeps the checkpoint's dtype on GPUs and uses float32 on CPU; ``device`` defaults to
        CUDA when available. Remaining options (``batch_size``, ``add_special_tokens``, ``sort_by_length``) go
        to the constructor.
        """
        torch = _import_torch()
        transformers = _import_transformers()
        model, gguf_file = _split_gguf(model, gguf_file)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto" and str(device).startswith("cpu"):
            dtype = torch.float32
        elif isinstance(dtype, str) and dtype != "auto":
            dtype = getattr(torch, dtype)
        common: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        if gguf_file is not None:
            common["gguf_file"] = gguf_file
        if tokenizer is None or isinstance(tokenizer, str):
            tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer or model, **common)
        kwargs: dict[str, Any] = dict(common, **(model_kwargs or {}))
        kwargs["dtype"] = dtype
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        logger.info("loading %s%s on %s", model, f" ({gguf_file})" if gguf_file else "", device)
        lm = transformers.AutoModelForCausalLM.from_pretrained(model, **kwargs)
        lm.to(device)
        lm.eval()
        return cls(lm, tokenizer, **options)

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def _eos_ids(self) -> list[int]:
        ids: list[int] = []
        candidates: list[Any] = [self._tokenizer.eos_token_id]
        gen_config = getattr(self.model, "generation_config", None)
        if gen_config is not None:
            candidates.append(gen_config.eos_token_id)
        for c in candidates:
            for i in c if isinstance(c, (list, tuple)) else [c]:
                if i is not None and i not in ids:
                    ids.append(int(i))
        if not ids:
            raise InvalidInputError("the tokenizer and model define no EOS token; generation could never stop")
        return ids

    def _generation_kwargs(self, sampling: SamplingParams) -> dict[str, Any]:
        transformers = _import_transformers()
        settings: dict[str, Any] = {
            "max_new_tokens": sampling.max_tokens,
            "min_new_tokens": sampling.min_tokens or None,
            "repetition_penalty": sampling.repetition_penalty,
            "eos_token_id": self.eos_token_ids,
            "pad_token_id": self.pad_token_id,
            "num_beams": 1,
        }
        if sampling.greedy:
            settings.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            settings.update(
                do_sample=True,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k if sampling.top_k > 0 else None,
                min_p=sampling.min_p or None,
            )
        kwargs: dict[str, Any] = {"generation_config": transformers.GenerationConfig(**settings)}
        if sampling.stop:
            kwargs["generation_config"].stop_strings = list(sampling.stop)
            kwargs["tokenizer"] = self._tokenizer
        return kwargs

    def _batches(
        self, requests: Sequence[GenerationRequest]
    ) -> Iterator[tuple[SamplingParams, list[int], list[list[int]]]]:
        groups: dict[SamplingParams, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[r.sampling].append(i)
        for sampling, indices in groups.items():
            encoded = self._tokenizer(
                [requests[i].prompt for i in indices], add_special_tokens=self.add_special_tokens
            )["input_ids"]
            pairs = list(zip(indices, encoded))
            if self.sort_by_length:
                pairs.sort(key=lambda p: -len(p[1]))
            for k in range(0, len(pairs), self.batch_size):
                chunk = pairs[k : k + self.batch_size]
                yield sampling, [i for i, _ in chunk], [list(ids) for _, ids in chunk]

    def stream(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Generation]]:
        torch = _import_torch()
        device = next(self.model.parameters()).device
        for sampling, indices, token_lists in self._batches(requests):
            width = max(len(t) for t in token_lists)
            input_ids = torch.full((len(token_lists), width), self.pad_token_id, dtype=torch.long)
            attention = torch.zeros((len(token_lists), width), dtype=torch.long)
            for row, tokens in enumerate(token_lists):  # left padding
                input_ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
                attention[row, width - len(tokens) :] = 1
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention.to(device),
                    **self._generation_kwargs(sampling),
                )
            new_tokens = out[:, width:].tolist()
            for row, index in enumerate(indices):
                yield index, self._decode(new_tokens[row], len(token_lists[row]))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        for index, generation in self.stream(requests):
            results[index] = generation
        return results  # type: ignore[return-value]

    def _decode(self, tokens: list[int], prompt_tokens: int) -> Generation:
        eos = set(self.eos_token_ids)
        cut = next((k + 1 for k, t in enumerate(tokens) if t in eos), None)
        kept = tokens if cut is None else tokens[:cut]
        text = self._tokenizer.decode(kept, skip_special_tokens=True)
        return Generation(
            text=text,
            output_tokens=len(kept),
            prompt_tokens=prompt_tokens,
            finish_reason="length" if cut is None else "stop",
        )
