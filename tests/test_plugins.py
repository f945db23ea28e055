"""Third-party backends: discovered lazily from the ``reasonrank.backends`` entry-point group.

The plugin installed here is the complete example of docs/writing-a-backend.md, read from that page, with a
temporary ``.dist-info`` on ``sys.path`` (what ``pip install`` of the plugin package would leave)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reasonrank import Reranker
from reasonrank._errors import UnknownNameError
from reasonrank.backends import _registry, available_backends, get_backend_class

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-a-backend.md"
MODULE = "reasonrank_llamacpp"


REVERSE_PLUGIN = """
from reasonrank.backends import Backend, Generation, answer


class Reverse(Backend):
    name = "reverse"

    def __init__(self, model=None):
        self.model = model

    @classmethod
    def from_pretrained(cls, model):
        return cls(model)

    def generate(self, requests):
        return [Generation(answer(reversed(range(len(r.docids))))) for r in requests]
"""


def documented_plugin_source() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    (source,) = [b for b in blocks if b.startswith(f"# {MODULE}.py\n")]
    return source


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """The documented plugin 'installed' under two entry points: ``llamacpp`` and one that tries to take ``hf``."""
    (tmp_path / f"{MODULE}.py").write_text(documented_plugin_source(), encoding="utf-8")
    (tmp_path / "rr_reverse_plugin.py").write_text(REVERSE_PLUGIN, encoding="utf-8")
    dist = tmp_path / "reasonrank_llamacpp-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: reasonrank-llamacpp\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[reasonrank.backends]\nllamacpp = {MODULE}:LlamaCppBackend\nhf = {MODULE}:LlamaCppBackend\n"
        "reverse = rr_reverse_plugin:Reverse\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_registry, "_BACKENDS", dict(_registry._BACKENDS))
    monkeypatch.setattr(_registry, "_entry_points_loaded", False)
    for name in (MODULE, "rr_reverse_plugin"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield
    for name in (MODULE, "rr_reverse_plugin"):
        sys.modules.pop(name, None)


def test_entry_point_is_discovered_without_importing_the_plugin(installed_plugin):
    assert "llamacpp" in available_backends()
    assert MODULE not in sys.modules  # listed by name only
    cls = get_backend_class("llamacpp")
    assert MODULE in sys.modules and cls.__name__ == "LlamaCppBackend" and cls.name == "llamacpp"
    assert get_backend_class("hf").__name__ == "HFBackend"  # a plugin cannot take a built-in name


def test_plugin_backend_by_name_in_reranker_and_from_pretrained(installed_plugin):
    ranking = Reranker("reverse", progress=False).rerank("q", ["a", "b", "c"])
    assert ranking.docids == ["2", "1", "0"]
    reranker = Reranker.from_pretrained("my-model", backend="reverse", template="reasonrank", progress=False)
    assert reranker.backend.model == "my-model"
    assert reranker.rerank("q", ["a", "b"]).docids == ["1", "0"]


def test_unknown_backend_names_the_entry_point_group(installed_plugin):
    with pytest.raises(UnknownNameError, match=r"reasonrank\.backends") as info:
        get_backend_class("llamacp")
    assert "llamacpp" in str(info.value)


def test_listing_backends_imports_no_backend_module():
    code = (
        "import sys, reasonrank\n"
        "from reasonrank.backends import available_backends\n"
        "names = available_backends()\n"
        "assert {'hf', 'vllm', 'openai', 'fake'} <= set(names), names\n"
        "heavy = [m for m in ('reasonrank.backends.vllm', 'reasonrank.backends.openai_compat', "
        "'reasonrank.backends.hf', 'httpx', 'vllm', 'torch', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# The plugin runs llama.cpp's native code in-process. A native build can crash (a segfault on CPUs with Intel
# AMX when llama.cpp was compiled for the build machine), so the real-model part runs in a child process: a
# crash fails this test with its signal and output instead of killing the whole pytest run.
REAL_MODEL_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from reasonrank import Reranker
model = sys.argv[2]
reranker = Reranker.from_pretrained(
    model, backend="llamacpp", template="reasonrank", max_tokens=12, n_ctx=4096, n_threads=1, progress=False
)
passages = [{"docid": f"d{i}", "text": t} for i, t in enumerate(["Cats purr when content.", "Dogs bark.", "Purr."])]
ranking = reranker.rerank("why do cats purr?", passages)
(window,) = ranking.windows
try:
    Reranker("llamacpp")
    no_model_error = None
except TypeError as e:
    no_model_error = str(e)
print(json.dumps({
    "backend": type(reranker.backend).__name__, "docids": ranking.docids, "output_tokens": window.output_tokens,
    "prompt_tokens": window.prompt_tokens, "finish_reason": window.finish_reason, "no_model_error": no_model_error,
}))
"""


@pytest.mark.slow
def test_documented_plugin_reranks_with_a_real_model(installed_plugin, smollm2_gguf, tmp_path):
    folder, name = smollm2_gguf
    done = subprocess.run(
        [sys.executable, "-c", REAL_MODEL_SCRIPT, str(tmp_path), f"{folder}/{name}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode < 0:
        pytest.fail(
            f"llama.cpp crashed in the plugin's process (signal {-done.returncode}). A llama-cpp-python built with "
            "native CPU flags crashes on CPUs with Intel AMX: rebuild it portably with scripts/setup.sh "
            f"(see docs/troubleshooting.md). Its output ends with:\n{done.stderr[-1500:]}"
        )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "LlamaCppBackend"
    assert sorted(result["docids"]) == ["d0", "d1", "d2"]
    assert 1 <= result["output_tokens"] <= 12 and result["prompt_tokens"] > 100
    assert result["finish_reason"] in ("stop", "length")
    # Reranker("name") builds a plugin backend with no arguments: this one needs a model, and says so.
    assert result["no_model_error"] is not None and "llm" in result["no_model_error"]
