"""``reasonrank eval``: rerank a test collection, evaluate, and keep everything resumable in one directory."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ._errors import InvalidInputError, ReasonRankError
from .backends import Backend, Generation, GenerationRequest
from .metrics import DEFAULT_METRICS

__all__ = ["add_arguments", "add_model_arguments", "add_reranking_arguments", "run"]

_DRY_BACKENDS = ("fake", "oracle")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset", choices=("noveleval",), help="a bundled test collection instead of the files below (noveleval: "
        "NovelEval-2306, 21 queries x 20 candidates)"
    )  # fmt: skip
    data.add_argument(
        "--qrels", help="TREC qrels (or JSON {qid: {docid: rel}}), plain or .gz (required without --dataset)"
    )
    data.add_argument("--run", help="first-stage TREC run; its file order is the order candidates are reranked in")
    data.add_argument("--queries", help="queries: TSV (qid<TAB>text) or JSONL (_id/id, text)")
    data.add_argument("--corpus", help="passages: TSV (docid<TAB>text) or JSONL (_id/id, text/contents, title)")
    data.add_argument("--data-json", help="RankGPT-style data.json with query texts and hits (replaces the 3 above)")
    data.add_argument("--lenient", action="store_true", help="skip run lines without 6 fields (official loader)")
    data.add_argument("--depth", type=int, help="candidates per query taken from the run (official: 100)")
    data.add_argument("--candidate-order", choices=("file", "score"), default="file", help="default: file (official)")
    data.add_argument(
        "--tsv-quoting", choices=("auto", "csv", "none"), default="auto",
        help="TSV fields quoted CSV-style (\"a \"\"b\"\"\"): auto-detected by default",
    )  # fmt: skip
    data.add_argument("--limit", type=int, help="only the first N queries (a quick look)")

    model = add_model_arguments(parser)
    model.add_argument("--model-id", help="name of the model in the cache (default: backend, model, file, dtype)")
    rerank = add_reranking_arguments(parser)
    rerank.add_argument("--query-batch-size", type=int, default=64, help="queries reranked together (default 64)")

    out = parser.add_argument_group("output")
    out.add_argument("--output-dir", required=True, help="directory for run, metrics, traces, cache")
    out.add_argument(
        "--metrics", default=",".join(DEFAULT_METRICS), help=f"comma-separated (default {','.join(DEFAULT_METRICS)})"
    )
    out.add_argument("--average", choices=("both", "qrels"), default="both", help="trec_eval default: both")
    out.add_argument(
        "--scores", choices=("rank", "positional"), default="rank",
        help="run scores: rank (n..1) or positional (official: first-stage scores stay with positions)",
    )  # fmt: skip
    out.add_argument("--tag", default="reasonrank", help="run tag (last column)")
    out.add_argument("--overwrite", action="store_true", help="discard an earlier run in --output-dir")
    out.add_argument("--no-progress", action="store_true", help="hide progress bars (the library's and transformers')")

    from .distributed._cli import add_arguments as add_ray_arguments

    add_ray_arguments(parser)


def add_model_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The model and backend options of ``reasonrank eval`` (also taken by ``reasonrank serve``)."""
    model = parser.add_argument_group("model")
    model.add_argument("--model", help="hub id or local path (a .gguf file works with the hf backend)")
    model.add_argument(
        "--backend", default="hf", help="backend name (default hf); 'fake' keeps each window's order, 'oracle' "
        "orders windows by the qrels (dry runs without a model)"
    )  # fmt: skip
    model.add_argument("--template", help="prompt template (default: the model's preset)")
    model.add_argument("--gguf-file", help="GGUF file inside --model (hf backend)")
    model.add_argument("--batch-size", type=int, help="windows per generate() call (hf backend)")
    model.add_argument("--dtype", help="e.g. bfloat16, float32 (hf backend; default auto)")
    model.add_argument("--device", help="e.g. cuda, cpu (hf backend)")
    model.add_argument(
        "--backend-option", action="append", default=[], metavar="KEY=VALUE", help="any other backend option"
    )
    return model


def add_reranking_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The reranking options of ``reasonrank eval`` (also taken by ``reasonrank serve``)."""
    rerank = parser.add_argument_group("reranking")
    rerank.add_argument(
        "--window", type=int, default=20, help="passages the model reads per call (default 20, the official setting)"
    )
    rerank.add_argument(
        "--step", type=int, default=10, help="how far the window moves between calls, in passages (default 10)"
    )
    rerank.add_argument("--top-k", type=int, help="rerank only the first K candidates (default: all)")
    rerank.add_argument(
        "--strategy",
        default="sliding",
        choices=("sliding", "tdpart", "tournament"),
        help="window strategy (default sliding = official; tdpart: 3 rounds instead of 9, lower latency)",
    )
    rerank.add_argument(
        "--window-mode",
        default="fixed",
        choices=("fixed", "faithful"),
        help="sliding-window loop: fixed (default, ReasonRank's) or faithful (RankGPT/REARANK quirks)",
    )
    rerank.add_argument("--max-passage-tokens", type=int, help="passage truncation (default: the model's preset)")
    rerank.add_argument("--max-tokens", type=int, help="tokens generated per window (default: the preset's)")
    rerank.add_argument("--temperature", type=float, help="decoding temperature (default: the preset's)")
    rerank.add_argument("--strict", action="store_true", help="fail on malformed model answers instead of repairing")
    return rerank


def _load_data(args: argparse.Namespace) -> Any:
    """The bundled collection named by --dataset (its files options must not be given too)."""
    if not args.dataset:
        raise SystemExit(
            "reasonrank eval: give --qrels (with --run, --queries and --corpus, or --data-json), or --dataset"
        )
    given = [f"--{n.replace('_', '-')}" for n in ("qrels", "run", "queries", "corpus", "data_json") if getattr(args, n)]
    if given:
        raise SystemExit(f"reasonrank eval: --dataset {args.dataset} brings its own data; drop {', '.join(given)}")
    from .datasets import noveleval

    return noveleval()


def _option_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in args.backend_option:
        key, sep, value = item.partition("=")
        if not sep or not key:  # the item is not shown: it may be a bare API key
            raise SystemExit(
                "--backend-option expects KEY=VALUE (e.g. --backend-option max_retries=2); got an item "
                + ("without '='" if not sep else "with an empty KEY")
            )
        options[key.replace("-", "_")] = _option_value(value)
    for name in ("gguf_file", "batch_size", "dtype", "device"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


def _require_model(args: argparse.Namespace) -> None:
    if args.backend not in _DRY_BACKENDS and not args.model:
        raise SystemExit(f"--model is required with --backend {args.backend} (or use --backend fake/oracle)")


def _model_id(args: argparse.Namespace, options: dict[str, Any]) -> str:
    _require_model(args)
    if args.model_id:
        return str(args.model_id)
    if args.backend in _DRY_BACKENDS:
        return f"{args.backend}-backend"
    model = os.path.abspath(args.model) if os.path.exists(args.model) else args.model
    identity = {"backend": args.backend, "model": model}
    identity.update({k: options[k] for k in ("gguf_file", "dtype", "revision") if options.get(k) is not None})
    return json.dumps(identity, sort_keys=True)


def _build_reranker(args: argparse.Namespace, data: Any, options: dict[str, Any]) -> Any:
    from ._types import SamplingParams
    from .evaluation import oracle_backend
    from .reranker import Reranker

    common: dict[str, Any] = {"progress": not args.no_progress, "strict": args.strict}
    if args.max_passage_tokens is not None:
        common["max_passage_tokens"] = args.max_passage_tokens
    if args.backend in _DRY_BACKENDS:
        from .backends import FakeBackend

        if options:  # nothing a user gave is silently ignored
            raise InvalidInputError(
                f"--backend {args.backend} runs no model: {', '.join(sorted(options))} do(es) not apply; drop "
                "--backend-option/--gguf-file/--batch-size/--dtype/--device"
            )

        backend = oracle_backend(data) if args.backend == "oracle" else FakeBackend()
        sampling = SamplingParams(
            max_tokens=args.max_tokens or SamplingParams().max_tokens, temperature=args.temperature or 0.0
        )
        return Reranker(backend, template=args.template or "reasonrank", sampling=sampling, **common)
    _require_model(args)
    for name in ("max_tokens", "temperature"):
        if getattr(args, name) is not None:
            common[name] = getattr(args, name)
    if args.backend == "hf":
        # The model loads on the first window the cache cannot answer: a rerun over a complete cache (a finished
        # run, printed again) needs only the tokenizer to rebuild its prompts.
        return Reranker.from_pretrained(
            args.model, backend=_DeferredHFBackend, template=args.template, **common, **options
        )
    return Reranker.from_pretrained(args.model, backend=args.backend, template=args.template, **common, **options)


class _DeferredHFBackend(Backend):
    """The ``hf`` backend, loading its model when it is first asked to generate (its tokenizer at once)."""

    name = "hf"

    def __init__(self, model: str, tokenizer: Any, options: dict[str, Any], progress: bool) -> None:
        self.model_name = model
        self._tokenizer = tokenizer
        self._options = options
        self._inner: Backend | None = None
        self.progress = progress

    @classmethod
    def from_pretrained(
        cls, model: str, *, tokenizer: Any = None, progress: bool = False, **options: Any
    ) -> _DeferredHFBackend:
        from .backends._base import check_model_path
        from .backends.hf import _import_transformers, _split_gguf

        check_model_path(model)  # before the tokenizer loads: a missing local path is not a bad repo id
        directory, gguf_file = _split_gguf(model, options.get("gguf_file"))
        if tokenizer is None or isinstance(tokenizer, str):
            common = {k: options[k] for k in ("revision", "trust_remote_code") if options.get(k) is not None}
            if gguf_file is not None:
                common["gguf_file"] = gguf_file
            tokenizer = _import_transformers().AutoTokenizer.from_pretrained(tokenizer or directory, **common)
        return cls(model, tokenizer, options, progress)

    @classmethod
    def option_names(cls, *, loading: bool = True) -> frozenset[str] | None:
        from .backends.hf import HFBackend

        return HFBackend.option_names(loading=loading)  # the options are the HF backend's, checked before loading

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def _backend(self) -> Backend:
        if self._inner is None:
            from .backends.hf import HFBackend

            self._inner = HFBackend.from_pretrained(self.model_name, tokenizer=self._tokenizer, **self._options)
        self._inner.progress = self.progress  # type: ignore[attr-defined]  # the reranker sets it per call
        return self._inner

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        return self._backend().generate(requests)

    def stream(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Generation]]:
        yield from self._backend().stream(requests)

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()


def run(args: argparse.Namespace) -> int:
    """Rerank a first-stage run, evaluate it against qrels, and write run, metrics and traces (resumable)."""
    from .evaluation import EvalData, _check_eval_args, run_eval
    from .metrics import check_metrics

    out = sys.stdout.write
    try:
        metrics = check_metrics([m.strip() for m in args.metrics.split(",") if m.strip()])
        data = (
            _load_data(args)
            if args.dataset or not args.qrels
            else EvalData.from_files(
                qrels=args.qrels,
                run=args.run,
                queries=args.queries,
                corpus=args.corpus,
                data_json=args.data_json,
                lenient=args.lenient,
                depth=args.depth,
                candidate_order=args.candidate_order,
                quoting=args.tsv_quoting,
            )
        )
        options = _backend_options(args)
        run_args: dict[str, Any] = {
            "window": args.window,
            "step": args.step,
            "top_k": args.top_k,
            "strategy": args.strategy,
            "window_mode": args.window_mode,
            "metrics": metrics,
            "scores": args.scores,
            "average": args.average,
            "limit": args.limit,
            "model_id": _model_id(args, options),
            "overwrite": args.overwrite,
            "query_batch_size": args.query_batch_size,
            "tag": args.tag,
        }
        # Arguments, data and the output directory are checked before the model loads (minutes for a 7B model).
        _check_eval_args(data, args.output_dir, strict=args.strict, **run_args)
        if args.ray is not None:  # the same run on a Ray cluster: each replica builds its own reranker
            from .distributed._cli import run_eval_from_args

            result = run_eval_from_args(args, _build_reranker, data, options, progress=not args.no_progress, **run_args)
        else:
            t0 = time.perf_counter()
            reranker = _build_reranker(args, data, options)
            load_seconds = time.perf_counter() - t0
            result = run_eval(
                reranker,
                data,
                args.output_dir,
                progress=not args.no_progress,
                extra_summary={"load_seconds": load_seconds},
                **run_args,
            )
    except (ReasonRankError, OSError) as e:  # OSError: an input file that is missing or cannot be read
        sys.stderr.write(f"reasonrank eval: error: {e}\n")
        return 1
    out(result.table() + "\n")
    return 0
