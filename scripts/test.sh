#!/usr/bin/env bash
# One command: set up .venv with everything the tests need, then run the whole test suite.
#   scripts/test.sh [pytest options]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(scripts/setup.sh hf,eval,openai,serve,mcp,langchain,llama-index,haystack,ray,train,docs,examples,test-serve,test-integrations,dev | tail -n 1)
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$venv/bin/python" -m pytest "$@"
