"""``reasonrank train sft|grpo|synthesize``: the recipes from a YAML config (see docs/training.md).

``data`` in a config says where examples come from (``format``):

* ``reasonrank_jsonl`` — ``path`` to ``training_data_all.jsonl`` (``id_query``/``id_doc`` beside it or given),
  filtered with ``alpha``/``inclusive`` (``alpha: null`` keeps all), rendered with ``template``;
* ``sft_json`` — the released SFT alpaca JSON; ``rl_parquet`` — the released RL parquet;
* ``rows_jsonl`` — ready rows (``prompt``/``completion`` for SFT, ``prompt`` + reward columns for GRPO);
* ``collection`` — ``queries``, ``run``, ``qrels``, ``corpus`` files (the evaluation readers), top-``depth``
  lists; for the ``rearank`` reward, expanded with ``samples``/``size``/``min_ndcg``/``floor_on``/``seed``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping
from typing import Any

from .._errors import InvalidInputError, ReasonRankError

__all__ = ["add_arguments", "build_examples", "run"]

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="train_command", required=True)
    for name, helptext in (("sft", "cold-start SFT"), ("grpo", "GRPO")):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument(
            "--config",
            required=True,
            help="YAML recipe, or a shipped one (sft-7b-full, grpo-7b-full, ...)",
        )
        sp.add_argument("--output-dir", help="overrides the config's output_dir")
        sp.add_argument("--model", help="overrides the config's model")
        sp.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a trainer argument (YAML value), e.g. --set max_steps=2",
        )
    sp = sub.add_parser("synthesize", help="teacher labels + rankings + self-consistency filter")
    sp.add_argument("--data", help="training_data_all.jsonl with id_query/ and id_doc/ (its rankings are redone)")
    sp.add_argument("--queries", help="or a collection: queries file (with --run and --corpus)")
    sp.add_argument("--run", help="first-stage TREC run")
    sp.add_argument("--corpus", help="passages (TSV or JSONL)")
    sp.add_argument("--qrels", help="gold judgments: skip the teacher's pointwise labels where given")
    sp.add_argument("--depth", type=int, default=20, help="candidates per query from the run (default 20)")
    sp.add_argument("--backend", default="openai", help="teacher backend name (default openai)")
    sp.add_argument("--model", required=True, help="teacher model, e.g. deepseek-reasoner")
    sp.add_argument("--base-url", help="OpenAI-compatible server for the openai backend")
    sp.add_argument("--cache", help="JSONL generation cache (resumable)")
    sp.add_argument("--alpha", type=float, default=0.4)
    sp.add_argument("--inclusive", action="store_true", help="keep lists whose nDCG@10 equals alpha")
    sp.add_argument("--output", required=True, help="write the kept lists here (training_data_all.jsonl layout)")
    sp.add_argument("--no-progress", action="store_true")


def _overrides(pairs: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidInputError(f"--set expects KEY=VALUE, got {pair!r}")
        parsed = yaml.safe_load(value)
        # YAML 1.1 reads no/yes/on/off as booleans; `--set save_strategy=no` means the string
        out[key.strip()] = value.strip() if isinstance(parsed, bool) and value.strip().lower() not in _BOOLS else parsed
    return out


_BOOLS = ("true", "false")


def _lists(data: Mapping[str, Any]) -> list[Any]:
    from ..io import read_corpus, read_qrels, read_queries, read_run
    from .data import lists_from_collection, load_reasonrank_jsonl, self_consistency_filter

    fmt = data.get("format")
    if fmt == "reasonrank_jsonl":
        lists = load_reasonrank_jsonl(data["path"], id_query=data.get("id_query"), id_doc=data.get("id_doc"))
        if data.get("alpha") is not None:
            lists, report = self_consistency_filter(lists, data["alpha"], inclusive=bool(data.get("inclusive")))
            logger.warning("%s", report)
        return lists
    run = read_run(data["run"])
    corpus = read_corpus(data["corpus"], ids={d for scores in run.values() for d in scores})
    qrels = read_qrels(data["qrels"]) if data.get("qrels") else None
    return lists_from_collection(read_queries(data["queries"]), run, corpus, qrels, depth=int(data.get("depth", 20)))


def build_examples(kind: str, config: Mapping[str, Any], tokenizer: Any) -> list[dict[str, Any]]:
    """The training rows a config's ``data`` section describes, rendered with ``tokenizer`` (the model's)."""
    from .data import expand_initial_states, grpo_example, load_rl_parquet, load_sft_json, rearank_example, sft_example

    data = config.get("data") or {}
    fmt, template = data.get("format"), config.get("template", "reasonrank")
    if fmt == "rows_jsonl":
        with open(data["path"], encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    if fmt == "sft_json":
        return load_sft_json(data["path"], tokenizer=tokenizer, template=template)
    if fmt == "rl_parquet":
        return load_rl_parquet(data["path"], tokenizer=tokenizer, template=template)
    if fmt not in ("reasonrank_jsonl", "collection"):
        raise InvalidInputError(
            f"data.format must be reasonrank_jsonl, sft_json, rl_parquet, rows_jsonl or collection, got {fmt!r}"
        )
    lists = _lists(data)
    if kind == "sft":
        return [sft_example(x, template=template, tokenizer=tokenizer) for x in lists]
    if config.get("reward", "multiview") == "rearank":
        rows = []
        for item in lists:
            kept, counts = expand_initial_states(
                item,
                samples=int(data.get("samples", 50)),
                size=int(data.get("size", 20)),
                min_ndcg=float(data.get("min_ndcg", 0.1)),
                floor_on=data.get("floor_on", "initial"),
                seed=int(data.get("seed", 0)),
            )
            logger.warning("initial-state expansion of %s: %s", item.qid, counts)
            rows += [rearank_example(x, template=template, tokenizer=tokenizer) for x in kept]
        return rows
    return [grpo_example(x, template=template, tokenizer=tokenizer) for x in lists]


def _train(kind: str, args: argparse.Namespace) -> int:
    from .trainers import _tokenizer, load_config, train_grpo, train_sft

    config = load_config(args.config)
    if args.model:
        config["model"] = args.model
    if args.output_dir:
        config["output_dir"] = args.output_dir
    trainer_args = {**(config.get("args") or {}), **_overrides(args.set)}
    if not config.get("model") or not config.get("output_dir"):
        raise InvalidInputError("the config needs model and output_dir (or pass --model / --output-dir)")
    tokenizer = _tokenizer(config["model"], config.get("tokenizer"))
    rows = build_examples(kind, config, tokenizer)
    common = dict(
        output_dir=config["output_dir"],
        tokenizer=tokenizer,
        lora=config.get("lora"),
        merge_lora=config.get("merge_lora", True),
        **trainer_args,
    )
    if kind == "sft":
        out = train_sft(config["model"], rows, **common)
    else:
        out = train_grpo(config["model"], rows, reward=config.get("reward", "multiview"), **common)
    sys.stdout.write(out + "\n")  # the checkpoint directory, for scripts
    return 0


def _synthesize(args: argparse.Namespace) -> int:
    from ..backends import get_backend_class
    from .data import load_reasonrank_jsonl, write_reasonrank_jsonl
    from .synthesis import synthesize

    if args.run and args.queries and args.corpus:
        lists = _lists(
            {
                "format": "collection",
                "queries": args.queries,
                "run": args.run,
                "corpus": args.corpus,
                "qrels": args.qrels,
                "depth": args.depth,
            }
        )
    elif args.data:
        lists = load_reasonrank_jsonl(args.data)
        for item in lists:
            item.final_list, item.reasoning = None, None
    else:
        raise InvalidInputError("pass --data, or --queries, --run and --corpus")
    options: dict[str, Any] = {"model": args.model}
    if args.base_url:
        options["base_url"] = args.base_url
    backend = get_backend_class(args.backend)(**options)
    kept, report = synthesize(
        lists,
        backend,
        cache=args.cache,
        model_id=f"{args.backend}:{args.model}",
        alpha=args.alpha,
        inclusive=args.inclusive,
        progress=not args.no_progress,
    )
    if report is not None:
        logger.warning("%s", report)
    write_reasonrank_jsonl(kept, args.output)
    sys.stdout.write(f"{len(kept)} lists written to {args.output}\n")
    return 0


def run(args: argparse.Namespace) -> int:
    """Train a reranker: cold-start SFT, GRPO, or teacher synthesis of training data."""
    try:
        if args.train_command == "synthesize":
            return _synthesize(args)
        return _train(args.train_command, args)
    except ReasonRankError as e:
        logger.error("%s", e)
        return 2
