#!/usr/bin/env bash
# Set up only what the demo needs (.venv with dicomtls), then run the main job: `dicomtls demo`
# (a secure link end to end on loopback). The test setup is scripts/test.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-tests
.venv/bin/dicomtls demo "$@"
