"""vLLM backend: offline ``vllm.LLM.generate`` on the rendered prompt strings, as the official pipeline runs.

Install with ``pip install 'reasonrank[vllm]'`` (Linux with a CUDA GPU). ``data_parallel_size=N`` starts N
engine replicas in their own processes, each on its own ``tensor_parallel_size`` GPUs, and splits every window
round between them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import multiprocessing
import os
import traceback
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


def _replica_main(conn: Any, devices: str | None, engine_kwargs: dict[str, Any], lora_path: str | None) -> None:
    """A data-parallel replica: builds its own engine on its GPUs, then serves ``generate`` calls from a pipe."""
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices  # before vLLM (and torch) see the GPUs
    try:
        vllm = _import_vllm()
        engine = _Engine(vllm.LLM(**engine_kwargs), _lora_request(lora_path))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message[0] == "stop":
            return
        _, prompts, samplings = message
        try:
            conn.send(("ok", engine.run(prompts, samplings)))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


def _stop_replicas(processes: list[Any], conns: list[Any]) -> None:
    for conn in conns:
        with contextlib.suppress(OSError, ValueError):
            conn.send(("stop",))
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)


class _ReplicaPool:
    """``size`` engine replicas in spawned processes; ``devices[k]`` is replica k's ``CUDA_VISIBLE_DEVICES``."""

    def __init__(self, size: int, devices: list[str | None], engine_kwargs: dict[str, Any], lora_path: str | None):
        context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
        self.devices = devices
        self.conns: list[Any] = []
        self.processes: list[Any] = []
        for k in range(size):
            parent, child = context.Pipe()
            process = context.Process(
                target=_replica_main,
                args=(child, devices[k], engine_kwargs, lora_path),
                name=f"reasonrank-vllm-replica-{k}",
                daemon=True,
            )
            process.start()
            child.close()
            self.conns.append(parent)
            self.processes.append(process)
        self._finalizer = weakref.finalize(self, _stop_replicas, self.processes, self.conns)
        for k in range(size):
            status, detail = self._receive(k)
            if status != "ready":
                self.close()
                raise BackendError(f"vLLM replica {k} (GPUs {devices[k]}) failed to start:\n{detail}")

    def _receive(self, k: int) -> tuple[str, Any]:
        try:
            message: tuple[str, Any] = self.conns[k].recv()
        except EOFError:
            code = self.processes[k].exitcode
            return "error", f"the replica process exited (exit code {code}) without an answer"
        return message

    def stream(
        self, prompts: Sequence[str], samplings: Sequence[SamplingParams]
    ) -> Iterator[tuple[list[int], list[Generation]]]:
        """Send each replica its share, then yield ``(indices, generations)`` per replica as each finishes."""
        from multiprocessing.connection import wait

        shards = _balanced_shards([len(p) for p in prompts], len(self.conns))
        pending = {}
        for k, indices in enumerate(shards):
            if indices:
                self.conns[k].send(("generate", [prompts[i] for i in indices], [samplings[i] for i in indices]))
                pending[self.conns[k]] = k
        errors = []
        while pending:
            for conn in wait(list(pending)):
                k = pending.pop(conn)
                status, payload = self._receive(k)
                if status == "ok":
                    yield shards[k], payload
                else:
                    errors.append(f"replica {k} (GPUs {self.devices[k]}): {payload}")
        if errors:  # every replica that succeeded has been yielded above
            raise BackendError("vLLM data-parallel generation failed in " + "; ".join(errors))

    def close(self) -> None:
        self._finalizer()


def _balanced_shards(lengths: Sequence[int], parts: int) -> list[list[int]]:
    """Split request indices into ``parts`` groups of about equal total prompt length (longest first).

    >>> _balanced_shards([10, 1, 1, 8], 2)
    [[0], [3, 1, 2]]
    """
    shards: list[list[int]] = [[] for _ in range(parts)]
    loads = [0] * parts
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        k = loads.index(min(loads))
        shards[k].append(i)
        loads[k] += lengths[i]
    return shards


def _visible_devices(data_parallel_size: int, tensor_parallel_size: int) -> list[str | None]:
    """Each replica's ``CUDA_VISIBLE_DEVICES``: consecutive groups of the GPUs this process may use."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    needed = data_parallel_size * tensor_parallel_size
    if visible is not None:
        gpus = [g.strip() for g in visible.split(",") if g.strip()]
        if len(gpus) < needed:
            raise InvalidInputError(
                f"data_parallel_size={data_parallel_size} x tensor_parallel_size={tensor_parallel_size} needs "
                f"{needed} GPUs but CUDA_VISIBLE_DEVICES lists {len(gpus)} ({visible!r})"
            )
    else:
        gpus = [str(g) for g in range(needed)]
    return [
        ",".join(gpus[k * tensor_parallel_size : (k + 1) * tensor_parallel_size]) for k in range(data_parallel_size)
    ]


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
        self._runner: _Engine | _ReplicaPool = (
            llm if isinstance(llm, _ReplicaPool) else _Engine(llm, lora_request, use_tqdm)
        )
        if tokenizer is None:
            if isinstance(llm, _ReplicaPool):
                raise InvalidInputError("a replica pool needs tokenizer=")
            tokenizer = llm.get_tokenizer()
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
        engine_options: Mapping[str, Any] | None = None,
        **more_engine_options: Any,
    ) -> VLLMBackend:
        """Build ``vllm.LLM(model, ...)`` with the official engine settings as defaults.

        Official (model-reference §1.6): ``gpu_memory_utilization=0.9``, ``tensor_parallel_size`` = number of
        GPUs (4 in the scripts), LoRA with ``max_lora_rank=32`` when ``lora_path`` is given, no ``max_model_len``
        (the model's own). Prefix caching is on: every window of a query shares the system prompt and
        instructions. ``data_parallel_size=N`` runs N independent replicas in their own processes (vLLM's
        ``LLM`` does not do data parallelism in one process). Any other ``vllm.LLM``/``EngineArgs`` keyword
        (``enforce_eager``, ``quantization``, ``seed``, ``download_dir``, ``max_num_seqs``, ...) passes through,
        as keyword arguments or as ``engine_options={...}``.
        """
        check_model_path(model)
        for name, value in (("tensor_parallel_size", tensor_parallel_size), ("data_parallel_size", data_parallel_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
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
        if data_parallel_size == 1:
            logger.info("loading %s on vLLM (tensor_parallel_size=%d)", model, tensor_parallel_size)
            return cls(vllm.LLM(**kwargs), lora_request=_lora_request(lora_path), use_tqdm=use_tqdm)
        devices = _visible_devices(data_parallel_size, tensor_parallel_size)
        logger.info("starting %d vLLM replicas of %s on GPUs %s", data_parallel_size, model, devices)
        pool = _ReplicaPool(data_parallel_size, list(devices), kwargs, lora_path)
        try:
            from transformers import AutoTokenizer

            # What vLLM's get_tokenizer() loads, built here because the engines live in other processes.
            hf_tokenizer = AutoTokenizer.from_pretrained(
                tokenizer or model,
                revision=kwargs.get("tokenizer_revision", revision),
                trust_remote_code=trust_remote_code,
            )
        except BaseException:
            pool.close()
            raise
        return cls(pool, tokenizer=hf_tokenizer)

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
        """The ``vllm.LLM`` engine (``None`` with data parallelism: the engines live in replica processes)."""
        return self._runner.llm if isinstance(self._runner, _Engine) else None

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
        if isinstance(self._runner, _ReplicaPool):
            self._runner.close()
