"""pynetdicom SCP and SCU for the benchmark (standard-library ssl, maximum PDU 0 = unlimited).

    python bench/peer_pynetdicom.py scp --port P --out DIR --pki DIR [--tls12]
        (prints "ready", serves until stdin closes)
    python bench/peer_pynetdicom.py scu --port P --dir DIR --pki DIR [--tls12]
        (stores every *.dcm of DIR on one association, prints one JSON line)

Both sides use pynetdicom's chunked mode (STORE_SEND/RECV_CHUNKED_DATASET): the SCU streams
each file from disk, the SCP receives to a temporary file that the handler moves into DIR,
which is the most efficient way pynetdicom offers and what a real SCP would do. No fsync
(like storescp).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import ssl
import sys
import time
from pathlib import Path

from peer_result import print_result
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
VERIFICATION = "1.2.840.10008.1.1"
TLS12_CIPHER = "ECDHE-ECDSA-AES128-GCM-SHA256"

logging.getLogger("pynetdicom").setLevel(logging.ERROR)


def _context(purpose: ssl.Purpose, pki: Path, me: str, tls12: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose, cafile=str(pki / "ca.pem"))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(pki / f"{me}-chain.pem"), str(pki / f"{me}.key"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(TLS12_CIPHER)
    return ctx


def scp(args: argparse.Namespace) -> None:
    _config.STORE_RECV_CHUNKED_DATASET = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def on_store(event: evt.Event) -> int:
        request = event.request
        assert isinstance(request, C_STORE)  # pynetdicom calls this for EVT_C_STORE only
        uid = request.AffectedSOPInstanceUID
        shutil.move(event.dataset_path, out / f"{uid}.dcm")
        return 0x0000

    ae = AE(ae_title="PYSCP")
    ae.maximum_pdu_size = 0
    ae.add_supported_context(CT, [EXPLICIT])
    ae.add_supported_context(VERIFICATION)  # C-ECHO, for the assoc-rate scenario
    ae.maximum_associations = 64  # default 10 would refuse part of 16 concurrent clients
    ctx = _context(ssl.Purpose.CLIENT_AUTH, Path(args.pki), "server", args.tls12)
    server = ae.start_server(
        ("127.0.0.1", args.port),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
        ssl_context=ctx,
    )
    assert server is not None  # block=False returns the running server
    print("ready", flush=True)
    sys.stdin.read()
    server.shutdown()


def _negotiated(assoc: Association) -> str | None:
    """The TLS version and cipher suite of the association's socket ("TLSv1.3 TLS_AES_...")."""
    channel = assoc.dul.socket
    sock = None if channel is None else channel.socket
    if not isinstance(sock, ssl.SSLSocket) or (suite := sock.cipher()) is None:
        return None
    return f"{sock.version()} {suite[0]}"


def scu(args: argparse.Namespace) -> None:
    _config.STORE_SEND_CHUNKED_DATASET = True
    files = sorted(Path(args.dir).glob("*.dcm"))
    ae = AE(ae_title="PYSCU")
    ae.maximum_pdu_size = 0
    ae.add_requested_context(CT, EXPLICIT)
    ctx = _context(ssl.Purpose.SERVER_AUTH, Path(args.pki), "client", args.tls12)
    t0 = time.perf_counter()
    # pynetdicom annotates the hostname as str, but hands it to SSLContext.wrap_socket, where
    # None (what we mean: no SNI, no hostname check, the CA is checked) is valid and "" raises
    tls_args = (ctx, None)
    assoc = ae.associate("127.0.0.1", args.port, ae_title="PYSCP", tls_args=tls_args)  # type: ignore[arg-type]
    if not assoc.is_established:
        print(json.dumps({"error": "association failed"}), flush=True)
        sys.exit(1)
    t1 = time.perf_counter()
    failed = 0
    for f in files:
        status = assoc.send_c_store(f)
        if not status or status.Status != 0:
            failed += 1
    t2 = time.perf_counter()
    cipher = _negotiated(assoc)
    assoc.release()
    print_result(t0, t1, t2, len(files), failed, cipher)
    os._exit(0)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["scp", "scu"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pki", required=True)
    p.add_argument("--out")
    p.add_argument("--dir")
    p.add_argument("--tls12", action="store_true")
    a = p.parse_args()
    scp(a) if a.mode == "scp" else scu(a)
