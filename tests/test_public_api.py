"""The public surface: names, import cost, exception tree."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys

import pytest

import reasonrank


def test_all_is_pinned():
    # Adding or removing a public name is a deliberate act: update this list and the CHANGELOG together.
    assert sorted(reasonrank.__all__) == sorted(
        [
            "BackendError",
            "InvalidInputError",
            "MissingDependencyError",
            "ParseError",
            "ParseResult",
            "Passage",
            "PassageTypeError",
            "RankedPassage",
            "Ranking",
            "ReasonRankError",
            "Repair",
            "Reranker",
            "SamplingParams",
            "UnknownNameError",
            "WindowFailedError",
            "WindowTrace",
            "__version__",
            "parse_ranking",
            "window_schedule",
        ]
    )
    for name in reasonrank.__all__:
        assert hasattr(reasonrank, name), name


def test_import_is_cheap():
    code = (
        "import sys, reasonrank, reasonrank.prompts, reasonrank.parsing, reasonrank.backends, reasonrank.window\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'vllm', 'numpy', 'httpx'})\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_exception_tree_matches_builtin_expectations():
    assert issubclass(reasonrank.InvalidInputError, ValueError)
    assert issubclass(reasonrank.UnknownNameError, reasonrank.InvalidInputError)
    assert issubclass(reasonrank.UnknownNameError, KeyError)
    assert issubclass(reasonrank.PassageTypeError, TypeError)
    assert issubclass(reasonrank.MissingDependencyError, ImportError)
    assert issubclass(reasonrank.WindowFailedError, reasonrank.BackendError)
    for name in ("InvalidInputError", "PassageTypeError", "MissingDependencyError", "ParseError", "BackendError"):
        assert issubclass(getattr(reasonrank, name), reasonrank.ReasonRankError)


def test_unknown_name_error_lists_valid_names():
    from reasonrank.prompts import get_template

    with pytest.raises(reasonrank.UnknownNameError) as e:
        get_template("reasonrank-70B")
    assert "reasonrank-qwen3" in str(e.value) and "rankgpt" in str(e.value)
    assert "reasonrank-70B" in str(e.value)


def test_missing_dependency_error_names_the_extra():
    err = reasonrank.MissingDependencyError("vllm", "vllm", "The vLLM backend")
    assert "pip install 'reasonrank[vllm]'" in str(err)


def test_package_logger_has_null_handler():
    import logging

    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("reasonrank").handlers)


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_base_install_is_light_and_metrics_are_the_eval_extra():
    # `pip install reasonrank` stays small for RAG apps: no numpy/scipy/torch (issue 10 §2).
    requires = importlib.metadata.requires("reasonrank") or []
    base = [_requirement_name(r) for r in requires if "extra ==" not in r]
    assert 1 <= len(base) <= 5, base
    heavy = {"numpy", "scipy", "torch", "transformers", "vllm", "pytrec-eval-terrier", "httpx"}
    assert not heavy & set(base), base
    extras = {}
    for r in requires:
        if "extra ==" in r:
            extra = r.split("extra ==")[1].strip().strip("'\"")
            extras.setdefault(extra, set()).add(_requirement_name(r))
    assert "pytrec-eval-terrier" in extras["eval"]
    assert {"mkdocs", "mkdocs-material", "mkdocstrings"} <= extras["docs"]


def test_metrics_without_the_eval_extra_name_the_install_command():
    code = (
        "import sys\n"
        "sys.modules['pytrec_eval'] = None  # as if pytrec-eval-terrier were not installed\n"
        "from reasonrank.metrics import evaluate\n"
        "from reasonrank import MissingDependencyError\n"
        "try:\n"
        "    evaluate({'q': {'d': 1.0}}, {'q': {'d': 1}}, 'nDCG@10')\n"
        "except MissingDependencyError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'reasonrank[eval]'" in out and "pytrec-eval-terrier" in out
