"""vLLM backend: offline ``vllm.LLM.generate`` on the rendered prompt strings, as the official pipeline runs.

Install with ``pip install 'reasonrank[vllm]'`` (Linux with a CUDA GPU). One backend is one engine (on its
``tensor_parallel_size`` GPUs); for data parallelism run replicas on Ray (:mod:`reasonrank.distributed`,
``reasonrank eval --ray --replicas N``) or ``vllm serve --data-parallel-size N`` behind the OpenAI backend.
``engine="async"`` (or ``VLLMBackend(AsyncLLMEngine(...))``) uses vLLM's async engine instead of ``vllm.LLM``:
one engine, each window added as soon as it is ready while others decode, so every query advances on its own
(the reranker's streaming schedule).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import inspect
import itertools
import logging
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .._errors import BackendError, InvalidInputError, MissingDependencyError
from .._types import SamplingParams
from ._base import Backend, Generation, GenerationRequest, check_model_path

__all__ = ["VLLMBackend", "to_vllm_sampling"]

logger = logging.getLogger(__name__)

LORA_NAME = "reasonrank-lora"  # the official code names its adapter "R1adapter"; the name is not seen by the model


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise MissingDependencyError("vllm", "vllm", "The vLLM backend") from None
    return vllm


def to_vllm_sampling(sampling: SamplingParams, sampling_class: Any = None) -> Any:
    """A ``vllm.SamplingParams`` with every decoding field set explicitly.

    ``top_k`` off is sent as ``-1``, which every vLLM release accepts (0.8.x rejects 0). Output text is decoded
    with ``skip_special_tokens=True``, vLLM's default and what the official pipeline read.
    """
    if sampling_class is None:
        sampling_class = _import_vllm().SamplingParams
    return sampling_class(
        n=1,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k if sampling.top_k > 0 else -1,
        min_p=sampling.min_p,
        max_tokens=sampling.max_tokens,
        min_tokens=sampling.min_tokens,
        repetition_penalty=sampling.repetition_penalty,
        seed=sampling.seed,
        stop=list(sampling.stop) or None,
        skip_special_tokens=True,
    )


class _Engine:
    """One ``vllm.LLM`` (or anything with its ``generate``/``get_tokenizer`` interface) in this process."""

    def __init__(self, llm: Any, lora_request: Any = None, use_tqdm: bool = False) -> None:
        self.llm = llm
        self.lora_request = lora_request
        self.use_tqdm = use_tqdm

    def stream(
        self, prompts: Sequence[str], samplings: Sequence[SamplingParams]
    ) -> Iterator[tuple[list[int], list[Generation]]]:
        yield list(range(len(prompts))), self.run(prompts, samplings)

    def run(self, prompts: Sequence[str], samplings: Sequence[SamplingParams]) -> list[Generation]:
        if not prompts:
            return []
        vllm_params = {s: to_vllm_sampling(s) for s in set(samplings)}
        # One SamplingParams for the whole call when every window shares it (the official call); else one per prompt.
        params: Any = vllm_params[samplings[0]] if len(vllm_params) == 1 else [vllm_params[s] for s in samplings]
        outputs = self.llm.generate(list(prompts), params, use_tqdm=self.use_tqdm, lora_request=self.lora_request)
        if len(outputs) != len(prompts):
            raise BackendError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts")
        return [_to_generation(out) for out in outputs]


class _AsyncEngine:
    """vLLM's async engine (``AsyncLLMEngine``/``AsyncLLM``: ``generate(prompt, sampling_params, request_id)`` is
    an async generator of ``RequestOutput`` s) on one event loop of its own, in one thread.

    The engine's background loop lives in the event loop that first used it, so every request goes through
    this one loop, from any caller (sync ``stream`` or ``agenerate`` from other loops). Cancelling a request's
    task closes its generator, which makes vLLM abort the request.
    """

    def __init__(self, engine: Any, lora_request: Any = None) -> None:
        self.llm = engine
        self.lora_request = lora_request
        self.loop = asyncio.new_event_loop()
        self._ids = itertools.count()
        self._thread = threading.Thread(target=self.loop.run_forever, name="reasonrank-vllm-engine", daemon=True)
        self._thread.start()
        self._finalizer = weakref.finalize(self, _stop_loop, self.loop, self._thread)

    def call(self, coroutine: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def tokenizer(self) -> Any:
        result = self.llm.get_tokenizer()
        return self.call(result).result() if inspect.isawaitable(result) else result

    async def generate(self, prompt: str, sampling: SamplingParams) -> Generation:
        final = None
        request_id = f"reasonrank-{next(self._ids)}"
        async for output in self.llm.generate(
            prompt, to_vllm_sampling(sampling), request_id, lora_request=self.lora_request
        ):
            final = output
        if final is None or not final.finished:
            raise BackendError(f"vLLM's async engine ended request {request_id} without a finished output")
        return _to_generation(final)

    def stream(
        self, prompts: Sequence[str], samplings: Sequence[SamplingParams]
    ) -> Iterator[tuple[list[int], list[Generation]]]:
        futures = {self.call(self.generate(p, s)): i for i, (p, s) in enumerate(zip(prompts, samplings))}
        try:
            for future in concurrent.futures.as_completed(futures):
                yield [futures[future]], [future.result()]
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self._finalizer()


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    async def cancel_all() -> None:  # the engine's own background tasks included
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        loop.stop()

    with contextlib.suppress(RuntimeError):  # already stopped
        asyncio.run_coroutine_threadsafe(cancel_all(), loop)
    thread.join(timeout=30)
    if not loop.is_running():
        loop.close()


def _is_async_engine(engine: Any) -> bool:
    return inspect.isasyncgenfunction(getattr(engine, "generate", None))


def _to_generation(request_output: Any) -> Generation:
    # Official: text = outputs[0].text, count = len(outputs[0].token_ids) (EOS included when generated).
    completion = request_output.outputs[0]
    prompt_ids = getattr(request_output, "prompt_token_ids", None)
    return Generation(
        text=completion.text,
        output_tokens=len(completion.token_ids),
        prompt_tokens=len(prompt_ids) if prompt_ids is not None else None,
        finish_reason=completion.finish_reason,
    )


def _lora_request(lora_path: str | None) -> Any:
    if lora_path is None:
        return None
    from vllm.lora.request import LoRARequest

    return LoRARequest(LORA_NAME, 1, lora_path)


class VLLMBackend(Backend):
    """Generate with vLLM's offline engine: one ``LLM.generate`` call per window round, across all queries.

    Wraps an existing engine (``VLLMBackend(vllm.LLM(...))``) or builds one with :meth:`from_pretrained`.
    Prompts go in as strings, so vLLM tokenizes them as the official pipeline did (the tokenizer's default
    ``add_special_tokens=True``) and decodes with ``skip_special_tokens=True``. ``tokenizer`` is the engine's
    Hugging Face tokenizer (``llm.get_tokenizer()``), which the reranker uses to render and truncate prompts
    exactly as official.
    """

    name = "vllm"

    def __init__(self, llm: Any, *, lora_request: Any = None, use_tqdm: bool = False, tokenizer: Any = None) -> None:
        self._runner: _Engine | _AsyncEngine
        if _is_async_engine(llm):
            self._runner = _AsyncEngine(llm, lora_request)
        else:
            self._runner = _Engine(llm, lora_request, use_tqdm)
        if tokenizer is None:
            runner = self._runner
            tokenizer = runner.tokenizer() if isinstance(runner, _AsyncEngine) else llm.get_tokenizer()
        self._tokenizer = tokenizer

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        *,
        tokenizer: str | None = None,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        enable_prefix_caching: bool = True,
        dtype: str = "auto",
        lora_path: str | None = None,
        max_lora_rank: int = 32,
        revision: str | None = None,
        trust_remote_code: bool = False,
        use_tqdm: bool = False,
        engine: str = "offline",
        engine_options: Mapping[str, Any] | None = None,
        **more_engine_options: Any,
    ) -> VLLMBackend:
        """Build ``vllm.LLM(model, ...)`` with the official engine settings as defaults.

        Official (model-reference §1.6): ``gpu_memory_utilization=0.9``, ``tensor_parallel_size`` = number of
        GPUs (4 in the scripts), LoRA with ``max_lora_rank=32`` when ``lora_path`` is given, no ``max_model_len``
        (the model's own). Prefix caching is on: every window of a query shares the system prompt and
        instructions. ``data_parallel_size`` > 1 is refused: vLLM's ``LLM`` does not do data parallelism in
        one process; run replicas on Ray (:func:`reasonrank.distributed.run_eval_on_ray`, ``reasonrank eval
        --ray --replicas N``) or serve with ``vllm serve --data-parallel-size N`` and use ``backend="openai"``.
        Any other ``vllm.LLM``/``EngineArgs`` keyword
        (``enforce_eager``, ``quantization``, ``seed``, ``download_dir``, ``max_num_seqs``, ...) passes through,
        as keyword arguments or as ``engine_options={...}``.

        ``engine="async"`` builds ``vllm.AsyncLLMEngine.from_engine_args(AsyncEngineArgs(...))`` instead of
        ``vllm.LLM`` (same settings): windows are added to the running engine as soon as they are ready, so the
        reranker streams (each query advances on its own) instead of one ``generate`` per window round; the
        outputs are the same for greedy decoding. ``"offline"`` (the default) keeps the official batch calls.
        """
        check_model_path(model)
        if engine not in ("offline", "async"):
            raise InvalidInputError(f"engine must be 'offline' (vllm.LLM) or 'async' (AsyncLLMEngine), got {engine!r}")
        for name, value in (("tensor_parallel_size", tensor_parallel_size), ("data_parallel_size", data_parallel_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
        if data_parallel_size > 1:
            raise InvalidInputError(
                f"data_parallel_size={data_parallel_size}: the vLLM backend runs one engine. For {data_parallel_size} "
                f"replicas, run them on Ray: `reasonrank eval --ray --replicas {data_parallel_size}` or "
                "reasonrank.distributed.run_eval_on_ray(RerankerSpec(model, backend='vllm', ...), data, output_dir, "
                f"replicas={data_parallel_size}, num_gpus=tensor_parallel_size) (pip install 'reasonrank[ray]'); or "
                f"serve the model with `vllm serve MODEL --data-parallel-size {data_parallel_size}` and use "
                "backend='openai' with its URL"
            )
        if tokenizer is not None and not isinstance(tokenizer, str):
            raise InvalidInputError(
                "the vLLM backend loads its tokenizer itself: pass tokenizer= as a name or path, not an object"
            )
        kwargs: dict[str, Any] = {
            "model": model,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "dtype": dtype,
            "enable_prefix_caching": enable_prefix_caching,
            "trust_remote_code": trust_remote_code,
        }
        optional = {"tokenizer": tokenizer, "max_model_len": max_model_len, "revision": revision}
        kwargs.update({k: v for k, v in optional.items() if v is not None})
        if lora_path is not None:
            kwargs.update(enable_lora=True, max_lora_rank=max_lora_rank)
        kwargs.update(engine_options or {})
        kwargs.update(more_engine_options)
        vllm = _import_vllm()
        if engine == "async":
            logger.info("loading %s on vLLM's async engine (tensor_parallel_size=%d)", model, tensor_parallel_size)
            async_engine = vllm.AsyncLLMEngine.from_engine_args(vllm.AsyncEngineArgs(**kwargs))
            return cls(async_engine, lora_request=_lora_request(lora_path))
        logger.info("loading %s on vLLM (tensor_parallel_size=%d)", model, tensor_parallel_size)
        return cls(vllm.LLM(**kwargs), lora_request=_lora_request(lora_path), use_tqdm=use_tqdm)

    @classmethod
    def option_names(cls, *, loading: bool = True) -> frozenset[str] | None:
        """``from_pretrained``'s own keywords plus vLLM's ``EngineArgs`` fields (``None`` without vLLM: any)."""
        if not loading:
            return super().option_names(loading=False)
        try:
            engine_args = _import_vllm().EngineArgs
            engine_fields = {f.name for f in dataclasses.fields(engine_args)}
        except (ImportError, TypeError, AttributeError):  # no vLLM here, or an EngineArgs that is no dataclass
            return None
        own = set(inspect.signature(cls.from_pretrained).parameters) - {"model", "more_engine_options"}
        return frozenset(own | engine_fields)

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def llm(self) -> Any:
        """The ``vllm.LLM`` engine, or the async engine with ``engine="async"``."""
        return self._runner.llm

    @property
    def can_stream(self) -> bool:
        """True on the async engine: windows are added one at a time while others decode."""
        return isinstance(self._runner, _AsyncEngine)

    async def agenerate(self, request: GenerationRequest) -> Generation:
        runner = self._runner
        if not isinstance(runner, _AsyncEngine):
            return await super().agenerate(request)
        return await asyncio.wrap_future(runner.call(runner.generate(request.prompt, request.sampling)))

    def stream(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Generation]]:
        prompts = [r.prompt for r in requests]
        samplings = [r.sampling for r in requests]
        for indices, generations in self._runner.stream(prompts, samplings):
            yield from zip(indices, generations)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        for index, generation in self.stream(requests):
            results[index] = generation
        return results  # type: ignore[return-value]

    def close(self) -> None:
        if isinstance(self._runner, _AsyncEngine):
            self._runner.close()
