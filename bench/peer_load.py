"""Many concurrent associations from our asyncio SCU, as one client process (issue 8 items 3, 4).

    python bench/peer_load.py echo  --port P --pki DIR --clients N --each M [--called-ae AE]
        N concurrent tasks, each doing M times: connect + mutual TLS handshake + A-ASSOCIATE +
        C-ECHO + A-RELEASE (the context manager releases).
    python bench/peer_load.py store --port P --pki DIR --dir DIR --clients N --per K --part I/J
        N concurrent associations, each storing its own K files of DIR (files are split into
        groups of K; this process takes slice I of J of the groups).

Prints "ready" once imports, file lists and TLS settings are done, waits for a line on stdin
("go"), then runs and prints one JSON line: start/end on CLOCK_MONOTONIC (system-wide, so the
driver can combine several client processes), ok/failed counts, the first few distinct errors.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import resource
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TypedDict

from dicomtls.net.association import associate, default_proposals, proposals_for
from dicomtls.tls.settings import TLSSettings


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


class LoadResult(TypedDict):
    """The JSON line this process prints: the driver combines several processes' lines."""

    start: float  # time.monotonic() when released
    end: float
    elapsed: float
    ok: int
    failed: int
    errors: dict[str, int]  # the five most frequent, with their counts


async def run(args: argparse.Namespace) -> LoadResult:
    pki = Path(args.pki)
    tls = TLSSettings(
        certificate=pki / "client-chain.pem",
        private_key=pki / "client.key",
        ca_files=pki / "ca.pem",
    )
    errors: collections.Counter[str] = collections.Counter()
    ok = failed = 0
    jobs: list[Coroutine[None, None, None]]
    if args.mode == "echo":
        proposals = default_proposals()

        async def echo_client() -> None:
            nonlocal ok, failed
            for _ in range(args.each):
                try:
                    async with await associate(
                        "127.0.0.1", args.port, tls, called_ae=args.called_ae, proposals=proposals
                    ) as assoc:
                        status = await assoc.echo()
                    if status == 0:
                        ok += 1
                    else:
                        failed += 1
                        errors[f"C-ECHO status 0x{status:04x}"] += 1
                except Exception as exc:  # count and keep going: failures are the finding
                    failed += 1
                    errors[f"{type(exc).__name__}: {exc}"[:300]] += 1

        jobs = [echo_client() for _ in range(args.clients)]
    else:
        files = sorted(Path(args.dir).glob("*.dcm"))
        groups = [files[i : i + args.per] for i in range(0, len(files), args.per)]
        part, parts = (int(x) for x in args.part.split("/"))
        groups = groups[part::parts][: args.clients]
        proposals = proposals_for(files[:1])

        async def store_client(group: list[Path]) -> None:
            nonlocal ok, failed
            answered = 0
            try:
                async with await associate(
                    "127.0.0.1", args.port, tls, called_ae=args.called_ae, proposals=proposals
                ) as assoc:
                    for f in group:
                        status = await assoc.store(f)
                        answered += 1
                        if status == 0:
                            ok += 1
                        else:
                            failed += 1
                            errors[f"C-STORE status 0x{status:04x}"] += 1
            except Exception as exc:
                failed += len(group) - answered  # objects of this association not confirmed
                errors[f"{type(exc).__name__}: {exc}"[:300]] += 1

        jobs = [store_client(g) for g in groups]
    _raise_nofile(4 * len(jobs) + 256)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    t0 = time.monotonic()
    await asyncio.gather(*jobs)
    t1 = time.monotonic()
    return {
        "start": t0,
        "end": t1,
        "elapsed": t1 - t0,
        "ok": ok,
        "failed": failed,
        "errors": dict(errors.most_common(5)),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["echo", "store"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pki", required=True)
    p.add_argument("--called-ae", default="DICOMTLS")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--each", type=int, default=10)
    p.add_argument("--dir")
    p.add_argument("--per", type=int, default=20)
    p.add_argument("--part", default="0/1")
    print(json.dumps(asyncio.run(run(p.parse_args()))), flush=True)
