#!/usr/bin/env bash
# One command for the issue-8 benchmark: installs what is missing, then runs bench/bench.py.
#   bash bench/run.sh            # issue sizes (4 x 256 MB, 2000 x 64 KB, 500 x 512 KB), 5 reps
#   bash bench/run.sh --quick    # 2 x 64 MB, 200 x 64 KB, 50 x 512 KB
# Any option is passed to bench.py (--reps N, --large-count N, --large-mb S, --only KEYS, ...).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
venv="$repo/.venv"

if ! command -v storescu >/dev/null || ! command -v storescp >/dev/null; then
    echo "installing DCMTK from Debian" >&2
    if [ "$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q dcmtk
    else sudo apt-get update -q && sudo apt-get install -y -q dcmtk; fi
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "no venv at $venv: creating it with the project installed" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -e "$repo"
fi
for mod in pynetdicom:pynetdicom matplotlib:matplotlib pydicom:pydicom; do
    if ! "$venv/bin/python" -c "import ${mod%%:*}" 2>/dev/null; then
        echo "installing ${mod##*:} into $venv" >&2
        "$venv/bin/pip" install -q "${mod##*:}"
    fi
done
cd "$repo"
exec "$venv/bin/python" "$here/bench.py" "$@"
