"""The documentation site builds with ``mkdocs build --strict`` and documents every public name.

Needs the ``docs`` extra (scripts/test.sh installs it); a missing extra fails here rather than skipping, so CI
always builds the site.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Every public module and the API page that documents it (each name of its __all__ must get an anchor there).
API_PAGES = {
    "reasonrank": "api/reasonrank",
    "reasonrank.backends": "api/backends",
    "reasonrank.backends.hf": "api/backends",
    "reasonrank.backends.vllm": "api/backends",
    "reasonrank.backends.openai_compat": "api/backends",
    "reasonrank.prompts": "api/prompts",
    "reasonrank.parsing": "api/windows",
    "reasonrank.window": "api/windows",
    "reasonrank.strategies": "api/windows",
    "reasonrank.presets": "api/windows",
    "reasonrank.metrics": "api/metrics",
    "reasonrank.evaluation": "api/evaluation",
    "reasonrank.io": "api/evaluation",
    "reasonrank.cache": "api/evaluation",
    "reasonrank.datasets": "api/datasets",
    "reasonrank.serve": "api/serving",
    "reasonrank.scores": "api/serving",
    "reasonrank.integrations.langchain": "api/integrations",
    "reasonrank.integrations.llama_index": "api/integrations",
    "reasonrank.integrations.haystack": "api/integrations",
    "reasonrank.distributed": "api/distributed",
    "reasonrank.train": "api/train",
    "reasonrank.train.rewards": "api/train",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.fail(f"{module} is missing: pip install -e '.[docs]' (scripts/test.sh installs it)")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**_env(), "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-4000:]}"
    return out


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_site_builds_strict_with_every_page_in_the_nav(site):
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    missing = [p for p in pages if p not in config]
    assert not missing, f"docs pages not in mkdocs.yml's nav: {missing}"
    for page in ("quickstart", "concepts", "troubleshooting", "evaluation", "model-families", "performance"):
        assert (site / page / "index.html").is_file(), page


@pytest.mark.parametrize("module", sorted(API_PAGES))
def test_api_reference_documents_every_public_name(site, module):
    html = (site / API_PAGES[module] / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="(reasonrank\.[\w.]+)"', html))
    names = [n for n in importlib.import_module(module).__all__ if not n.startswith("__")]
    undocumented = [n for n in names if f"{module}.{n}" not in anchors]
    assert not undocumented, f"{module}: no API reference entry for {undocumented}"
