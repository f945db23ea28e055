"""The examples in examples/ run as documented (with the real SmolLM2 model or the fake backend), and import
only the public API."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, timeout: int = 600) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_examples_import_only_the_public_api():
    sources = sorted(EXAMPLES.glob("*.py"))
    assert {p.name for p in sources} >= {"quickstart.py", "rag_pipeline.py", "evaluate_noveleval.py"}
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            private = [n for n in names if n.startswith("reasonrank") and any(p.startswith("_") for p in n.split("."))]
            assert not private, f"{path.name} imports private names: {private}"


@pytest.mark.slow
def test_quickstart_example():
    out = run_example("quickstart.py")
    assert "query: Why do cats purr?" in out
    ranked = [line for line in out.splitlines() if line[:2] in ("1.", "2.", "3.", "4.")]
    assert len(ranked) == 4 and {line.split()[1] for line in ranked} == {"dogs", "purr", "lions", "bread"}
    assert "window [0, 4):" in out and "raw output:" in out and "parse repairs:" in out


def test_rag_pipeline_example_with_the_fake_backend():
    # The fake backend keeps each window's order: the reranked list is BM25's, which pins the first stage.
    out = run_example("rag_pipeline.py", "--fake", timeout=300)
    bm25 = out.split("BM25 top 3: ")[1].splitlines()[0]
    assert "question: Which film won the Palme d'Or in 2023?" in out
    assert f"reranked top 3: {bm25} (1 model call(s))" in out
    context = out.split("context for the generator:\n")[1].split("\n\nprompt:")[0]
    assert context.startswith("[1] ") and "[2] " in context and len(context) <= 1500 + 10
    assert "Anatomy of a Fall" in context  # BM25 finds the winner's passages in the bundled corpus


@pytest.mark.slow
def test_rag_pipeline_example_with_the_real_model():
    out = run_example("rag_pipeline.py", "--candidates", "5")
    assert "reranked top 3: [" in out and "(1 model call(s))" in out and "context for the generator:\n[1] " in out


@pytest.mark.slow
def test_notebook_runs():
    nbformat = pytest.importorskip("nbformat", reason="the examples extra: pip install -e '.[examples]'")
    from nbclient import NotebookClient

    notebook = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
    ).execute()
    outputs = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "Which film was the 2023 Palme d'Or winner?" in outputs
    assert "window [0, 8):" in outputs and "nDCG@10 first stage" in outputs and "oracle reranking 100.00" in outputs


@pytest.mark.slow
def test_rerank_noveleval_example():
    out = run_example("rerank_noveleval.py")
    assert "query: Which film was the 2023 Palme d'Or winner?" in out
    assert out.count("(was #") == 5 and "window [0, 20)" in out
    trec = [line for line in out.splitlines() if line.startswith("2 Q0 ")]
    assert len(trec) == 3 and trec[0].endswith(" 20.000000 smollm2")


@pytest.mark.slow
def test_demo_command_explains_itself():
    done = subprocess.run(
        [sys.executable, "-m", "reasonrank", "demo", "--queries", "2", "--max-tokens", "24", "--no-progress"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "NovelEval-2306, 2 queries x 20 passages, model SmolLM2-135M-Instruct" in out
    first = float(out.split("nDCG@10 first stage :")[1].split()[0])
    reranked = float(out.split("nDCG@10 reranked    :")[1].split()[0])
    assert 0 <= first <= 100 and 0 <= reranked <= 100
    assert "reranking           :" in out and "(2 windows," in out
    # What the library did, in words: windows, order changes, repairs or reasoning, and why scores barely move.
    assert "query '0': windows [0, 20)" in out and "passages changed position" in out and "new top-5:" in out
    assert ("The model's reasoning" in out) or ("The model wrote no reasoning" in out)
    assert "cannot beat the first-stage search engine" in out
    repaired = int(out.split("repaired windows    :")[1].split()[0])
    assert out.count("the answer needed repairs") == repaired
    # --no-progress silences the library's bars and transformers' own (GGUF conversion, loading)
    assert "%|" not in done.stderr and "it/s]" not in done.stderr
