#!/usr/bin/env bash
# One command: set up .venv with everything the tests need, then run the whole test suite.
#   scripts/test.sh [pytest options]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(scripts/setup.sh hf,openai,train,dev | tail -n 1)
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$venv/bin/python" -m pytest "$@"
