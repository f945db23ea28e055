"""``reasonrank eval --ray [ADDRESS] --replicas N``: the options, and the hand-over to :func:`run_eval_on_ray`."""

from __future__ import annotations

import argparse
import copy
import functools
import os
from collections.abc import Callable
from typing import Any

from .._errors import InvalidInputError
from ..evaluation import EvalData, EvalResult
from ..reranker import Reranker

__all__ = ["add_arguments", "run_eval_from_args"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Ray (pip install 'reasonrank[ray]')")
    group.add_argument(
        "--ray", nargs="?", const="local", metavar="ADDRESS",
        help="rerank on a Ray cluster: a local one without ADDRESS, else 'auto' or the head's host:port "
        "(--output-dir must then be on storage every node sees)",
    )  # fmt: skip
    group.add_argument("--replicas", type=int, default=1, help="rerankers (model copies) working in parallel (--ray)")
    group.add_argument(
        "--gpus-per-replica", type=float,
        help="GPUs each replica reserves (default: tensor_parallel_size with the vllm backend, else 0)",
    )  # fmt: skip
    group.add_argument("--cpus-per-replica", type=float, default=1, help="CPUs each replica reserves (default 1)")


def _gpus_per_replica(args: argparse.Namespace, options: dict[str, Any]) -> float:
    if args.gpus_per_replica is not None:
        return float(args.gpus_per_replica)
    if args.backend == "vllm":
        return float(options.get("tensor_parallel_size", 1))
    return 0.0


def run_eval_from_args(
    args: argparse.Namespace,
    build: Callable[[argparse.Namespace, EvalData | None, dict[str, Any]], Reranker],
    data: EvalData,
    options: dict[str, Any],
    **settings: Any,
) -> EvalResult:
    """Run ``reasonrank eval``'s settings on Ray; ``build(args, data, options)`` makes a replica's reranker."""
    from ._eval import run_eval_on_ray

    if "data_parallel_size" in options:
        raise InvalidInputError(
            "with --ray, the replicas are the data parallelism: use --replicas N, not data_parallel_size"
        )
    replica_args = copy.copy(args)
    if args.model and os.path.exists(args.model):  # replicas may not share this process's working directory
        replica_args.model = os.path.abspath(args.model)
    oracle_data = data if args.backend == "oracle" else None  # only the oracle reads the data in a replica
    return run_eval_on_ray(
        functools.partial(build, replica_args, oracle_data, dict(options)),
        data,
        args.output_dir,
        replicas=args.replicas,
        address=None if args.ray == "local" else args.ray,
        num_gpus=_gpus_per_replica(args, options),
        num_cpus=args.cpus_per_replica,
        extra_summary={"load_seconds": 0.0},  # filled in with the slowest replica's
        **settings,
    )
