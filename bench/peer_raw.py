"""Raw transport ceilings: the same bytes over a plain Python ssl socket or plain TCP.

    python bench/peer_raw.py recv --port P --total BYTES [--pki DIR] [--tls12]   (prints "ready")
    python bench/peer_raw.py send --port P --dir DIR [--pki DIR] [--tls12]       (prints JSON)

The sender reads every *.dcm of DIR in 4 MiB blocks and sends it; the receiver reads into a
reused buffer and discards (no disk), then answers one byte. Timed by the sender from the
end of the handshake to that byte. Mutual TLS with the same certificates as the DICOM legs.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import time
from pathlib import Path

BLOCK = 4 << 20


def _ctx(purpose: ssl.Purpose, pki: Path, me: str, tls12: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose, cafile=str(pki / "ca.pem"))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(pki / f"{me}-chain.pem"), str(pki / f"{me}.key"))
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def recv(a: argparse.Namespace) -> None:
    lsock = socket.create_server(("127.0.0.1", a.port))
    print("ready", flush=True)
    conn, _ = lsock.accept()
    if a.pki:
        conn = _ctx(ssl.Purpose.CLIENT_AUTH, Path(a.pki), "server", a.tls12).wrap_socket(
            conn, server_side=True
        )
    buf = memoryview(bytearray(BLOCK))
    got = 0
    while got < a.total:
        n = conn.recv_into(buf)
        if not n:
            raise SystemExit(f"short: {got} of {a.total}")
        got += n
    conn.sendall(b"k")
    conn.close()


def send(a: argparse.Namespace) -> None:
    files = sorted(Path(a.dir).glob("*.dcm"))
    sock = socket.create_connection(("127.0.0.1", a.port))
    cipher = None
    if a.pki:
        tls = _ctx(ssl.Purpose.SERVER_AUTH, Path(a.pki), "client", a.tls12).wrap_socket(sock)
        suite = tls.cipher()
        assert suite is not None  # wrap_socket completed the handshake: a suite was agreed
        cipher = f"{tls.version()} {suite[0]}"
        sock = tls
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    total = 0
    t0 = time.perf_counter()
    for f in files:
        with f.open("rb", buffering=0) as h:
            while n := h.readinto(buf):
                sock.sendall(view[:n])
                total += n
    assert sock.recv(1) == b"k"
    elapsed = time.perf_counter() - t0
    sock.close()
    print(
        json.dumps({"elapsed": elapsed, "bytes": total, "n": len(files), "cipher": cipher}),
        flush=True,
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["recv", "send"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--total", type=int)
    p.add_argument("--dir")
    p.add_argument("--pki")
    p.add_argument("--tls12", action="store_true")
    a = p.parse_args()
    recv(a) if a.mode == "recv" else send(a)
