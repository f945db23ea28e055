#!/usr/bin/env bash
# One command: set up .venv, then rerank NovelEval queries with the real SmolLM2-135M-Instruct on CPU.
#   scripts/demo.sh [reasonrank demo options]      (see: .venv/bin/reasonrank demo --help)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(scripts/setup.sh hf,eval | tail -n 1)
exec "$venv/bin/reasonrank" demo "$@"
