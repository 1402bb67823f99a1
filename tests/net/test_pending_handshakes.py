"""Bounds on pending TLS handshakes: the counting and its log lines, then the real server on
loopback (refusal before any TLS work, slots given back, and nothing left for the garbage
collector once a handshake has failed)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

import pytest

from dicomtls.net.link import HandshakeLimits, LinkEvents, SecureLink, connect, serve
from dicomtls.net.pending import PendingHandshakes, address_key, resident_mib
from dicomtls.tls.engine import TLSEngine
from dicomtls.tls.errors import TLSHandshakeError
from dicomtls.tls.flags import VerifyFlags

from ..conftest import MatrixPKI

MUTUAL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT
PER_PEER = "pending-handshakes-per-peer"
TOTAL = "pending-handshakes"


class Recorder:
    """What a PendingHandshakes reported: refusals, and calls to give memory back."""

    def __init__(self, limits: HandshakeLimits) -> None:
        self.refused: list[tuple[str, str]] = []
        self.given_back = 0
        self.pending = PendingHandshakes(
            limits, lambda peer, why: self.refused.append((peer, why)), give_back=self._give_back
        )

    def _give_back(self) -> None:
        self.given_back += 1


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dicomtls.net"]


def test_per_peer_and_total_bounds_count_and_release() -> None:
    seen = Recorder(HandshakeLimits(per_peer=2, total=3))
    pending = seen.pending
    assert pending.admit("10.0.0.1", "10.0.0.1:1000")
    assert pending.admit("10.0.0.1", "10.0.0.1:1001")
    assert not pending.admit("10.0.0.1", "10.0.0.1:1002")  # its own bound
    assert pending.admit("10.0.0.2", "10.0.0.2:1000")  # another address still gets in
    assert not pending.admit("10.0.0.3", "10.0.0.3:1000")  # now the total is reached
    assert seen.refused == [("10.0.0.1:1002", PER_PEER), ("10.0.0.3:1000", TOTAL)]
    assert (pending.total, pending.pending("10.0.0.1")) == (3, 2)
    pending.release("10.0.0.1")
    assert pending.admit("10.0.0.3", "10.0.0.3:1001")  # a released slot is free again
    assert pending.total == 3 and pending.pending("10.0.0.1") == 1


def test_a_flood_gets_one_line_per_address_and_one_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "dicomtls.net")
    seen = Recorder(HandshakeLimits(per_peer=1, total=100))
    pending = seen.pending
    assert pending.admit("10.0.0.1", "10.0.0.1:1")
    assert pending.admit("10.0.0.2", "10.0.0.2:1")
    for port in range(2, 502):
        assert not pending.admit("10.0.0.1", f"10.0.0.1:{port}")
    for port in range(2, 12):
        assert not pending.admit("10.0.0.2", f"10.0.0.2:{port}")
    lines = _lines(caplog)
    assert lines == [
        "connection from 10.0.0.1:2 refused: 1 TLS handshakes from 10.0.0.1 already in "
        "progress (max_pending_per_peer); further refusals are counted, not logged",
        "connection from 10.0.0.2:2 refused: 1 TLS handshakes from 10.0.0.2 already in "
        "progress (max_pending_per_peer); further refusals are counted, not logged",
    ]
    assert len(seen.refused) == 510  # every refusal is counted (metrics), only 2 logged
    pending.release("10.0.0.1")
    assert len(_lines(caplog)) == 2  # one still pending: the flood is not over
    pending.release("10.0.0.2")
    summary = _lines(caplog)[2:]
    assert len(summary) == 1
    assert summary[0].startswith("TLS handshake flood over, at most 2 were pending: ")
    assert "510 connection(s) refused" in summary[0]
    assert "(500 from 10.0.0.1, 10 from 10.0.0.2)" in summary[0]
    assert seen.given_back == 0  # 2 pending at most: not worth a malloc_trim


def test_the_total_bound_is_named_once_and_few_addresses_are_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "dicomtls.net")
    seen = Recorder(HandshakeLimits(per_peer=1, total=1000))
    pending = seen.pending
    addresses = [f"10.0.{n // 250}.{n % 250}" for n in range(100)]
    for address in addresses:
        assert pending.admit(address, f"{address}:1")
        assert not pending.admit(address, f"{address}:2")
    named = [line for line in _lines(caplog) if "max_pending_per_peer" in line]
    assert len(named) == 16  # as many addresses as the defaults let hold their bound at once
    full = Recorder(HandshakeLimits(per_peer=10, total=2))
    assert full.pending.admit("10.0.0.1", "a") and full.pending.admit("10.0.0.2", "b")
    for n in range(50):
        assert not full.pending.admit(f"10.1.0.{n}", f"10.1.0.{n}:1")
    assert len([line for line in _lines(caplog) if "max_pending_handshakes" in line]) == 1


def test_memory_is_given_back_when_a_high_mark_drains() -> None:
    seen = Recorder(HandshakeLimits(per_peer=100, total=100))
    pending = seen.pending
    for _ in range(64):
        assert pending.admit("10.0.0.1", "p")
    for _ in range(63):
        pending.release("10.0.0.1")
    assert seen.given_back == 0  # not yet: one is still pending
    pending.release("10.0.0.1")
    assert seen.given_back == 1
    assert pending.admit("10.0.0.1", "p")
    pending.release("10.0.0.1")
    assert seen.given_back == 1  # the high mark starts again from zero


def test_address_keys() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:2::99") == address_key("2001:db8:1:2:ffff::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    resident = resident_mib()
    assert resident is None or resident > 0


# -- the real server ---------------------------------------------------------------------


async def _until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Let the event loop run until ``condition()`` holds (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)


async def _open(port: int, address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))


async def _bounded_server(matrix_pki: MatrixPKI) -> None:
    refused: list[tuple[str, str]] = []
    accepted: list[str] = []
    events = LinkEvents(
        on_accepted=accepted.append, on_refused=lambda peer, why: refused.append((peer, why))
    )

    async def handler(link: SecureLink) -> None:
        link.write(await link.read())

    server_tls = matrix_pki.settings("server", MUTUAL)
    limits = HandshakeLimits(per_peer=2, total=3)
    server = await serve(handler, "127.0.0.1", 0, server_tls, events=events, handshakes=limits)
    async with server:
        held = [await _open(server.port, "127.0.0.2") for _ in range(2)]
        reader, writer = await _open(server.port, "127.0.0.2")
        writer.write(b"\x16\x03\x01")  # the start of a ClientHello: no answer for it either
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, not one byte sent
        writer.close()
        assert [why for _, why in refused] == [PER_PEER]
        assert server.pending_handshakes == 2

        client = matrix_pki.settings("client", MUTUAL)
        link = await connect("127.0.0.1", server.port, client)  # another address: served
        link.write(b"ping")
        assert await link.read() == b"ping"
        await link.close()
        third = await _open(server.port, "127.0.0.3")
        await _until(lambda: server.pending_handshakes == 3, "three pending")
        reader, writer = await _open(server.port, "127.0.0.4")
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        assert [why for _, why in refused] == [PER_PEER, TOTAL]

        for _, held_writer in held:
            held_writer.close()  # the third stays
        await _until(lambda: server.pending_handshakes == 1, "the two released")
        _, writer = await _open(server.port, "127.0.0.2")
        await _until(lambda: len(accepted) == 5, "a new one admitted from the same address")
        assert len(refused) == 2
        writer.close()
        third[1].close()


def test_the_server_refuses_over_the_bounds_before_any_tls_work(matrix_pki: MatrixPKI) -> None:
    asyncio.run(_bounded_server(matrix_pki))


def _engines() -> int:
    return sum(isinstance(o, TLSEngine) for o in gc.get_objects())


async def _failed_handshakes_leave_nothing_behind(matrix_pki: MatrixPKI) -> None:
    failures: list[TLSHandshakeError] = []

    def record_failure(_: str, error: TLSHandshakeError | None) -> None:
        if error is not None:
            failures.append(error)

    events = LinkEvents(on_secure_link_ready=record_failure)

    async def handler(link: SecureLink) -> None:
        raise AssertionError("no handshake here succeeds")

    server_tls = matrix_pki.settings("server", MUTUAL, handshake_timeout=0.5)
    server = await serve(handler, "127.0.0.1", 0, server_tls, events=events)
    async with server:
        before = _engines()
        writers = []
        for n in range(30):
            _, writer = await _open(server.port, "127.0.0.1")
            if n % 3 == 1:
                writer.write(b"GET / HTTP/1.0\r\n\r\n")  # not TLS: fails as bytes arrive
            writers.append(writer)
        for n, writer in enumerate(writers):
            if n % 3 == 0:
                writer.close()  # gone mid-handshake; the rest (n % 3 == 2) time out
        await _until(lambda: len(failures) == 30, "every handshake failed")
        await _until(lambda: server.pending_handshakes == 0, "every handshake released")
        await _until(lambda: _engines() == before, "every engine freed")
        for writer in writers:
            writer.close()
    stages = {error.stage.value for error in failures}
    assert {"closed", "not-tls", "timeout"} <= stages, stages


def test_failed_handshakes_are_freed_without_the_garbage_collector(matrix_pki: MatrixPKI) -> None:
    """A failed handshake's objects go as soon as it ends, not at the next full collection
    (which may come thousands of connections later): with the collector off, none is left."""
    gc.collect()
    gc.disable()
    try:
        asyncio.run(_failed_handshakes_leave_nothing_behind(matrix_pki))
    finally:
        gc.enable()
