"""The examples in examples/ run as documented (with the real SmolLM2 model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
def test_rerank_noveleval_example():
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "rerank_noveleval.py")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "query: Which film was the 2023 Palme d'Or winner?" in out
    assert out.count("(was #") == 5 and "window [0, 20)" in out
    trec = [line for line in out.splitlines() if line.startswith("2 Q0 ")]
    assert len(trec) == 3 and trec[0].endswith(" 20.000000 smollm2")
