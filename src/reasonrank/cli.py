"""The ``reasonrank`` command line: ``reasonrank demo`` (and more subcommands as they are added)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from ._errors import ReasonRankError
from ._version import __version__

__all__ = ["main"]

# name -> (add_arguments, run): subcommands register here; each module stays importable on its own.
Subcommand = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _subcommands() -> list[Subcommand]:
    from . import _demo, _eval_cli, _serve_cli
    from .train import cli as train_cli

    return [
        ("demo", _demo.add_arguments, _demo.run),
        ("eval", _eval_cli.add_arguments, _eval_cli.run),
        ("serve", _serve_cli.add_arguments, _serve_cli.run),
        ("train", train_cli.add_arguments, train_cli.run),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reasonrank", description="Listwise reasoning reranking.")
    parser.add_argument("--version", action="version", version=f"reasonrank {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    runners = {}
    for name, add_arguments, run in _subcommands():
        sp = sub.add_parser(name, help=(run.__doc__ or "").strip().splitlines()[0])
        add_arguments(sp)
        runners[name] = run
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "no_progress", False):
        # transformers and huggingface_hub read this when first imported (model loading, GGUF conversion bars)
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        # Libraries that call tqdm directly (transformers' GGUF conversion) honour TQDM_DISABLE, which tqdm reads
        # when it is first imported: nothing has imported it yet here.
        if "tqdm" not in sys.modules:
            os.environ["TQDM_DISABLE"] = "1"
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
    try:
        return runners[args.command](args)
    except ReasonRankError as e:  # an input the library rejected: its message says what to fix, no traceback
        sys.stderr.write(f"reasonrank {args.command}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
