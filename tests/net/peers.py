"""Our SCU and SCP as separate processes, so each one's peak memory can be measured alone.

    python -m tests.net.peers serve PKI_DIR STORE_DIR    (prints the port, serves until stdin closes)
    python -m tests.net.peers send PKI_DIR PORT FILE     (stores FILE, prints the status)
Both print ``baseline_kib=N`` (resident set once everything is imported, before any
transfer) first and ``maxrss_kib=N`` (their own peak resident set) last.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from dicomtls.net.association import associate, default_proposals
from dicomtls.net.scp import Services, serve_dicom
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.acse import AcceptorPolicy

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def _tls(pki: Path, name: str) -> TLSSettings:
    return TLSSettings(
        certificate=pki / f"{name}-chain.pem",
        private_key=pki / f"{name}.key",
        ca_files=pki / "ca.pem",
    )


async def _serve(pki: Path, store_dir: Path) -> None:
    policy = AcceptorPolicy("BIGSCP", {CT: [EXPLICIT]})
    handler = DurableStoreHandler(DurableStore(store_dir))
    async with await serve_dicom(
        "127.0.0.1", 0, _tls(pki, "server"), policy, Services(store=handler)
    ) as server:
        print(f"port={server.port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def _send(pki: Path, port: int, path: Path) -> None:
    assoc = await associate(
        "127.0.0.1",
        port,
        _tls(pki, "client"),
        called_ae="BIGSCP",
        proposals=default_proposals([CT]),
    )
    async with assoc:
        print(f"status={await assoc.store(path)}", flush=True)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> None:
    print(f"baseline_kib={_status_kib('VmRSS')}", flush=True)
    mode, pki = sys.argv[1], Path(sys.argv[2])
    if mode == "serve":
        asyncio.run(_serve(pki, Path(sys.argv[3])))
    else:
        asyncio.run(_send(pki, int(sys.argv[3]), Path(sys.argv[4])))
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent across
    # fork and exec, so a child of a big pytest process would report the parent's peak.
    print(f"maxrss_kib={_status_kib('VmHWM')}", flush=True)


if __name__ == "__main__":
    main()
