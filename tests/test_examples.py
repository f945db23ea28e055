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


@pytest.mark.slow
def test_demo_command_prints_what_the_readme_promises():
    done = subprocess.run(
        [sys.executable, "-m", "reasonrank", "demo", "--queries", "2", "--max-tokens", "24", "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "NovelEval-2306, 2 queries x 20 passages, model SmolLM2-135M-Instruct" in out
    first = float(out.split("nDCG@10 first stage :")[1].split()[0])
    reranked = float(out.split("nDCG@10 reranked    :")[1].split()[0])
    assert 0 <= first <= 100 and 0 <= reranked <= 100
    assert "reranking           :" in out and "(2 windows," in out
    assert "First window of query '0'" in out and "raw output:" in out and "reasoning:" in out
