"""Our SCU as its own process: store every file of a directory on ONE association.

    python bench/peer_ours_scu.py --port P --dir DIR [--pki DIR --cipher NAME | --no-tls] [--window N]

As ``dicomtls store`` does: asks for an asynchronous operations window of ``--window``
(default 16; 1 = synchronous) and keeps that many C-STOREs outstanding if the SCP allows it.

Prints one JSON line: seconds from the start of connect (TCP + TLS handshake + A-ASSOCIATE)
to the last C-STORE response (``elapsed``), the transfer alone (``transfer``), statuses, cipher.
Imports, file listing and presentation-context building happen before the clock starts.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from peer_result import print_result

from dicomtls.net.association import associate, proposals_for
from dicomtls.tls.settings import TLSSettings


async def main(args: argparse.Namespace) -> None:
    files = sorted(Path(args.dir).glob("*.dcm"))
    proposals = proposals_for(files)
    tls = None
    if not args.no_tls:
        pki = Path(args.pki)
        tls = TLSSettings(
            certificate=pki / "client-chain.pem",
            private_key=pki / "client.key",
            ca_files=pki / "ca.pem",
            ciphers=args.cipher.split(",") if args.cipher else None,
        )
    t0 = time.perf_counter()
    assoc = await associate(
        "127.0.0.1",
        args.port,
        tls,
        called_ae=args.called_ae,
        proposals=proposals,
        max_operations=args.window,
    )
    t1 = time.perf_counter()
    statuses = [status async for _, status in assoc.store_many(files)]
    t2 = time.perf_counter()
    session = assoc.link.session
    await assoc.release()
    cipher = None if session is None else f"{session.protocol} {session.cipher_openssl}"
    print_result(
        t0,
        t1,
        t2,
        len(files),
        sum(1 for s in statuses if s != 0),
        cipher,
        window=assoc.negotiated.max_operations,
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--pki")
    p.add_argument("--cipher")
    p.add_argument("--called-ae", default="DICOMTLS")
    p.add_argument("--no-tls", action="store_true")
    p.add_argument("--window", type=int, default=16)
    asyncio.run(main(p.parse_args()))
