#!/usr/bin/env bash
# Set up a development environment on a fresh machine: a venv with dicomtls and its test extras,
# and DCMTK and Orthanc (Debian packages) as the interop peers. Safe to run again; does only what is missing.
#   --no-tests  only .venv with dicomtls itself: what the demo and the README's quick start need
#               (no Debian packages, no test extras, no sslyze)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
make_venv() {
    if [ ! -x .venv/bin/python ]; then
        echo "setup: creating .venv with $($PYTHON --version)"
        "$PYTHON" -m venv .venv
    fi
}
if [ "${1:-}" = "--no-tests" ]; then
    make_venv
    .venv/bin/python -m pip install -q -e .
    exit 0
fi

# Debian packages the tests use as real peers: DCMTK and Orthanc (interop; the tests start Orthanc
# themselves, never the system service) and rsyslog with its OpenSSL network driver (the audit
# trail's syslog collector, RFC 5425/5426).
missing=()
command -v storescp >/dev/null 2>&1 && command -v echoscu >/dev/null 2>&1 || missing+=(dcmtk)
command -v Orthanc >/dev/null 2>&1 || missing+=(orthanc)
command -v rsyslogd >/dev/null 2>&1 || missing+=(rsyslog)
ls /usr/lib/*/rsyslog/lmnsd_ossl.so >/dev/null 2>&1 || missing+=(rsyslog-openssl)
# scale-out tests: PostgreSQL (the shared index) and HAProxy (the balancer); SeaweedFS is on PyPI
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql postgresql-contrib)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages for the tests: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

make_venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

# --- sslyze (tests/scan/): an outside TLS scanner, in its own venv -------------------------
# sslyze pins its own nassl and cryptography, which may not agree with ours (cryptography>=42,
# pyOpenSSL>=24), so it lives in .venv-sslyze and the test runs it as a program (--json_out).
SSLYZE_VERSION="6.3.1"
if ! .venv-sslyze/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('sslyze') != '$SSLYZE_VERSION')" 2>/dev/null; then
    echo "setup: installing sslyze $SSLYZE_VERSION into .venv-sslyze"
    [ -x .venv-sslyze/bin/python ] || "$PYTHON" -m venv .venv-sslyze
    .venv-sslyze/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv-sslyze/bin/python -m pip install -q "sslyze==$SSLYZE_VERSION"
fi
# --- end sslyze ------------------------------------------------------------------------------
