"""Hostile DICOM peers against a real ``dicomtls serve``, over mutual TLS: slow association
requests and PDUs, garbage, absurd lengths, a PDU that never ends, 1,000 presentation
contexts, malformed DIMSE commands, and a peer that vanishes in the middle of a C-STORE.

Each hostile association stays open while a good client completes a C-ECHO; then the
attack, the node's answer on the wire, its one log line naming the peer, and a good client
served again.
"""

from __future__ import annotations

import dataclasses
import socket
import sqlite3
import struct
import threading
import time
from pathlib import Path

import pytest

from dicomtls.dimse.command import Tag, encode_command
from dicomtls.dimse.messages import c_echo_rq, c_echo_rsp, c_store_rq
from dicomtls.dimse.part10 import iter_blocks, read_header
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.acse import Proposal, build_request
from dicomtls.ul.codes import AbortReason
from dicomtls.ul.items import PresentationContextRQ
from dicomtls.ul.pdu import PDV, Abort, AssociateAC, PDataTF

from ..conftest import MatrixPKI
from ..node.test_storage import CT, _make_file
from .conftest import AE, IDLE_TIMEOUT, LiveNode, echo_now
from .peers import EXPLICIT, IMPLICIT, VERIFICATION, DicomPeer, echo_request, is_open, trickle


def _peer(node: LiveNode, pki: MatrixPKI) -> DicomPeer:
    client = pki.files["client"]
    return DicomPeer.tls(node.port, client.cert, client.key, pki.ca_file)


def _associated_attack(
    node: LiveNode, pki: MatrixPKI, tls: TLSSettings, payload: bytes
) -> tuple[str, object | None, str]:
    """Associate, have a good client served while we sit there, send ``payload``; returns
    (the node's line for us, the PDU it answered with, our name)."""
    peer = _peer(node, pki)
    try:
        peer.associate()
        assert echo_now(node.port, tls) == 0
        assert node.naming(peer.name) == []
        peer.send(payload)
        answer = peer.next_pdu()
        line = node.wait_for(peer.name)
    finally:
        peer.close()
    assert echo_now(node.port, tls) == 0
    return line, answer, peer.name


def _pdata(data: bytes, command: bool = True, last: bool = True, context: int = 1) -> bytes:
    return PDataTF((PDV(context, (1 if command else 0) | (2 if last else 0), data),)).encode()


# -- slow peers (the node with short timeouts) --------------------------------------------


def _slow(node: LiveNode, peer: DicomPeer, data: bytes, tls: TLSSettings) -> tuple[str, int]:
    """Trickle ``data`` (one byte per 50 ms) while a good client is served."""
    sent: list[int] = []
    sender = threading.Thread(
        target=lambda: sent.append(trickle(peer.sock, data, 0.05, time.monotonic() + 60))
    )
    sender.start()
    try:
        assert echo_now(node.port, tls) == 0
        assert sender.is_alive() and node.naming(peer.name) == []  # still trickling
        line = node.wait_for(peer.name)
    finally:
        sender.join(timeout=70)
    return line, sent[0]


def test_slow_association_request_is_ended_by_artim(
    slow_tls_node: LiveNode, client_tls: TLSSettings, matrix_pki: MatrixPKI
) -> None:
    node = slow_tls_node
    peer = _peer(node, matrix_pki)
    request = echo_request()
    try:
        line, sent = _slow(node, peer, request, client_tls)
    finally:
        peer.close()
    assert f"association from {peer.name}: no A-ASSOCIATE-RQ arrived before the ARTIM" in line
    assert sent < len(request)
    assert echo_now(node.port, client_tls) == 0


def test_slow_pdu_after_association_is_ended_by_the_idle_timeout(
    slow_tls_node: LiveNode, client_tls: TLSSettings, matrix_pki: MatrixPKI
) -> None:
    node = slow_tls_node
    peer = _peer(node, matrix_pki)
    request = _pdata(encode_command(c_echo_rq(1)))  # ~80 bytes: 4 s at 50 ms a byte
    try:
        peer.associate()
        line, sent = _slow(node, peer, request, client_tls)
        answer = peer.next_pdu()
    finally:
        peer.close()
    assert f"association with {peer.name} aborted: no data for {IDLE_TIMEOUT:g} s" in line
    assert "idle timeout" in line
    assert isinstance(answer, Abort)
    assert sent < len(request)
    assert echo_now(node.port, client_tls) == 0


def test_pdv_that_never_ends_is_ended_by_the_idle_timeout(
    slow_tls_node: LiveNode, client_tls: TLSSettings, matrix_pki: MatrixPKI
) -> None:
    node = slow_tls_node
    peer = _peer(node, matrix_pki)
    command = encode_command(c_echo_rq(1))
    whole = _pdata(command + b"\x00" * 1000)
    try:
        peer.associate()
        peer.send(whole[:100])  # the PDU header promises 1000 bytes more than ever come
        assert echo_now(node.port, client_tls) == 0
        assert is_open(peer.sock) and node.naming(peer.name) == []
        line = node.wait_for(peer.name)
        answer = peer.next_pdu()
    finally:
        peer.close()
    assert f"association with {peer.name} aborted: no data for {IDLE_TIMEOUT:g} s" in line
    assert isinstance(answer, Abort)
    assert echo_now(node.port, client_tls) == 0


# -- bad input after association (the patient node) ----------------------------------------


def test_garbage_after_association(
    tls_node: LiveNode, client_tls: TLSSettings, matrix_pki: MatrixPKI
) -> None:
    garbage = bytes(range(256)) * 4
    line, answer, name = _associated_attack(tls_node, matrix_pki, client_tls, garbage)
    assert isinstance(answer, Abort) and answer.reason == AbortReason.UNRECOGNIZED_PDU
    assert f"association with {name} aborted" in line and "PDU type 0x00" in line


def test_pdu_claiming_4_gigabytes(
    tls_node: LiveNode, client_tls: TLSSettings, matrix_pki: MatrixPKI
) -> None:
    before = tls_node.rss_kib()
    header = b"\x04\x00\xff\xff\xff\xff"
    line, answer, name = _associated_attack(
        tls_node, matrix_pki, client_tls, header + b"\x00" * 65536
    )
    assert isinstance(answer, Abort)
    assert f"association with {name} aborted" in line and "4294967295" in line
    assert tls_node.rss_kib() - before < 64 * 1024  # nothing was allocated for the claim


def _thousand_contexts() -> bytes:
    """An A-ASSOCIATE-RQ with 1,000 presentation contexts (IDs 1, 3, ... 255, 1, 3, ...)."""
    base = build_request("RAW", AE, [Proposal(VERIFICATION, (IMPLICIT,))]).encode()
    fixed, items, pos = base[6:74], [], 74
    while pos < len(base):
        kind, length = base[pos], struct.unpack_from(">H", base, pos + 2)[0]
        items.append((kind, base[pos : pos + 4 + length]))
        pos += 4 + length
    contexts = b"".join(
        PresentationContextRQ((2 * i) % 256 + 1, VERIFICATION, (IMPLICIT,)).encode()
        for i in range(1000)
    )
    body = fixed + items[0][1] + contexts + b"".join(i for k, i in items if k == 0x50)
    assert [k for k, _ in items] == [0x10, 0x20, 0x50]
    return b"\x01\x00" + struct.pack(">I", len(body)) + body


def test_association_request_with_1000_presentation_contexts(
    tls_node: LiveNode, client_tls: TLSSettings, matrix_pki: MatrixPKI
) -> None:
    node = tls_node
    before = node.rss_kib()
    request = _thousand_contexts()
    peer = _peer(node, matrix_pki)
    try:
        peer.send(request[:-1])
        assert echo_now(node.port, client_tls) == 0
        assert node.naming(peer.name) == []
        peer.send(request[-1:])
        answer = peer.next_pdu()
        line = node.wait_for(peer.name)
    finally:
        peer.close()
    assert isinstance(answer, Abort), answer
    assert f"association from {peer.name}" in line
    assert "the A-ASSOCIATE-RQ holds more than 256 items" in line
    assert node.rss_kib() - before < 64 * 1024
    assert echo_now(node.port, client_tls) == 0


def _with_items(items: bytes) -> bytes:
    """An A-ASSOCIATE-RQ for Verification with ``items`` after its user information item."""
    base = build_request("RAW", AE, [Proposal(VERIFICATION, (IMPLICIT,))]).encode()
    body = base[6:] + items
    return b"\x01\x00" + struct.pack(">I", len(body)) + body


def _many_syntaxes() -> bytes:
    """128 contexts of 1,600 one-character transfer syntaxes each: 1 MiB, 204,800 items."""
    base = build_request("RAW", AE, [Proposal(VERIFICATION, (IMPLICIT,))])
    contexts = tuple(
        PresentationContextRQ(2 * i + 1, VERIFICATION, ("1",) * 1600) for i in range(128)
    )
    return dataclasses.replace(base, presentation_contexts=contexts).encode()


#: Requests within the 1 MiB bound whose items each cost a Python object to read.
MANY_ITEMS = {
    "transfer-syntaxes": (_many_syntaxes(), "(ID 1) holds more than 128 items"),
    "unrecognized-items": (
        _with_items(b"\x77\x00\x00\x00" * 250_000),
        "the A-ASSOCIATE-RQ holds more than 256 items",
    ),
}


@pytest.mark.parametrize("case", list(MANY_ITEMS))
def test_an_association_request_of_200000_items_is_refused_at_the_bound(
    tls_node: LiveNode, client_tls: TLSSettings, matrix_pki: MatrixPKI, case: str
) -> None:
    request, said = MANY_ITEMS[case]
    assert len(request) > 999_000
    peer = _peer(tls_node, matrix_pki)
    try:
        peer.send(request)
        answer = peer.next_pdu()
        line = tls_node.wait_for(peer.name)
    finally:
        peer.close()
    assert isinstance(answer, Abort), answer
    assert said in line, line
    assert echo_now(tls_node.port, client_tls) == 0


def test_association_requests_of_200000_items_do_not_hold_up_the_node(
    tls_node: LiveNode, client_tls: TLSSettings, matrix_pki: MatrixPKI
) -> None:
    """Eight peers each send such a request; a C-ECHO from another is answered meanwhile in
    well under a second (before: each request was read whole on the event loop, 0.2 s or
    more apiece, and the C-ECHO waited behind them)."""
    request = MANY_ITEMS["transfer-syntaxes"][0]
    peers = [_peer(tls_node, matrix_pki) for _ in range(8)]
    try:
        for peer in peers:
            peer.send(request)
        started = time.perf_counter()
        assert echo_now(tls_node.port, client_tls) == 0
        echoed = time.perf_counter() - started
        for peer in peers:
            assert isinstance(peer.next_pdu(), Abort)
            tls_node.wait_for(peer.name)
    finally:
        for peer in peers:
            peer.close()
    assert echoed < 0.5


def _element(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def _command(*elements: bytes) -> bytes:
    body = b"".join(elements)
    return _element(0, struct.pack("<I", len(body))) + body


def _missing(tag: Tag) -> bytes:
    command = c_echo_rq(1)
    del command[tag]
    return encode_command(command)


SOP = _element(Tag.AffectedSOPClassUID, VERIFICATION.encode() + b"\x00")
NO_DATA = _element(Tag.CommandDataSetType, struct.pack("<H", 0x0101))
ECHO = _element(Tag.CommandField, struct.pack("<H", 0x0030))
ID = _element(Tag.MessageID, struct.pack("<H", 1))
BAD_DIMSE = {
    "C-ECHO-RQ without MessageID": (_missing(Tag.MessageID), "MessageID"),
    "C-ECHO-RQ without AffectedSOPClassUID": (
        _missing(Tag.AffectedSOPClassUID),
        "AffectedSOPClassUID",
    ),
    "no CommandField": (_command(SOP, ID, NO_DATA), "CommandField"),
    "CommandField as text (UI, not US)": (
        _command(SOP, _element(Tag.CommandField, b"C-ECHO"), ID, NO_DATA),
        "VR US needs 2",
    ),
    "MessageID as UL": (
        _command(SOP, ECHO, _element(Tag.MessageID, struct.pack("<I", 1)), NO_DATA),
        "VR US needs 2",
    ),
    "element length past the end": (
        _command(SOP, ECHO, ID, struct.pack("<HHI", 0, 0x0800, 100) + b"\x01\x01"),
        "runs past",
    ),
    "a response sent as a request": (encode_command(c_echo_rsp(1)), "unexpected C_ECHO_RSP"),
}


@pytest.mark.parametrize("case", list(BAD_DIMSE))
def test_malformed_dimse_commands(
    tls_node: LiveNode, client_tls: TLSSettings, matrix_pki: MatrixPKI, case: str
) -> None:
    command, said = BAD_DIMSE[case]
    line, answer, name = _associated_attack(tls_node, matrix_pki, client_tls, _pdata(command))
    assert isinstance(answer, Abort), answer
    assert f"association with {name}" in line and said in line


def test_connection_dropped_in_the_middle_of_a_c_store(
    tls_node: LiveNode, client_tls: TLSSettings, matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    node = tls_node
    assert node.store is not None
    sample = tmp_path / "ct.dcm"
    dataset = _make_file(sample, pixels=300_000)
    header = read_header(sample)
    data = b"".join(bytes(block) for block in iter_blocks(header))
    command = encode_command(c_store_rq(1, CT, dataset.SOPInstanceUID))
    peer = _peer(node, matrix_pki)
    incoming = node.store / ".incoming"
    try:
        peer.send(build_request("RAW", AE, [Proposal(CT, (EXPLICIT,))]).encode())
        ac = peer.next_pdu()
        assert isinstance(ac, AssociateAC), ac
        peer.send(_pdata(command) + _pdata(data[: len(data) // 2], command=False, last=False))
        deadline = time.monotonic() + 20
        while not list(incoming.glob("*.part")):  # the node is writing it
            assert time.monotonic() < deadline, "no partial file appeared"
            time.sleep(0.01)
        assert echo_now(node.port, client_tls) == 0
        assert node.naming(peer.name) == []
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        peer.close()  # a reset, in the middle of the data set
    line = node.wait_for(peer.name)
    assert f"association with {peer.name} aborted" in line and "discarded" in line
    deadline = time.monotonic() + 20  # the partial file goes once its queued writes are done
    while list(incoming.glob("*")):
        assert time.monotonic() < deadline, list(incoming.glob("*"))
        time.sleep(0.01)
    assert not [p for p in (node.store / "objects").rglob("*") if p.is_file()]
    with sqlite3.connect(node.store / "index.sqlite") as db:
        rows = db.execute(
            "SELECT COUNT(*) FROM instances WHERE sop_instance_uid = ?", (dataset.SOPInstanceUID,)
        ).fetchone()
    assert rows == (0,)
    assert echo_now(node.port, client_tls) == 0
