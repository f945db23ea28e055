"""Cold-start SFT and GRPO over TRL's ``SFTTrainer`` and ``GRPOTrainer``, full fine-tuning or LoRA (PEFT).

Checkpoints are written so that ``Reranker.from_pretrained(output_dir, template=...)`` loads them: model and
tokenizer in ``output_dir``, LoRA adapters merged into the base weights unless ``merge_lora=False`` (then the
adapter is saved in ``output_dir/adapter`` and the merged model still goes to ``output_dir``).

Defaults follow the official recipes (model-reference §3.2, §3.4); the shipped YAML files in
``reasonrank/train/configs/`` hold them in full (see :func:`default_config`). On a machine without CUDA the
trainers set ``use_cpu=True`` and ``bf16=False``: TRL defaults to bf16, which CPU training cannot use well.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError, MissingDependencyError
from .rewards import multiview_reward, rearank_reward

__all__ = ["REWARDS", "available_configs", "default_config", "load_config", "train_grpo", "train_sft"]

logger = logging.getLogger(__name__)

#: reward functions by name, for configs (``reward: multiview``)
REWARDS: dict[str, Callable[..., list[float]]] = {"multiview": multiview_reward, "rearank": rearank_reward}


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(module.split(".")[0], "train", "training") from e


def available_configs() -> list[str]:
    """Names of the shipped recipe configs (``sft-7b-full``, ``grpo-32b-lora``, ...)."""
    return sorted(
        p.name[: -len(".yaml")]
        for p in resources.files(__package__).joinpath("configs").iterdir()
        if p.name.endswith(".yaml")
    )


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML recipe config (a shipped name such as ``"grpo-7b-full"`` works too).

    Keys: ``model`` (hub id or path), ``output_dir``, ``data`` (see :func:`reasonrank.train.cli` docs), optional
    ``lora`` (a ``peft.LoraConfig`` mapping), ``reward`` (GRPO: ``multiview`` or ``rearank``), ``merge_lora``,
    ``args`` (fields of TRL's ``SFTConfig``/``GRPOConfig``), and ``base`` (a config to extend).
    """
    yaml = _require("yaml")
    text: str
    name = os.fspath(path)
    if name in available_configs():
        text = resources.files(__package__).joinpath("configs").joinpath(name + ".yaml").read_text(encoding="utf-8")
    else:
        if not os.path.isfile(name):
            shipped = ", ".join(available_configs())
            raise InvalidInputError(f"config {name!r} is neither a file nor a shipped config ({shipped})")
        text = Path(name).read_text(encoding="utf-8")
    config = yaml.safe_load(text) or {}
    if not isinstance(config, dict):
        raise InvalidInputError(f"{name}: a config is a YAML mapping")
    base = config.pop("base", None)
    if base:
        merged = load_config(base)
        merged["args"] = {**merged.get("args", {}), **config.pop("args", {})}
        merged.update(config)
        return merged
    return config


def default_config(name: str) -> dict[str, Any]:
    """A shipped recipe: ``sft-7b-full``, ``sft-32b-lora``, ``grpo-7b-full``, ``grpo-32b-lora``, ``grpo-rearank-7b``."""
    return load_config(name)


def _device_args(args: dict[str, Any]) -> dict[str, Any]:
    import torch

    args = dict(args)
    for key in ("save_strategy", "eval_strategy", "logging_strategy"):
        if args.get(key) is False:  # `save_strategy: no` in YAML 1.1 is the boolean False
            args[key] = "no"
    if not torch.cuda.is_available():
        if args.get("bf16"):
            logger.warning("no CUDA device: bf16 turned off (TRL's bf16 default does not train well on CPU)")
        args["bf16"] = False
        args["use_cpu"] = True
        args.setdefault("gradient_checkpointing", False)
    args.setdefault("report_to", "none")
    return args


def _dataset(rows: Any) -> Any:
    datasets = _require("datasets")
    if isinstance(rows, (datasets.Dataset, datasets.IterableDataset)):
        return rows
    if isinstance(rows, Sequence) and rows and isinstance(rows[0], Mapping):
        return datasets.Dataset.from_list([dict(r) for r in rows])
    raise InvalidInputError("train_dataset must be a datasets.Dataset or a non-empty list of row dicts")


def _lora(lora: Mapping[str, Any] | Any | None) -> Any:
    if lora is None or lora is False:
        return None
    peft = _require("peft")
    if isinstance(lora, peft.PeftConfig):
        return lora
    settings = {"r": 32, "lora_alpha": 32, "target_modules": "all-linear", "task_type": "CAUSAL_LM"}
    settings.update(dict(lora) if isinstance(lora, Mapping) else {})
    return peft.LoraConfig(**settings)


def _tokenizer(model: Any, tokenizer: Any) -> Any:
    if tokenizer is not None and not isinstance(tokenizer, str):
        return tokenizer
    transformers = _require("transformers")
    source = tokenizer or (model if isinstance(model, str) else getattr(model, "name_or_path", None))
    if not source:
        raise InvalidInputError("pass tokenizer=... when the model is given as an object without a name_or_path")
    return transformers.AutoTokenizer.from_pretrained(source)


def _save(trainer: Any, tokenizer: Any, output_dir: str, merge_lora: bool) -> str:
    model = trainer.model
    if hasattr(model, "merge_and_unload"):  # a PEFT model
        model.save_pretrained(os.path.join(output_dir, "adapter"))
        if merge_lora:
            model = model.merge_and_unload()
        else:
            trainer.save_model(output_dir)
            tokenizer.save_pretrained(output_dir)
            return output_dir
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    logger.info("saved the checkpoint to %s", output_dir)
    return output_dir


def train_sft(
    model: Any,
    train_dataset: Any,
    *,
    output_dir: str | os.PathLike[str],
    tokenizer: Any = None,
    lora: Mapping[str, Any] | Any | None = None,
    merge_lora: bool = True,
    **args: Any,
) -> str:
    """Cold-start SFT on prompt–completion rows (:func:`~reasonrank.train.sft_example`), loss on the completion.

    ``model``: hub id, local path or a ``PreTrainedModel``; ``lora``: ``None`` for full fine-tuning, a mapping of
    ``peft.LoraConfig`` fields (defaults r=32, α=32, all linear layers as the 32B recipe) or a ``LoraConfig``;
    ``args``: ``trl.SFTConfig`` fields. The completion ends with ``<|im_end|>`` when the vocabulary has it (the
    ChatML end of turn LLaMA-Factory's ``qwen`` template trains on). Returns ``output_dir``.
    """
    tok = _tokenizer(model, tokenizer)
    if "<|im_end|>" in tok.get_vocab():
        args.setdefault("eos_token", "<|im_end|>")
    return _fit("SFT", model, train_dataset, tok, os.fspath(output_dir), lora, merge_lora, args, {})


def _fit(
    kind: str,
    model: Any,
    rows: Any,
    tok: Any,
    output_dir: str,
    lora: Any,
    merge_lora: bool,
    args: dict[str, Any],
    extra: dict[str, Any],
) -> str:
    """Build TRL's ``{kind}Trainer`` with ``{kind}Config(**args)``, train, and save a loadable checkpoint."""
    trl = _require("trl")
    settings = _device_args({"output_dir": output_dir, **args})
    settings.setdefault("save_strategy", "no")
    trainer = getattr(trl, f"{kind}Trainer")(
        model=model,
        args=getattr(trl, f"{kind}Config")(**settings),
        train_dataset=_dataset(rows),
        processing_class=tok,
        peft_config=_lora(lora),
        **extra,
    )
    trainer.train()
    return _save(trainer, tok, output_dir, merge_lora)


def train_grpo(
    model: Any,
    train_dataset: Any,
    *,
    output_dir: str | os.PathLike[str],
    reward: str | Callable[..., list[float]] | Sequence[Callable[..., list[float]]] = "multiview",
    tokenizer: Any = None,
    lora: Mapping[str, Any] | Any | None = None,
    merge_lora: bool = True,
    **args: Any,
) -> str:
    """GRPO on prompt rows with reward columns (:func:`~reasonrank.train.grpo_example` for ``"multiview"``,
    :func:`~reasonrank.train.rearank_example` for ``"rearank"``). ``args``: ``trl.GRPOConfig`` fields
    (``use_vllm=True`` generates with TRL's vLLM integration where vLLM is installed). Returns ``output_dir``.
    """
    if isinstance(reward, str):
        if reward not in REWARDS:
            raise InvalidInputError(f"unknown reward {reward!r}; use one of {', '.join(REWARDS)} or a function")
        reward_funcs: Any = REWARDS[reward]
    else:
        reward_funcs = reward
    tok = _tokenizer(model, tokenizer)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    extra = {"reward_funcs": reward_funcs}
    return _fit("GRPO", model, train_dataset, tok, os.fspath(output_dir), lora, merge_lora, args, extra)
