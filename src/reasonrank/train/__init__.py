"""Training recipes of ReasonRank (cold-start SFT, then GRPO with the multi-view reward) and REARANK (GRPO with
the normalised reward and initial-state expansion), over TRL. Install with ``pip install 'reasonrank[train]'``.

:mod:`reasonrank.train.rewards` and :mod:`reasonrank.train.data` need neither torch nor TRL; the trainers
(:func:`train_sft`, :func:`train_grpo`) and :func:`synthesize` load them on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .data import (
    FilterReport,
    TrainingList,
    answer_string,
    expand_initial_states,
    grpo_example,
    lists_from_collection,
    load_reasonrank_jsonl,
    load_rl_parquet,
    load_sft_json,
    rearank_example,
    self_consistency_filter,
    sft_example,
    write_reasonrank_jsonl,
)
from .rewards import multiview_reward, multiview_score, rearank_reward, rearank_score

if TYPE_CHECKING:  # loaded on first use (they import torch and TRL); named here for type checkers and the docs
    from .synthesis import synthesize
    from .trainers import default_config, load_config, train_grpo, train_sft

__all__ = [
    "FilterReport",
    "TrainingList",
    "answer_string",
    "default_config",
    "expand_initial_states",
    "grpo_example",
    "lists_from_collection",
    "load_config",
    "load_reasonrank_jsonl",
    "load_rl_parquet",
    "load_sft_json",
    "multiview_reward",
    "multiview_score",
    "rearank_example",
    "rearank_reward",
    "rearank_score",
    "self_consistency_filter",
    "sft_example",
    "synthesize",
    "train_grpo",
    "train_sft",
    "write_reasonrank_jsonl",
]

_LAZY = {
    "train_sft": "trainers",
    "train_grpo": "trainers",
    "load_config": "trainers",
    "synthesize": "synthesis",
    "default_config": "trainers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
