"""``reasonrank serve``: serve a reranker over HTTP (Cohere, Jina/vLLM and TEI rerank formats)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any

from ._errors import ReasonRankError

__all__ = ["add_arguments", "run"]

_LOOPBACK_NAMES = ("localhost",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ._eval_cli import add_model_arguments, add_reranking_arguments

    add_model_arguments(parser)
    add_reranking_arguments(parser)
    parser.set_defaults(no_progress=True)

    server = parser.add_argument_group("server")
    server.add_argument(
        "--mcp",
        action="store_true",
        help="speak the Model Context Protocol on stdin/stdout (a 'rerank' tool) instead of HTTP",
    )
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    server.add_argument("--port", type=_port, default=8000, help="default 8000")
    server.add_argument("--model-name", help="the model's name in responses and /v1/models (default: --model)")
    key = server.add_mutually_exclusive_group()
    key.add_argument("--api-key-file", help="file holding the bearer key clients must send (surrounding space ignored)")
    key.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the bearer key")
    server.add_argument(
        "--insecure-no-key",
        action="store_true",
        help="listen beyond loopback without an API key (refused otherwise)",
    )
    server.add_argument("--max-documents", type=int, default=1000, help="documents per request (default 1000)")
    server.add_argument(
        "--max-request-bytes", type=int, default=4 * 1024 * 1024, help="request body size (default 4 MiB)"
    )
    server.add_argument("--max-query-chars", type=int, default=10_000, help="query length (default 10000)")
    server.add_argument(
        "--max-queue", type=int, default=64, help="rerank requests in progress at once; more get 429 (default 64)"
    )
    server.add_argument(
        "--request-timeout", type=float, default=600.0, help="seconds before a request gets 504 (default 600)"
    )
    server.add_argument(
        "--shutdown-timeout",
        type=float,
        default=None,
        help="on SIGTERM/Ctrl-C, seconds to let requests in progress finish (default: --request-timeout)",
    )


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _api_key(args: argparse.Namespace) -> str | None:
    if args.api_key_file:
        try:
            with open(args.api_key_file, encoding="utf-8") as f:
                key = f.read().strip()
        except OSError as e:
            raise ReasonRankError(f"cannot read --api-key-file {args.api_key_file}: {e.strerror}") from None
        if not key:
            raise ReasonRankError(f"--api-key-file {args.api_key_file} is empty")
        return key
    if args.api_key_env:
        key = os.environ.get(args.api_key_env, "").strip()
        if not key:
            raise ReasonRankError(f"--api-key-env: the environment variable {args.api_key_env} is unset or empty")
        return key
    return None


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:  # 0: any free port
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {port}")
    return port


def run(args: argparse.Namespace) -> int:
    """Serve a reranker over HTTP: Cohere /v1/rerank and /v2/rerank, Jina/vLLM/TEI /rerank, /health, /metrics."""
    try:
        import uvicorn

        from .serve import ServeSettings, create_app
    except ImportError as e:
        sys.stderr.write(f"reasonrank serve: error: {e}\n")
        return 1
    from ._eval_cli import _backend_options, _build_reranker

    try:
        if args.backend == "oracle":
            raise ReasonRankError("--backend oracle needs qrels; serve a model, or --backend fake for a dry run")
        if args.backend != "fake" and not args.model:
            raise ReasonRankError(
                f"--model is required with --backend {args.backend} (or --backend fake for a dry run)"
            )
        key = _api_key(args)
        if key is None and not args.mcp and not _is_loopback(args.host) and not args.insecure_no_key:
            raise ReasonRankError(
                f"refusing to listen on {args.host} without an API key: anyone who can reach it could use the "
                "model. Give --api-key-file or --api-key-env (or --insecure-no-key if you really mean it)"
            )
        model_name = args.model_name or args.model or f"{args.backend}-backend"
        settings: dict[str, Any] = dict(
            model_name=model_name,
            api_key=key,
            window=args.window,
            step=args.step,
            top_k=args.top_k,
            strategy=args.strategy,
            window_mode=args.window_mode,
            max_documents=args.max_documents,
            max_request_bytes=args.max_request_bytes,
            max_query_chars=args.max_query_chars,
            max_queue=args.max_queue,
            request_timeout=args.request_timeout,
        )
        ServeSettings(**settings)  # every setting is checked before the model loads
        reranker = _build_reranker(args, None, _backend_options(args))
        if args.backend == "fake":
            reranker.backend.record = False  # a server runs for long: keep no history of the calls
    except ReasonRankError as e:
        sys.stderr.write(f"reasonrank serve: error: {e}\n")
        return 1
    if args.mcp:
        return _run_mcp(reranker, settings)
    app = create_app(reranker, **settings)
    shutdown = args.shutdown_timeout if args.shutdown_timeout is not None else args.request_timeout
    config = uvicorn.Config(
        app, host=args.host, port=args.port, timeout_graceful_shutdown=shutdown, log_level="info", access_log=True
    )
    try:
        uvicorn.Server(config).run()
    finally:
        reranker.backend.close()
    return 0


def _run_mcp(reranker: Any, settings: dict[str, Any]) -> int:
    from .serve._mcp import create_mcp_server

    try:
        shared = ("window", "step", "top_k", "strategy", "window_mode", "max_documents")
        server = create_mcp_server(reranker, name=settings["model_name"], **{k: settings[k] for k in shared})
        server.run("stdio")  # stdout carries the protocol: logs go to stderr
    except ReasonRankError as e:
        sys.stderr.write(f"reasonrank serve: error: {e}\n")
        return 1
    finally:
        reranker.backend.close()
    return 0
