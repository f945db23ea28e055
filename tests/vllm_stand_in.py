"""A stand-in for the parts of vLLM the backend uses, with the real signatures (vLLM 0.8.5 .. current).

vLLM cannot be installed on CPU machines, so the unit tests put a package named ``vllm`` on ``sys.path`` whose
``LLM``, ``SamplingParams`` and ``lora.request.LoRARequest`` are these classes (see the ``stand_in_vllm``
fixture in test_backend_vllm.py). They check their arguments as vLLM does, tokenize with a real Hugging Face
tokenizer, and answer with :func:`fake_outputs.fake_output` (a function of the exact prompt bytes), so the
official pipeline vectors apply.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fake_outputs import fake_output

#: every engine built in this process: the keyword arguments it got
ENGINES: list[dict[str, Any]] = []
#: every generate() call in this process: prompts, sampling_params (as passed), use_tqdm, lora_request
CALLS: list[dict[str, Any]] = []

# EngineArgs fields the tests use or that users commonly pass (a subset of vLLM's; others raise TypeError as
# EngineArgs(**kwargs) does for an unknown name).
_ENGINE_ARGS = {
    "model", "tokenizer", "tokenizer_mode", "skip_tokenizer_init", "trust_remote_code", "tensor_parallel_size",
    "dtype", "quantization", "revision", "tokenizer_revision", "seed", "gpu_memory_utilization", "swap_space",
    "cpu_offload_gb", "enforce_eager", "max_model_len", "enable_prefix_caching", "enable_lora", "max_lora_rank",
    "max_loras", "download_dir", "max_num_seqs", "max_num_batched_tokens", "distributed_executor_backend",
    "pipeline_parallel_size", "enable_chunked_prefill", "disable_log_stats", "hf_overrides",
}  # fmt: skip

_NUM = re.compile(r"I will provide you with (\d+) passages")


def default_responder(prompt: str) -> str:
    """The official vectors' stand-in model; ``EXPLODE`` in a prompt makes the whole generate() call fail."""
    if "EXPLODE" in prompt:
        raise RuntimeError("stand-in engine failure (EXPLODE in a prompt)")
    match = _NUM.search(prompt)
    num = int(match.group(1)) if match else 2
    return fake_output(prompt, num, tags=True)


RESPONDER: Callable[[str], str] = default_responder


class SamplingParams:
    """Keyword fields and checks of vLLM's SamplingParams (0.8.x rejects top_k == 0; -1 turns top-k off)."""

    def __init__(
        self,
        *,
        n: int = 1,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repetition_penalty: float = 1.0,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = -1,
        min_p: float = 0.0,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        stop_token_ids: list[int] | None = None,
        ignore_eos: bool = False,
        max_tokens: int | None = 16,
        min_tokens: int = 0,
        logprobs: int | None = None,
        skip_special_tokens: bool = True,
        spaces_between_special_tokens: bool = True,
        include_stop_str_in_output: bool = False,
    ) -> None:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}.")
        if temperature < 0.0:
            raise ValueError(f"temperature must be non-negative, got {temperature}.")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}.")
        if top_k < -1 or top_k == 0:
            raise ValueError(f"top_k must be -1 (disable), or at least 1, got {top_k}.")
        if not 0.0 <= min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}.")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}.")
        if min_tokens < 0 or (max_tokens is not None and min_tokens > max_tokens):
            raise ValueError(f"min_tokens must be in [0, max_tokens], got {min_tokens}.")
        if repetition_penalty <= 0.0:
            raise ValueError(f"repetition_penalty must be greater than zero, got {repetition_penalty}.")
        self.n = n
        self.presence_penalty = presence_penalty
        self.frequency_penalty = frequency_penalty
        self.repetition_penalty = repetition_penalty
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.min_p = min_p
        self.seed = seed
        self.stop = [stop] if isinstance(stop, str) else list(stop or [])
        self.stop_token_ids = stop_token_ids
        self.ignore_eos = ignore_eos
        self.max_tokens = max_tokens
        self.min_tokens = min_tokens
        self.logprobs = logprobs
        self.skip_special_tokens = skip_special_tokens
        self.spaces_between_special_tokens = spaces_between_special_tokens
        self.include_stop_str_in_output = include_stop_str_in_output

    def __repr__(self) -> str:
        return f"SamplingParams({vars(self)})"


@dataclass
class LoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str = ""

    def __post_init__(self) -> None:
        if self.lora_int_id < 1:
            raise ValueError(f"id must be > 0, got {self.lora_int_id}")


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: Sequence[int]
    cumulative_logprob: float | None
    logprobs: Any
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: Any
    outputs: list[CompletionOutput] = field(default_factory=list)
    finished: bool = True


class LLM:
    """``vllm.LLM``'s constructor and ``generate``/``get_tokenizer`` interface over a real HF tokenizer."""

    def __init__(
        self,
        model: str,
        *,
        tokenizer: str | None = None,
        trust_remote_code: bool = False,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        quantization: str | None = None,
        revision: str | None = None,
        tokenizer_revision: str | None = None,
        seed: int | None = None,
        gpu_memory_utilization: float = 0.9,
        swap_space: float = 4,
        cpu_offload_gb: float = 0,
        enforce_eager: bool = False,
        **kwargs: Any,
    ) -> None:
        unknown = set(kwargs) - _ENGINE_ARGS
        if unknown:
            raise TypeError(f"EngineArgs.__init__() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"GPU memory utilization must be within (0, 1]. Got {gpu_memory_utilization}.")
        from transformers import AutoTokenizer

        self.kwargs = dict(
            kwargs,
            model=model,
            tokenizer=tokenizer,
            trust_remote_code=trust_remote_code,
            tensor_parallel_size=tensor_parallel_size,
            dtype=dtype,
            quantization=quantization,
            revision=revision,
            tokenizer_revision=tokenizer_revision,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=enforce_eager,
        )
        ENGINES.append(self.kwargs)
        self._tokenizer = AutoTokenizer.from_pretrained(tokenizer or model, revision=tokenizer_revision)
        self._counter = 0

    def get_tokenizer(self, lora_request: LoRARequest | None = None) -> Any:
        return self._tokenizer

    def generate(
        self,
        prompts: str | Sequence[str],
        /,
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        use_tqdm: bool = True,
        lora_request: LoRARequest | list[LoRARequest] | None = None,
    ) -> list[RequestOutput]:
        prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
        if sampling_params is None:
            sampling_params = SamplingParams()
        if isinstance(sampling_params, SamplingParams):
            params = [sampling_params] * len(prompt_list)
        else:
            params = list(sampling_params)
            if len(params) != len(prompt_list):
                raise ValueError("The lengths of prompts and sampling_params must be the same.")
        for p in params:
            if not isinstance(p, SamplingParams):
                raise TypeError(f"sampling_params must be SamplingParams, got {type(p).__name__}")
        if lora_request is not None and not isinstance(lora_request, (LoRARequest, list)):
            raise TypeError(f"Invalid lora_request type {type(lora_request)}")
        CALLS.append(
            {"prompts": prompt_list, "sampling_params": sampling_params, "use_tqdm": use_tqdm, "lora": lora_request}
        )
        return [self._one(prompt, p) for prompt, p in zip(prompt_list, params)]

    def _one(self, prompt: str, params: SamplingParams) -> RequestOutput:
        tok = self._tokenizer
        prompt_ids = tok(prompt)["input_ids"]  # string prompts: the tokenizer's default add_special_tokens
        ids = [*tok.encode(RESPONDER(prompt), add_special_tokens=False), tok.eos_token_id]
        finish = "stop"
        if params.max_tokens is not None and len(ids) > params.max_tokens:
            ids, finish = ids[: params.max_tokens], "length"
        text = tok.decode(ids, skip_special_tokens=params.skip_special_tokens)
        self._counter += 1
        completion = CompletionOutput(0, text, ids, None, None, finish)
        return RequestOutput(str(self._counter), prompt, prompt_ids, None, [completion])


# ---------------------------------------------------------------------------------------------- async engine

#: every async request: (request_id, number of other requests decoding when it was added)
ADDED: list[tuple[str, int]] = []
#: request ids aborted before they finished (a cancelled caller)
ABORTED: list[str] = []


class AsyncEngineArgs:
    """``vllm.AsyncEngineArgs``: the engine keyword arguments (unknown names raise TypeError)."""

    def __init__(self, model: str, **kwargs: Any) -> None:
        unknown = set(kwargs) - _ENGINE_ARGS
        if unknown:
            raise TypeError(f"AsyncEngineArgs.__init__() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        self.kwargs = dict(kwargs, model=model)


class AsyncLLMEngine:
    """``vllm.AsyncLLMEngine`` / ``vllm.v1.engine.async_llm.AsyncLLM``: one engine that decodes every running
    request a few tokens per step, takes new requests while others decode, and streams ``RequestOutput`` s
    (``finished`` on the last) from ``generate(prompt, sampling_params, request_id)``, an async generator.

    Like vLLM, its background loop belongs to the event loop that first used it (another loop gets a
    RuntimeError), a request id may not be reused, and a generator closed early aborts its request.
    """

    TOKENS_PER_STEP = 16
    STEP_SECONDS = 0.0005

    def __init__(self, engine_args: AsyncEngineArgs) -> None:
        self.offline = LLM(**engine_args.kwargs)  # the same checks and tokenizer
        self._loop: Any = None
        self._running: dict[str, Any] = {}  # request id -> its queue of outputs
        self._seen: set[str] = set()
        self._wake: Any = None

    @classmethod
    def from_engine_args(cls, engine_args: AsyncEngineArgs, **kwargs: Any) -> AsyncLLMEngine:
        return cls(engine_args)

    async def get_tokenizer(self, lora_request: LoRARequest | None = None) -> Any:
        return self.offline.get_tokenizer()

    async def generate(
        self,
        prompt: str,
        sampling_params: SamplingParams,
        request_id: str,
        *,
        lora_request: LoRARequest | None = None,
        **kwargs: Any,
    ) -> Any:
        import asyncio

        if not isinstance(sampling_params, SamplingParams):
            raise TypeError(f"sampling_params must be SamplingParams, got {type(sampling_params).__name__}")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop, self._wake = loop, asyncio.Event()
            self._task = loop.create_task(self._engine_loop())
        elif self._loop is not loop:
            raise RuntimeError("the engine's background loop is attached to a different event loop")
        if request_id in self._seen:
            raise ValueError(f"Request id {request_id} already running.")
        self._seen.add(request_id)
        final = self.offline._one(prompt, sampling_params)  # the whole answer, revealed a step at a time
        CALLS.append({"prompts": [prompt], "sampling_params": sampling_params, "use_tqdm": False, "lora": lora_request})
        queue: asyncio.Queue[Any] = asyncio.Queue()
        ADDED.append((request_id, len(self._running)))
        self._running[request_id] = (queue, final, [0])
        self._wake.set()
        try:
            while True:
                output = await queue.get()
                yield output
                if output.finished:
                    return
        finally:
            if self._running.pop(request_id, None) is not None:
                ABORTED.append(request_id)

    async def abort(self, request_id: str) -> None:
        if self._running.pop(request_id, None) is not None:
            ABORTED.append(request_id)

    async def _engine_loop(self) -> None:
        import asyncio

        tok = self.offline.get_tokenizer()
        while True:
            if not self._running:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(self.STEP_SECONDS)
            for request_id, (queue, final, shown) in list(self._running.items()):
                completion = final.outputs[0]
                shown[0] = min(len(completion.token_ids), shown[0] + self.TOKENS_PER_STEP)
                done = shown[0] == len(completion.token_ids)
                ids = list(completion.token_ids[: shown[0]])
                text = completion.text if done else tok.decode(ids, skip_special_tokens=True)
                partial = CompletionOutput(0, text, ids, None, None, completion.finish_reason if done else None)
                queue.put_nowait(
                    RequestOutput(request_id, final.prompt, final.prompt_token_ids, None, [partial], finished=done)
                )
                if done:
                    del self._running[request_id]
