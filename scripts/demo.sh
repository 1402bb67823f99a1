#!/usr/bin/env bash
# Set up, then run the main job: `dicomtls demo` (a secure link end to end on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/dicomtls demo "$@"
