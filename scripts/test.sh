#!/usr/bin/env bash
# The test command: set up everything the tests use (scripts/setup.sh: venv with the test extras,
# DCMTK, rsyslog, sslyze), then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff";  .venv/bin/ruff check src tests fuzz bench
echo "== ruff format"; .venv/bin/ruff format --check src tests fuzz bench
echo "== mypy --strict"; .venv/bin/mypy
echo "== pytest"; .venv/bin/pytest -q "$@"
