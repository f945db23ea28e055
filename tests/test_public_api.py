"""The public surface: names, import cost, exception tree."""

from __future__ import annotations

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
