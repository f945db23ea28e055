"""The snippets of docs/integrations.md run as printed, with a fake model standing in for from_pretrained."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

from framework_helpers import keyword_backend
from reasonrank import Reranker

DOC = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
FRAMEWORK = {"langchain": "langchain_core", "llama_index": "llama_index.core", "haystack": "haystack"}


@pytest.fixture
def fake_from_pretrained(monkeypatch):
    """Reranker.from_pretrained(name, **options) -> a Reranker over a fake model that favours "capital"."""
    loaded: list[str] = []

    def from_pretrained(cls, model, **options):
        loaded.append(model)
        backend, _ = keyword_backend()
        return Reranker(backend, progress=False)

    monkeypatch.setattr(Reranker, "from_pretrained", classmethod(from_pretrained))
    monkeypatch.setattr("framework_helpers.KEYWORD", "capital")
    return loaded


def test_the_page_has_one_snippet_per_framework_and_a_loading_snippet():
    assert len(BLOCKS) == 4
    assert [next(k for k in FRAMEWORK if f"reasonrank.integrations.{k}" in b) for b in BLOCKS[:3]] == list(FRAMEWORK)
    assert 'allowed_modules=["reasonrank.integrations.haystack"]' in BLOCKS[3]


@pytest.mark.parametrize("name", list(FRAMEWORK))
def test_snippet_runs(name, fake_from_pretrained, capsys):
    pytest.importorskip(FRAMEWORK[name])
    index = list(FRAMEWORK).index(name)
    namespace: dict = {}
    exec(compile(BLOCKS[index], f"{DOC.name}[{name}]", "exec"), namespace)
    if name == "haystack":  # the loading snippet continues the Haystack one
        exec(compile(BLOCKS[3], f"{DOC.name}[haystack-load]", "exec"), namespace)
        assert (
            namespace["loaded"].get_component("ranker").to_dict()
            == namespace["pipeline"].get_component("ranker").to_dict()
        )
    assert fake_from_pretrained == ["liuwenhan/reasonrank-7B"]
    first, second = capsys.readouterr().out.splitlines()  # top_n=2 documents, printed best first
    assert "paris" in first.lower() and "1.0" in first.split()
    assert "paris" not in second.lower() and "0.5" in second.split()
