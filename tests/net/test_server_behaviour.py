"""The SCP under pressure and abuse: limits, timeouts, shutdown, and bad input from a peer.

Raw peers here speak hand-built PDUs over plain TCP, so every byte is under the
test's control; each case asserts the standard's answer, one log line naming the
peer, and that a well-behaved client is still served afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from dicomtls.dimse.command import encode_command
from dicomtls.dimse.messages import c_echo_rq
from dicomtls.net.association import AssociationError, associate
from dicomtls.net.scp import Limits, Services, serve_dicom
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.tls.errors import TLSHandshakeError
from dicomtls.ul import PDUReader
from dicomtls.ul.acse import AcceptorPolicy, Proposal, build_request
from dicomtls.ul.pdu import PDV, Abort, AssociateAC, AssociateRJ, AssociateRQ, PDataTF

from ..node.test_storage import CT, _make_file

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
POLICY = AcceptorPolicy(
    "SCP", {"1.2.840.10008.1.1": [IMPLICIT], CT: [EXPLICIT]}, max_pdu_length=16384
)


class RawPeer:
    """A DICOM peer under the test's full control."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pdus = PDUReader()

    @classmethod
    async def open(cls, port: int) -> RawPeer:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def next_pdu(self) -> object | None:
        while (pdu := self.pdus.next_pdu()) is None:
            data = await asyncio.wait_for(self.reader.read(65536), 10)
            if not data:
                return None
            self.pdus.feed(data)
        return pdu

    async def associate(self) -> AssociateAC:
        await self.send(
            build_request("RAW", "SCP", [Proposal("1.2.840.10008.1.1", (IMPLICIT,))]).encode()
        )
        ac = await self.next_pdu()
        assert isinstance(ac, AssociateAC)
        return ac


async def _echo_ok(port: int) -> int:
    async with await associate("127.0.0.1", port, None, called_ae="SCP") as assoc:
        return await assoc.echo()


async def _abuse(payload: bytes, associated: bool) -> tuple[object | None, int]:
    async with await serve_dicom("127.0.0.1", 0, None, POLICY) as server:
        peer = await RawPeer.open(server.port)
        if associated:
            await peer.associate()
        await peer.send(payload)
        answer = await peer.next_pdu()
        return answer, await _echo_ok(server.port)


ECHO_COMMAND = encode_command(c_echo_rq(1))
CASES = {
    "unknown PDU type": (b"\x09\x00\x00\x00\x00\x02\x00\x00", False, 1, "unrecognized"),
    "P-DATA over the maximum": (PDataTF((PDV(1, 3, b"x" * 20000),)).encode(), True, 6, "16384"),
    "P-DATA before association": (
        PDataTF((PDV(1, 3, ECHO_COMMAND),)).encode(),
        False,
        2,
        "unexpected",
    ),
    "command missing elements": (
        PDataTF((PDV(1, 3, ECHO_COMMAND[:-10]),)).encode(),
        True,
        None,
        "bad DIMSE",
    ),
    "command on a context never accepted": (
        PDataTF((PDV(9, 3, b"\x00" * 12),)).encode(),
        True,
        None,
        "bad DIMSE",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_aborted_with_a_reason_and_others_are_served(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    payload, associated, reason, logged = CASES[case]
    with caplog.at_level(logging.WARNING, logger="dicomtls"):
        answer, echo_status = asyncio.run(_abuse(payload, associated))
    assert echo_status == 0  # the server kept serving a well-behaved client
    assert isinstance(answer, Abort), answer
    if reason is not None:
        assert answer.reason == reason
    lines = [r.getMessage() for r in caplog.records if "127.0.0.1:" in r.getMessage()]
    assert len(lines) == 1, lines
    assert logged in lines[0].lower() or logged in lines[0]


async def _limits() -> tuple[AssociateRJ, int]:
    limits = Limits(max_associations=10, max_per_peer=2)
    async with await serve_dicom("127.0.0.1", 0, None, POLICY, limits=limits) as server:
        first, second = await RawPeer.open(server.port), await RawPeer.open(server.port)
        await first.associate()
        await second.associate()
        third = await RawPeer.open(server.port)
        await third.send(
            build_request("RAW", "SCP", [Proposal("1.2.840.10008.1.1", (IMPLICIT,))]).encode()
        )
        refused = await third.next_pdu()
        assert isinstance(refused, AssociateRJ)
        first.writer.close()  # slots free up ...
        third.writer.close()
        while server.active.get("127.0.0.1", 0) > 1:  # the server notices both closes
            await asyncio.sleep(0.01)
        status = await _echo_ok(server.port)  # ... and is used again
        second.writer.close()
        return refused, status


def test_per_peer_limit_rejects_transiently() -> None:
    refused, status = asyncio.run(_limits())
    assert refused.result.name == "TRANSIENT" and refused.reason.name == "LOCAL_LIMIT_EXCEEDED"
    assert status == 0


async def _idle() -> object | None:
    async with await serve_dicom(
        "127.0.0.1", 0, None, POLICY, limits=Limits(idle_timeout=0.5)
    ) as server:
        peer = await RawPeer.open(server.port)
        await peer.associate()
        return await peer.next_pdu()  # we say nothing; the server aborts us


def test_idle_association_is_aborted(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dicomtls"):
        answer = asyncio.run(_idle())
    assert isinstance(answer, Abort)
    assert any("idle timeout" in r.getMessage() for r in caplog.records)


async def _dimse_timeout() -> str:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = RawPeer(reader, writer)
        rq = await peer.next_pdu()
        from dicomtls.ul.acse import answer_request

        assert isinstance(rq, AssociateRQ)
        writer.write(answer_request(rq, POLICY).encode())
        await writer.drain()
        await reader.read()  # accept, then never answer anything

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    async with server:
        assoc = await associate(
            "127.0.0.1",
            server.sockets[0].getsockname()[1],
            None,
            called_ae="SCP",
            dimse_timeout=0.5,
        )
        with pytest.raises(AssociationError) as caught:
            await assoc.echo()
        return str(caught.value)


def test_dimse_timeout_names_the_missing_response() -> None:
    assert "no C_ECHO_RSP" in asyncio.run(_dimse_timeout())


async def _shutdown_during_store(tmp: Path) -> tuple[int, bool]:
    path = tmp / "big.dcm"
    _make_file(path, pixels=3_000_000)
    store = DurableStore(tmp / "store")
    server = await serve_dicom(
        "127.0.0.1", 0, None, POLICY, Services(store=DurableStoreHandler(store))
    )
    assoc = await associate(
        "127.0.0.1", server.port, None, called_ae="SCP", proposals=[Proposal(CT, (EXPLICIT,))]
    )
    storing = asyncio.ensure_future(assoc.store(path))
    await asyncio.sleep(0)  # the transfer is under way ...
    closing = asyncio.ensure_future(server.close())  # ... when shutdown begins
    status = await storing
    await assoc.release()
    await closing
    refused = False
    try:
        await associate("127.0.0.1", server.port, None, called_ae="SCP")
    except (AssociationError, OSError, TLSHandshakeError):
        refused = True
    return status, refused


def test_graceful_shutdown_lets_a_running_transfer_finish(tmp_path: Path) -> None:
    status, refused_after = asyncio.run(_shutdown_during_store(tmp_path))
    assert status == 0
    assert refused_after


async def _garbage_datasets(tmp: Path) -> tuple[int, int, int, list[Path]]:
    from dicomtls.dimse.command import CommandField, Tag, number
    from dicomtls.dimse.messages import c_find_rq, c_store_rq
    from dicomtls.net.qr_scu import QueryModel

    find_uid = QueryModel.STUDY_ROOT.find_uid
    policy = AcceptorPolicy("SCP", {CT: [EXPLICIT], find_uid: [EXPLICIT]})
    store = DurableStore(tmp / "store")
    services = Services(store=DurableStoreHandler(store), find=lambda *_: [])
    async with await serve_dicom("127.0.0.1", 0, None, policy, services) as server:
        assoc = await associate(
            "127.0.0.1",
            server.port,
            None,
            called_ae="SCP",
            proposals=[Proposal(CT, (EXPLICIT,)), Proposal(find_uid, (EXPLICIT,))],
        )
        async with assoc:
            ct, find = assoc.negotiated.context_for(CT), assoc.negotiated.context_for(find_uid)
            assert ct is not None and find is not None
            garbage = [b"\x10\x00\x10\x00PN\x08\x00Doe^Jane\x08\x00\x18\x00XX\x04\x001.2."]
            await assoc.send_message(ct.id, c_store_rq(1, CT, "1.2.3.4"), garbage)
            bad_store = await assoc.response(CommandField.C_STORE_RSP, 1)
            path = tmp / "ok.dcm"
            _make_file(path, pixels=1000)
            other_uid = c_store_rq(2, CT, "9.9.9")  # the data set inside names another instance
            from dicomtls.dimse.part10 import iter_blocks, read_header

            await assoc.send_message(ct.id, other_uid, iter_blocks(read_header(path)))
            mismatch = await assoc.response(CommandField.C_STORE_RSP, 2)
            await assoc.send_message(find.id, c_find_rq(3, find_uid), [b"\xfe\xff\x00\xe0garbage"])
            bad_find = await assoc.response(CommandField.C_FIND_RSP, 3)
    return (
        number(bad_store.command, Tag.Status),
        number(mismatch.command, Tag.Status),
        number(bad_find.command, Tag.Status),
        list(store.objects.rglob("*.dcm")),
    )


def test_unparseable_data_sets_get_failure_statuses_and_are_not_kept(tmp_path: Path) -> None:
    bad_store, mismatch, bad_find, stored = asyncio.run(_garbage_datasets(tmp_path))
    assert bad_store == 0xC000  # cannot understand
    assert mismatch == 0xA900  # data set does not match the command
    assert bad_find == 0xC001  # unable to process
    assert stored == []
    assert not list((tmp_path / "store" / ".incoming").iterdir())
