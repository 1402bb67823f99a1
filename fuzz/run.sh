#!/usr/bin/env bash
# Coverage-guided fuzzing of the sans-I/O parsers with atheris (libFuzzer for Python).
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET]     (default 300; targets run one after another)
#
# Each target starts from the committed seeds in fuzz/corpus/<target>/ (real DCMTK and
# pynetdicom sessions, see fuzz/capture_seeds.py) and keeps what it learns in
# fuzz/work/<target>/ (not committed). Crashes, hangs and OOMs go to fuzz/crashes/. Exit
# status 1 if any target found one. Reproduce one with: .venv/bin/python fuzz/fuzz_<t>.py FILE
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-300}
PY=.venv/bin/python
TARGETS=(pdu dimse acse upper_layer)

if ! "$PY" -c "import atheris" 2>/dev/null; then
    # atheris ships manylinux wheels for CPython 3.8-3.12 on x86_64; without one pip builds
    # it from source, which needs clang with libFuzzer. Try the wheel first.
    wheels=$(mktemp -d)
    if "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$wheels" atheris 2>/dev/null; then
        "$PY" -m pip install -q "$wheels"/atheris-*.whl
    elif command -v clang >/dev/null && "$PY" -m pip install -q atheris; then
        :
    else
        echo "atheris cannot be installed here (no wheel for $("$PY" -V), no clang):" \
             "using the fallback driver (random mutations, no coverage feedback)" >&2
        export DICOMTLS_FUZZ_FALLBACK=1
    fi
    rm -rf "$wheels"
fi

mkdir -p fuzz/crashes fuzz/work
status=0
summary=()
for target in "${TARGETS[@]}"; do
    mkdir -p "fuzz/work/$target"
    log="fuzz/work/$target.log"
    before=$(find fuzz/crashes -name "$target-*" | wc -l)
    echo "== $target: ${SECONDS_PER_TARGET}s (log: $log)"
    set +e
    "$PY" "fuzz/fuzz_$target.py" "fuzz/work/$target" "fuzz/corpus/$target" \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 \
        -max_len=131072 -artifact_prefix="fuzz/crashes/$target-" -print_final_stats=1 \
        >"$log" 2>&1
    rc=$?
    set -e
    found=$(( $(find fuzz/crashes -name "$target-*" | wc -l) - before ))
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}' | tail -1)
    [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
    cov=$(grep -o 'cov: [0-9a-z/ ().]*ft: [0-9]*' "$log" | tail -1)
    [ -n "$cov" ] || cov=$(grep -o 'cov: n/a' "$log" | tail -1)
    corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1)
    if [ "$rc" -ne 0 ] || [ "$found" -gt 0 ]; then
        status=1
        grep -m1 -A15 -E 'Uncaught Python exception|ERROR: libFuzzer|==fallback==' "$log" || tail -20 "$log"
    fi
    summary+=("$(printf '%-12s execs %-9s %-26s %-18s crashes %s (exit %s)' \
        "$target" "${execs:-?}" "${cov:-cov: ?}" "${corp:-corp: ?}" "$found" "$rc")")
done
echo
echo "== summary (${SECONDS_PER_TARGET}s per target)"
printf '%s\n' "${summary[@]}"
ls fuzz/crashes 2>/dev/null | sed 's/^/   crash: /' || true
exit $status
