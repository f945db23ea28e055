"""Doctest collection (``--doctest-modules`` over src/): the framework adapters import their framework at module
level, so a checkout without an integration extra skips those modules instead of failing to collect them."""

import importlib.util

_FRAMEWORKS = {"langchain": "langchain_core", "llama_index": "llama_index.core", "haystack": "haystack"}


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package of a dotted name is missing
        return False


collect_ignore = [
    f"src/reasonrank/integrations/{module}.py" for module, package in _FRAMEWORKS.items() if not _installed(package)
]
