#!/usr/bin/env bash
# The test command: set up (venv, DCMTK), then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff";  .venv/bin/ruff check src tests fuzz
echo "== mypy --strict"; .venv/bin/mypy
echo "== pytest"; .venv/bin/pytest -q "$@"
