"""Hugging Face transformers backend: batched ``generate`` with left padding and explicit decoding settings.

Install with ``pip install 'reasonrank[hf]'``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from .._errors import BackendError, InvalidInputError, MissingDependencyError
from .._types import SamplingParams
from ._base import Backend, Generation, GenerationRequest, check_model_path, check_options, loader_options

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


_DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}


class HFBackend(Backend):
    """Generate with a transformers causal LM.

    Requests are grouped by decoding settings, sorted by prompt length (less padding), cut into batches of
    ``batch_size`` and run with left padding. Decoding settings come only from each request's
    :class:`~reasonrank.SamplingParams`; the checkpoint's ``generation_config`` contributes nothing but its
    EOS ids, so it cannot silently turn greedy decoding into sampling (model-reference §1.6).

    As with vLLM's offline ``LLM.generate`` (the official pipeline), prompts are tokenized with the
    tokenizer's default ``add_special_tokens=True``, output counts include the EOS token, and text is decoded
    with ``skip_special_tokens=True``.

    Throughput options (all off by default; each gives the same greedy tokens as the default path, see
    docs/performance.md):

    - ``max_batch_tokens``: length-bucketed batches. A batch takes at most ``batch_size`` requests *and* at
      most this many tokens of (longest prompt + ``max_tokens``) x rows, so batches of short prompts grow and
      batches of long ones shrink to fit memory.
    - ``cache_implementation``: the KV cache type of ``generate`` (``"static"`` preallocates it; on CUDA
      transformers then compiles the decoding step with ``torch.compile``).
    - ``pad_to_multiple_of``: left-pad each batch to a multiple of this many tokens, so that compiled
      decoding sees few distinct shapes (padding is masked out).
    - ``compile``: ``None`` leaves that to transformers; ``False`` turns compilation off; ``True`` or a dict
      of :class:`transformers.CompileConfig` fields turns it on (with a static cache).
    - ``engine="continuous"``: transformers' continuous batching (``model.generate_batch``, paged KV cache):
      finished sequences leave the batch at once and waiting ones take their place, instead of every batch
      running until its longest output ends. ``continuous_config`` holds
      :class:`transformers.ContinuousBatchingConfig` fields (e.g. ``num_blocks``, ``max_batch_tokens``).
      Decoding settings continuous batching cannot apply (``min_tokens``, ``repetition_penalty``, ``stop``,
      a sampling ``seed``) make those requests use ``generate`` instead (logged), so results never change
      silently. With this engine the backend streams (:attr:`can_stream`): :meth:`agenerate` adds each window
      to one running continuous-batching manager while others decode, so the reranker's streaming schedule
      advances every query on its own; :meth:`close` stops the manager.
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
        max_batch_tokens: int | None = None,
        cache_implementation: str | None = None,
        compile: bool | Mapping[str, Any] | None = None,
        pad_to_multiple_of: int | None = None,
        engine: str = "generate",
        continuous_config: Mapping[str, Any] | None = None,
        progress: bool = False,
    ) -> None:
        for name, value, optional in (
            ("batch_size", batch_size, False),
            ("max_batch_tokens", max_batch_tokens, True),
            ("pad_to_multiple_of", pad_to_multiple_of, True),
        ):
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be an int >= 1{' or None' if optional else ''}, got {value!r}")
        if engine not in ("generate", "continuous"):
            raise InvalidInputError(f"engine must be 'generate' or 'continuous', got {engine!r}")
        if engine == "continuous" and not hasattr(model, "generate_batch"):
            raise InvalidInputError(
                "engine='continuous' needs a transformers version with continuous batching (model.generate_batch); "
                "upgrade transformers or use engine='generate'"
            )
        self.model = model
        self._tokenizer = tokenizer
        self.batch_size = batch_size
        self.add_special_tokens = add_special_tokens
        self.sort_by_length = sort_by_length
        self.max_batch_tokens = max_batch_tokens
        self.cache_implementation = cache_implementation
        self.compile = compile
        self.pad_to_multiple_of = pad_to_multiple_of
        self.engine = engine
        self.continuous_config = dict(continuous_config or {})
        #: show a tqdm bar per batch that moves with every generated token (a batch of long reasoning outputs
        #: can take minutes on a CPU); the reranker turns it off for calls made with ``progress=False``
        self.progress = progress
        self.eos_token_ids = self._eos_ids()
        self._warned_context = False
        self._manager: Any = None  # the running continuous-batching manager and its decoding settings
        self._manager_sampling: SamplingParams | None = None
        self._manager_lock = threading.Lock()
        self._request_ids = itertools.count()
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
        device_map: str | dict[str, Any] | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        attn_implementation: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        progress: bool = False,
        **options: Any,
    ) -> HFBackend:
        """Load a model and tokenizer from a hub id or local path (``gguf_file=`` for a GGUF checkpoint).

        ``dtype="auto"`` keeps the checkpoint's dtype on GPUs and uses float32 on CPU (``"bfloat16"``/``"bf16"``,
        ``"float16"``/``"fp16"``, ``"float32"``/``"fp32"`` or a ``torch.dtype`` choose one); ``device`` defaults to
        CUDA when available. ``device_map`` (e.g. ``"auto"``, needs accelerate) spreads a model that does not fit
        one GPU over several, instead of ``device``. Remaining options (``batch_size``, ``add_special_tokens``,
        ``sort_by_length``, ``max_batch_tokens``, ``cache_implementation``, ``compile``, ``pad_to_multiple_of``,
        ``engine``, ``continuous_config``) go to the constructor. ``progress`` shows a bar over each batch's
        generated tokens.
        """
        check_options(cls, options)  # a typo fails now, not after the load
        check_model_path(model)
        torch = _import_torch()
        transformers = _import_transformers()
        model, gguf_file = _split_gguf(model, gguf_file)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto" and str(device).startswith("cpu") and device_map is None:
            dtype = torch.float32
        elif isinstance(dtype, str) and dtype != "auto":
            name = _DTYPE_ALIASES.get(dtype.lower(), dtype.lower())
            candidate = getattr(torch, name, None)
            if not isinstance(candidate, torch.dtype) or not candidate.is_floating_point:
                raise InvalidInputError(
                    f"unknown dtype {dtype!r}; use 'auto', 'bfloat16' (bf16), 'float16' (fp16) or 'float32' (fp32)"
                )
            dtype = candidate
        common: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        if gguf_file is not None:
            common["gguf_file"] = gguf_file
        if tokenizer is None or isinstance(tokenizer, str):
            tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer or model, **common)
        kwargs: dict[str, Any] = dict(common, **(model_kwargs or {}))
        kwargs["dtype"] = dtype
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        if device_map is not None:
            kwargs["device_map"] = device_map
        where = f"device_map={device_map!r}" if device_map is not None else device
        logger.info("loading %s%s on %s", model, f" ({gguf_file})" if gguf_file else "", where)
        lm = transformers.AutoModelForCausalLM.from_pretrained(model, **kwargs)
        if device_map is None:
            lm.to(device)
        lm.eval()
        return cls(lm, tokenizer, progress=progress, **options)

    @classmethod
    def option_names(cls, *, loading: bool = True) -> frozenset[str] | None:
        return loader_options(cls) if loading else super().option_names(loading=False)

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
        if self.cache_implementation is not None:
            settings["cache_implementation"] = self.cache_implementation
        if self.compile is False:
            settings["disable_compile"] = True
        elif self.compile is not None:
            options = {} if self.compile is True else dict(self.compile)
            settings["compile_config"] = transformers.CompileConfig(**options)
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
            self._check_context(max(len(ids) for ids in encoded), sampling.max_tokens)
            pairs = list(zip(indices, encoded))
            if self.sort_by_length:
                pairs.sort(key=lambda p: -len(p[1]))
            for chunk in self._chunks(pairs, sampling.max_tokens):
                yield sampling, [i for i, _ in chunk], [list(ids) for _, ids in chunk]

    def _check_context(self, prompt_tokens: int, max_new: int) -> None:
        # The official pipeline never shrinks prompts to fit (model-reference §1.6); neither do we, but say so
        # when a window cannot fit the model's context instead of letting it degrade silently.
        limit = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        if isinstance(limit, int) and prompt_tokens + max_new > limit and not self._warned_context:
            self._warned_context = True
            # warnings, not logging: a user must see this without configuring logging.
            warnings.warn(
                f"a prompt of {prompt_tokens} tokens plus max_tokens={max_new} exceeds the model's context of "
                f"{limit} tokens: lower max_passage_tokens or the window size, or max_tokens",
                UserWarning,
                stacklevel=2,
            )

    def _chunks(self, pairs: list[tuple[int, Any]], max_new: int) -> Iterator[list[tuple[int, Any]]]:
        """Cut (index, tokens) pairs into batches of at most ``batch_size`` rows and ``max_batch_tokens``."""
        chunk: list[tuple[int, Any]] = []
        width = 0
        for pair in pairs:
            new_width = max(width, len(pair[1]))
            too_many = len(chunk) >= self.batch_size
            too_big = (
                self.max_batch_tokens is not None and (len(chunk) + 1) * (new_width + max_new) > self.max_batch_tokens
            )
            if chunk and (too_many or too_big):
                yield chunk
                chunk, new_width = [], len(pair[1])
            chunk.append(pair)
            width = new_width
        if chunk:
            yield chunk

    def stream(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Generation]]:
        if self.engine == "continuous":
            yield from self._stream_continuous(requests)
            return
        yield from self._stream_generate(requests)

    def _stream_generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Generation]]:
        torch = _import_torch()
        device = next(self.model.parameters()).device
        batches = list(self._batches(requests))
        for number, (sampling, indices, token_lists) in enumerate(batches, start=1):
            started = time.perf_counter()
            width = max(len(t) for t in token_lists)
            if self.pad_to_multiple_of:
                width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
            input_ids = torch.full((len(token_lists), width), self.pad_token_id, dtype=torch.long)
            attention = torch.zeros((len(token_lists), width), dtype=torch.long)
            for row, tokens in enumerate(token_lists):  # left padding
                input_ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
                attention[row, width - len(tokens) :] = 1
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            kwargs = self._generation_kwargs(sampling)
            if self.progress:
                label = f"batch {number}/{len(batches)} ({len(indices)} window{'' if len(indices) == 1 else 's'})"
                kwargs["streamer"] = _TokenProgress(sampling.max_tokens, label)
            with torch.inference_mode():
                out = self.model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
            new_tokens = out[:, width:].tolist()
            share = (time.perf_counter() - started) / len(indices)  # the batch's time, shared by its rows
            for row, index in enumerate(indices):
                yield index, replace(self._decode(new_tokens[row], len(token_lists[row])), seconds=share)

    def _stream_continuous(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Generation]]:
        transformers = _import_transformers()
        groups: dict[SamplingParams, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[r.sampling].append(i)
        for sampling, indices in groups.items():
            unsupported = [
                name
                for name, used in (
                    ("min_tokens", sampling.min_tokens > 0),
                    ("repetition_penalty", sampling.repetition_penalty != 1.0),
                    ("stop", bool(sampling.stop)),
                    ("seed", sampling.seed is not None and not sampling.greedy),  # reproducible sampling
                )
                if used
            ]
            if unsupported:
                logger.info(
                    "continuous batching cannot apply %s: %d request(s) use generate", unsupported, len(indices)
                )
                for k, generation in self._stream_generate([requests[i] for i in indices]):
                    yield indices[k], generation
                continue
            started = time.perf_counter()
            encoded = self._tokenizer(
                [requests[i].prompt for i in indices], add_special_tokens=self.add_special_tokens
            )["input_ids"]
            config = transformers.ContinuousBatchingConfig(**self.continuous_config)
            generation_config = self._generation_kwargs(sampling)["generation_config"]
            outputs = list(
                self.model.generate_batch(
                    inputs=[list(ids) for ids in encoded],
                    generation_config=generation_config,
                    continuous_batching_config=config,
                    progress_bar=False,
                ).values()
            )
            failed = [o.error for o in outputs if o.error is not None]
            if len(outputs) != len(indices) or failed:
                raise BackendError(
                    f"continuous batching returned {len(outputs)} of {len(indices)} results"
                    + (f"; errors: {failed[:3]}" if failed else "")
                    + "; use engine='generate'"
                )
            share = (time.perf_counter() - started) / len(indices)
            for index, ids, output in zip(indices, encoded, outputs):
                yield index, replace(self._decode(list(output.generated_tokens), len(ids)), seconds=share)

    # ------------------------------------------------------------------ streaming (continuous batching)

    @property
    def can_stream(self) -> bool:
        return self.engine == "continuous"

    async def agenerate(self, request: GenerationRequest) -> Generation:
        """Add ``request`` to the running continuous-batching manager; the result when it finishes.

        Only with ``engine="continuous"``; decoding settings continuous batching cannot apply, or settings other
        than the running manager's (beyond ``max_tokens``, which is per request), run ``generate`` in a worker
        thread instead. Cancelling the awaiting task cancels the request in the manager.
        """
        sampling = request.sampling
        manager = self._continuous_manager(sampling) if self.engine == "continuous" else None
        if manager is None:
            return await super().agenerate(request)
        ids = self._tokenizer([request.prompt], add_special_tokens=self.add_special_tokens)["input_ids"][0]
        self._check_context(len(ids), sampling.max_tokens)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()

        def deliver(output: Any) -> None:
            if output.is_finished() and not done.done():
                done.set_result(output)

        request_id = f"reasonrank-{next(self._request_ids)}"
        started = time.perf_counter()
        manager.register_result_handler(request_id, deliver)
        manager.add_request(
            input_ids=list(ids),
            request_id=request_id,
            max_new_tokens=sampling.max_tokens,
            eos_token_id=self.eos_token_ids,
        )
        try:
            output = await done
        except asyncio.CancelledError:
            manager.cancel_request(request_id)
            raise
        if output.error is not None:
            raise BackendError(f"continuous batching failed for {request.key or request_id}: {output.error}")
        generation = self._decode(list(output.generated_tokens), len(ids))
        return replace(generation, seconds=time.perf_counter() - started)

    def _continuous_manager(self, sampling: SamplingParams) -> Any:
        """The running manager for these decoding settings, started on first use (``None``: use generate)."""
        key = replace(sampling, max_tokens=1)
        if (
            sampling.min_tokens > 0
            or sampling.repetition_penalty != 1.0
            or sampling.stop
            or (sampling.seed is not None and not sampling.greedy)
        ):
            return None
        with self._manager_lock:
            if self._manager is None:
                transformers = _import_transformers()
                config = transformers.ContinuousBatchingConfig(**self.continuous_config)
                generation_config = self._generation_kwargs(sampling)["generation_config"]
                manager = self.model.init_continuous_batching(
                    generation_config=generation_config, continuous_batching_config=config
                )
                manager.start()
                # The manager's thread is not a daemon: stop it before the interpreter waits for it at exit.
                register = getattr(threading, "_register_atexit", None)
                if register is not None:
                    register(_stop_manager, manager)
                self._manager, self._manager_sampling = manager, key
            if self._manager_sampling != key:
                logger.info("decoding settings differ from the running continuous-batching manager's: using generate")
                return None
            return self._manager

    def close(self) -> None:
        """Stop the continuous-batching manager, if one is running."""
        with self._manager_lock:
            manager, self._manager = self._manager, None
        if manager is not None:
            _stop_manager(manager)

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


def _stop_manager(manager: Any) -> None:
    if manager.is_running():
        manager.stop(block=True, timeout=30)


class _TokenProgress:
    """A ``generate`` streamer that only moves a tqdm bar, one step per generated token of the batch.

    The bar's total is ``max_tokens``: its ETA is the time until the longest possible output; a batch whose
    rows all stop early closes sooner.
    """

    def __init__(self, max_tokens: int, label: str) -> None:
        from tqdm.auto import tqdm

        # Every token redraws (a token takes far longer than a redraw): the bar never looks stuck.
        self.bar = tqdm(total=max_tokens, desc=label, unit="tok", leave=False, mininterval=0, miniters=1)
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate first hands over the prompt
            self.prompt_seen = True
            return
        self.bar.update(1)

    def end(self) -> None:
        self.bar.close()
