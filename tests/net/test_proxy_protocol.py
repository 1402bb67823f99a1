"""PROXY protocol v2 on a real node: the client's address from a trusted balancer, or nothing.

The balancer here is a relay on loopback that does what HAProxy's ``send-proxy-v2`` does
(a header naming the client, then the bytes both ways); tests/scale/test_cluster.py runs
the real HAProxy. TLS stays end to end: the relay never sees a key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import pytest
from lxml import etree

from dicomtls.audit.transport import AuditTrail, FileSink
from dicomtls.net.association import AssociationError
from dicomtls.net.proxy import ProxyHeaderError, ProxyProtocol, encode_header, parse_header
from dicomtls.net.scp import Limits
from dicomtls.node.node import RunningNode

from ..node.site import Site, connect_as, make_site, running
from ..node.test_audit_and_metrics import _scrape
from ..node.test_storage import _make_file

#: What _scrape returns: a sample's value by its metric name and labels.
Scraped = dict[tuple[str, tuple[tuple[str, str], ...]], float]

LOOPBACK = ProxyProtocol.from_config(["127.0.0.1/32"], header_timeout=0.5)


# -- the parser -------------------------------------------------------------------------------


def test_headers_for_ipv4_ipv6_and_local() -> None:
    header = parse_header(encode_header(("10.9.8.7", 51000), ("10.0.0.1", 2762)) + b"\x16\x03")
    assert header is not None and not header.local
    assert (header.peer, header.destination, header.length) == (
        "10.9.8.7:51000",
        ("10.0.0.1", 2762),
        28,
    )
    six = parse_header(
        encode_header(("2001:db8::7", 443), ("2001:db8::1", 2762), tlvs=b"\x05\x00\x02id")
    )
    assert six is not None and six.peer == "[2001:db8::7]:443" and six.length == 16 + 36 + 5
    local = parse_header(encode_header(None))
    assert local is not None and local.local and local.source is None
    whole = encode_header(("10.9.8.7", 1))
    assert all(parse_header(whole[:cut]) is None for cut in range(len(whole)))  # "need more"


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"\x16\x03\x01\x02\x00\x01", "no PROXY protocol v2 signature"),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n", "version 1"),
        (encode_header(("10.0.0.1", 1))[:12] + b"\x11\x11\x00\x0c" + bytes(12), "version 1, not 2"),
        (
            encode_header(("10.0.0.1", 1))[:12] + b"\x2f\x11\x00\x0c" + bytes(12),
            "unknown PROXY v2 command",
        ),
        (
            encode_header(("10.0.0.1", 1))[:12] + b"\x21\x31\x00\xd8" + bytes(216),
            "without a TCP client address",
        ),
        (
            encode_header(("10.0.0.1", 1))[:12] + b"\x21\x12\x00\x0c" + bytes(12),
            "without a TCP client address",
        ),
        (encode_header(("10.0.0.1", 1))[:12] + b"\x21\x11\xff\xff", "over the limit"),
        (encode_header(("10.0.0.1", 1))[:12] + b"\x21\x11\x00\x04" + bytes(4), "too short"),
    ],
)
def test_what_is_refused(data: bytes, said: str) -> None:
    with pytest.raises(ProxyHeaderError, match=said):
        parse_header(data)


def test_trusted_proxies_are_networks() -> None:
    proxy = ProxyProtocol.from_config(["10.0.0.0/8", "2001:db8::/32"])
    assert (
        proxy.trusts("10.1.2.3") and proxy.trusts("::ffff:10.1.2.3") and proxy.trusts("2001:db8::5")
    )
    assert not proxy.trusts("11.0.0.1") and not proxy.trusts("not an address")
    with pytest.raises(ValueError, match="trusted_proxies"):
        ProxyProtocol.from_config([])
    with pytest.raises(ValueError, match=r"10\.0\.0\.1/8"):
        ProxyProtocol.from_config(["10.0.0.1/8"])  # host bits set: a typo, not a network


# -- a live node behind a relay ---------------------------------------------------------------


@asynccontextmanager
async def relay(target: int, header: bytes, *, together: bool = False) -> AsyncIterator[int]:
    """A balancer on loopback: each connection gets ``header`` in front, then is piped.
    ``together``: the header goes out in one write with the client's first bytes."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        node_r, node_w = await asyncio.open_connection("127.0.0.1", target)
        node_w.write(header + (await client_r.read(65536) if together else b""))
        await asyncio.gather(pipe(client_r, node_w), pipe(node_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def _echo_via(site: Site, node: RunningNode, port: int, store: Path | None = None) -> None:
    """C-ECHO (and C-STORE ``store``) through the relay on ``port``."""
    real = node.port
    node.server.port = port  # connect_as dials node.port: through the relay instead
    try:
        async with await connect_as(site, node, "ct1", "CT1") as assoc:
            await assoc.echo()
            if store is not None:
                assert await assoc.store(store) == 0
    finally:
        node.server.port = real


async def _raw(port: int, data: bytes) -> bytes:
    """Send ``data`` on a plain connection; what comes back before the node closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("proxy-pki"))


def test_the_client_named_by_the_proxy_is_the_peer_everywhere(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Logs, audit, max_per_peer and the metrics see 10.9.8.7, not the balancer."""
    caplog.set_level(logging.INFO)
    audit = tmp_path / "audit.log"
    objects = [tmp_path / "a.dcm", tmp_path / "b.dcm"]
    for path in objects:
        _make_file(path, pixels=2000)

    async def run() -> dict[str, object]:
        out: dict[str, object] = {}
        async with running(
            site,
            tmp_path / "store",
            proxy=LOOPBACK,
            limits=Limits(max_per_peer=1),
            audit=AuditTrail([FileSink(audit)]),
            metrics_port=0,
        ) as node:
            async with (
                relay(node.port, encode_header(("10.9.8.7", 40001))) as first,
                relay(node.port, encode_header(("10.9.8.8", 40002))) as second,
            ):
                await _echo_via(site, node, first, objects[0])
                real = node.port
                node.server.port = first
                async with await connect_as(
                    site, node, "ct1", "CT1"
                ):  # 10.9.8.7 holds its one slot
                    try:
                        await _echo_via(site, node, first)
                    except AssociationError as exc:
                        out["second from 10.9.8.7"] = str(exc)
                    node.server.port = real
                    await _echo_via(site, node, second, objects[1])  # another client: its own slot
            assert node.metrics_server is not None
            out["metrics"] = _scrape(node.metrics_server.port)
        return out

    out = asyncio.run(run())
    assert "rejected" in str(out["second from 10.9.8.7"])
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith("association from 10.9.8.7:40001")
        and "1 associations already active from 10.9.8.7" in m
        for m in messages
    )
    sources = [  # who sent the objects, in the DICOM Instances Transferred records
        a.get("NetworkAccessPointID")
        for line in audit.read_text().splitlines()
        for a in etree.fromstring(line).iter("ActiveParticipant")
        if a.get("UserIsRequestor") == "true"
    ]
    assert sorted(sources) == ["10.9.8.7", "10.9.8.8"]


def test_without_a_header_or_from_an_untrusted_address_the_connection_is_closed(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> dict[str, object]:
        async with (
            running(site, tmp_path / "a", proxy=LOOPBACK, metrics_port=0) as node,
            running(
                site,
                tmp_path / "b",
                proxy=ProxyProtocol.from_config(["10.0.0.0/8"]),
                metrics_port=0,
            ) as elsewhere,
        ):
            out: dict[str, object] = {
                "tls first": await _raw(node.port, b"\x16\x03\x01\x00\xa0\x01" + bytes(64)),
                "v1": await _raw(node.port, b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n"),
                "untrusted": await _raw(elsewhere.port, encode_header(("10.9.8.7", 1))),
                "too long": await _raw(
                    node.port, encode_header(("10.0.0.1", 1))[:14] + b"\xff\xff"
                ),
            }
            assert node.metrics_server and elsewhere.metrics_server
            out["metrics"] = _scrape(node.metrics_server.port)
            out["elsewhere"] = _scrape(elsewhere.metrics_server.port)
        return out

    out = asyncio.run(run())
    assert (
        out["tls first"] == out["v1"] == out["untrusted"] == out["too long"] == b""
    )  # no TLS byte
    refused = cast(Scraped, out["metrics"])
    assert refused[("dicomtls_connections_refused_total", (("reason", "proxy-header"),))] == 3
    other = cast(Scraped, out["elsewhere"])
    assert other[("dicomtls_connections_refused_total", (("reason", "proxy-untrusted"),))] == 1
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any("no PROXY protocol v2 signature" in line for line in lines)
    assert any("send-proxy-v2" in line for line in lines)
    assert any("not a trusted proxy" in line and "10.0.0.0/8" in line for line in lines)
    assert not any("handshake" in r.getMessage().lower() for r in caplog.records)


def test_local_health_checks_are_closed_quietly_and_counted(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with running(site, tmp_path / "store", proxy=LOOPBACK, metrics_port=0) as node:
            for _ in range(3):
                assert await _raw(node.port, encode_header(None)) == b""
            assert node.metrics_server is not None
            return _scrape(node.metrics_server.port)

    metrics = asyncio.run(run())
    assert metrics[("dicomtls_connections_refused_total", (("reason", "proxy-local"),))] == 3
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_proxy_that_stalls_mid_header_is_cut_off(site: Site, tmp_path: Path) -> None:
    """Half a header, then silence: closed at the header deadline, holding a bounded buffer."""

    async def run() -> float:
        async with running(site, tmp_path / "store", proxy=LOOPBACK) as node:
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await _raw(node.port, encode_header(("10.0.0.1", 1))[:20]) == b""
            return loop.time() - started

    waited = asyncio.run(run())
    assert LOOPBACK.header_timeout <= waited < 9  # the node closed it, not our 10 s limit


def test_a_header_and_client_hello_in_one_segment(site: Site, tmp_path: Path) -> None:
    """HAProxy sends the header and the client's first bytes together: nothing is lost."""

    async def run() -> None:
        async with (
            running(site, tmp_path / "store", proxy=LOOPBACK) as node,
            relay(node.port, encode_header(("10.9.8.7", 1)), together=True) as via,
        ):
            await _echo_via(site, node, via)

    asyncio.run(run())


def test_max_per_peer_counts_an_ipv6_host_by_its_64_as_the_handshake_bounds_do(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client picks any address of its IPv6 /64 (privacy addresses), and the proxy names
    whichever it used: counted per address, one host took max_per_peer slots per address,
    every slot of the node in the end. Counted by /64, as the pending-handshake bounds are;
    an IPv4-mapped address counts as its IPv4 address."""
    caplog.set_level(logging.WARNING)

    async def attempt(site: Site, node: RunningNode, port: int) -> str:
        try:
            await _echo_via(site, node, port)
        except AssociationError as exc:
            return str(exc)
        return "served"

    async def run() -> dict[str, str]:
        async with (
            running(
                site, tmp_path / "store", proxy=LOOPBACK, limits=Limits(max_per_peer=1)
            ) as node,
            relay(node.port, encode_header(("2001:db8::7", 40001))) as six,
            relay(node.port, encode_header(("2001:db8::8", 40002))) as same_64,
            relay(node.port, encode_header(("2001:db8:0:1::9", 40003))) as other_64,
            relay(node.port, encode_header(("10.9.8.7", 40004))) as four,
            relay(node.port, encode_header(("::ffff:10.9.8.7", 40005))) as mapped,
        ):
            real, node.server.port = node.server.port, six
            async with await connect_as(site, node, "ct1", "CT1"):  # holds the /64's slot
                node.server.port = four
                async with await connect_as(site, node, "ct1", "CT1"):  # 10.9.8.7's
                    node.server.port = real
                    return {
                        "same /64": await attempt(site, node, same_64),
                        "another /64": await attempt(site, node, other_64),
                        "mapped": await attempt(site, node, mapped),
                    }

    out = asyncio.run(run())
    assert "rejected" in out["same /64"] and "rejected" in out["mapped"], out
    assert out["another /64"] == "served"
    messages = [r.getMessage() for r in caplog.records]
    assert any("1 associations already active from 2001:db8::/64" in m for m in messages), messages
    assert any("1 associations already active from 10.9.8.7" in m for m in messages), messages


def test_a_client_behind_the_proxy_cannot_name_itself_with_a_header_of_its_own(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the first header counts, the balancer's: a second one, the client's, is the
    start of its TLS bytes, so the handshake fails, and the line names the real client."""
    caplog.set_level(logging.INFO)
    forged = encode_header(("6.6.6.6", 1)) + b"\x16\x03\x01\x00\xa0\x01" + bytes(64)

    async def run() -> bytes:
        async with (
            running(site, tmp_path / "store", proxy=LOOPBACK) as node,
            relay(node.port, encode_header(("10.9.8.7", 40001))) as via,
        ):
            return await _raw(via, forged)

    answer = asyncio.run(run())
    assert not answer.startswith(b"\x16")  # no ServerHello: at most an alert
    messages = [r.getMessage() for r in caplog.records]
    assert any("10.9.8.7:40001" in m and "handshake" in m.lower() for m in messages), messages
    assert not any("6.6.6.6" in m for m in messages), messages
