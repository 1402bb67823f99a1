#!/usr/bin/env bash
# Set up a development environment on a fresh machine: a venv with dicomtls and its test extras,
# and DCMTK (Debian package) as the interop peer. Safe to run again; does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v storescp >/dev/null 2>&1 || ! command -v echoscu >/dev/null 2>&1; then
    echo "setup: installing DCMTK (Debian package dcmtk) for the interop tests"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dcmtk >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
