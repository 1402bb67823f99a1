"""/healthz beside /metrics: 200 while the node takes clients, 503 with the reason otherwise.

HAProxy's ``option httpchk GET /healthz`` takes a node out on 503: while it drains
(SIGTERM, SIGUSR1, :meth:`RunningNode.drain`), or when its index or object store is away.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from dicomtls.node.node import RunningNode

from ..node.site import make_site, running
from ..servers import PostgresServer, SeaweedServer


def healthz(node: RunningNode) -> tuple[int, str]:
    assert node.metrics_server is not None
    url = f"http://127.0.0.1:{node.metrics_server.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _until(node: RunningNode, status: int) -> tuple[int, str]:
    """Poll /healthz (its checks are cached for a second) until it says ``status``."""
    deadline = time.monotonic() + 15
    while (answer := healthz(node))[0] != status and time.monotonic() < deadline:
        time.sleep(0.2)
    return answer


def test_healthy_then_draining(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    site = make_site(tmp_path / "pki")

    async def run() -> list[tuple[int, str]]:
        async with running(site, tmp_path / "store", metrics_port=0) as node:
            answers = [await asyncio.to_thread(healthz, node)]
            node.drain()
            answers.append(await asyncio.to_thread(healthz, node))
            return answers

    (ok, draining) = asyncio.run(run())
    assert ok == (200, "ok\n")
    assert draining == (503, "unavailable: draining\n")
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert (
        said.count("draining: /healthz now answers 503 so the balancer sends new clients elsewhere")
        == 1
    ), said


def test_an_index_or_store_out_of_reach_is_a_503(
    tmp_path: Path, postgres: PostgresServer, seaweedfs: SeaweedServer, s3_credentials: None
) -> None:
    site = make_site(tmp_path / "pki")
    dsn = postgres.new_database()
    bucket = seaweedfs.new_bucket()

    async def run() -> list[tuple[int, str]]:
        async with running(
            site, tmp_path / "store", metrics_port=0, index=dsn, objects=seaweedfs.url(bucket)
        ) as node:
            answers = [await asyncio.to_thread(healthz, node)]
            with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
            answers.append(await asyncio.to_thread(_until, node, 503))
        async with running(
            site,
            tmp_path / "store2",
            metrics_port=0,
            index=postgres.new_database(),
            objects=seaweedfs.url("no-such-bucket"),
        ) as node:
            answers.append(await asyncio.to_thread(healthz, node))
        return answers

    ok, no_index, no_bucket = asyncio.run(run())
    assert ok == (200, "ok\n")
    assert no_index[0] == 503 and no_index[1].startswith("unavailable: index unreachable")
    assert (
        no_bucket[0] == 503 and "object store unreachable" in no_bucket[1] and "404" in no_bucket[1]
    )
