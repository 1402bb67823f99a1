#!/usr/bin/env bash
# Soak test of `dicomtls serve` (see bench/soak/README.md). Usage: bash bench/soak/run.sh --minutes 20
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x .venv/bin/dicomtls ] || bash scripts/setup.sh
.venv/bin/python -c "import matplotlib" 2>/dev/null || .venv/bin/python -m pip install -q matplotlib
exec .venv/bin/python bench/soak/soak.py "$@"
