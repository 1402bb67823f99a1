#!/usr/bin/env bash
# py-spy profiles of our SCU and SCP (separate processes) storing one data set on one
# association over mutual TLS 1.3 -- for finding where "ours" spends its time.
#   bash bench/profile.sh DATA_DIR [always|never]    (DATA_DIR: e.g. /tmp/dicomtls-bench/data/small64k-200x65536)
# Writes /tmp/dicomtls-bench/profiles/profile-<name>-{scu,scp}.txt (collapsed stacks) and prints the top frames.
# Needs bench/bench.py to have run once (for the PKI in /tmp/dicomtls-bench/pki-ec).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"; repo="$(dirname "$here")"; py="$repo/.venv/bin/python"
data="$1"; fsync="${2:-never}"; name="$(basename "$data")-fsync-$fsync"
out=/tmp/dicomtls-bench/profiles; mkdir -p "$out"
pki=/tmp/dicomtls-bench/pki-ec; store="$(mktemp -d /tmp/dicomtls-bench/profile-store.XXXX)"
[ -x "$repo/.venv/bin/py-spy" ] || "$repo/.venv/bin/pip" install -q py-spy
port=$("$py" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$repo/.venv/bin/py-spy" record -r 250 --format raw -o "$out/profile-$name-scp.txt" -- \
    "$repo/.venv/bin/dicomtls" serve --store "$store" --host 127.0.0.1 --port "$port" --fsync "$fsync" \
    --tls-cert "$pki/server-chain.pem" --tls-key "$pki/server.key" --ca "$pki/ca.pem" >/dev/null 2>&1 &
spy=$!
for _ in $(seq 200); do "$py" -c "import socket;socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break; sleep 0.05; done
"$repo/.venv/bin/py-spy" record -r 250 --format raw -o "$out/profile-$name-scu.txt" -- \
    "$py" "$here/peer_ours_scu.py" --port "$port" --dir "$data" --pki "$pki" \
    --cipher TLS_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
child="$(pgrep -P "$spy" | head -1)"          # the serve we started: py-spy's child, by its id
[ -n "$child" ] && kill -INT "$child"
wait "$spy" || true
rm -rf "$store"
for side in scu scp; do
    echo "== $side: top self frames (% of samples)"
    "$py" - "$out/profile-$name-$side.txt" <<'PY'
import collections, sys
self_, total = collections.Counter(), 0
incl = collections.Counter()
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(" ")
    n = int(n)
    frames = stack.split(";")
    # the transfer only: not imports, start-up, or the SCU's pre-clock file scan; the SCP's
    # C-STORE tasks (commit, index row, answer) run outside _serve_association's stack
    transfer = ("Association.store", "_serve_association", "Dispatcher._store")
    if not any(any(name in f for name in transfer) for f in frames):
        continue
    total += n
    self_[frames[-1]] += n
    for f in set(frames):
        incl[f] += n
print(f"  ({total} samples in the transfer)")
for f, n in self_.most_common(14):
    print(f"  self {100*n/total:5.1f}%  {f}")
print("  -- inclusive (top, excluding entry points)")
for f, n in [x for x in incl.most_common(60) if "run" not in x[0] and "<module>" not in x[0]][:22]:
    print(f"  incl {100*n/total:5.1f}%  {f}")
PY
done
