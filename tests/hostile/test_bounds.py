"""Issue 13 findings 2, 3, 6, 9 and the store half of 11: every buffer a peer fills has a bound.

Against a real ``dicomtls serve`` over mutual TLS:
- an identifier (C-FIND, C-GET, C-MOVE) that never ends costs the peer its association
  once it passes 1 MiB, not the node a gigabyte; a C-ECHO announcing a data set is
  refused at its command;
- a C-STORE data set nesting sequences past 32 levels is answered 0xC000, its bytes
  dropped as they come;
- a C-STORE whose data set is another SOP class than the command named gets 0xA900;
- a C-MOVE to a destination where nothing listens ends in a final response with the
  failed count and the failed instances' UIDs, and one log line;
- a maximum PDU length the node cannot honour is rejected at negotiation.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomtls.dimse.command import NO_DATASET, Tag
from dicomtls.dimse.messages import c_echo_rq, c_find_rq, c_get_rq, c_move_rq, c_store_rq
from dicomtls.dimse.status import Status
from dicomtls.net.association import associate, default_proposals
from dicomtls.net.qr_scu import QueryModel
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.acse import Proposal, build_request
from dicomtls.ul.pdu import PDV, AssociateAC, AssociateRJ, PDataTF

from ..conftest import MatrixPKI
from ..node.test_storage import CT, STUDY_UID, _make_file
from .conftest import AE, PATIENT, LiveNode, _running, _timeouts, _tls_args, echo_now, start
from .dimse import EXPLICIT, Conversation, identifier
from .peers import IMPLICIT, VERIFICATION, DicomPeer

STUDY = QueryModel.STUDY_ROOT
MR = "1.2.840.10008.5.1.4.1.1.4"
MIB = 1 << 20


def _peer(node: LiveNode, pki: MatrixPKI) -> DicomPeer:
    client = pki.files["client"]
    return DicomPeer.tls(node.port, client.cert, client.key, pki.ca_file)


def _talk(node: LiveNode, pki: MatrixPKI, proposals: list[Proposal]) -> Conversation:
    peer = _peer(node, pki)
    peer.send(build_request("RAW", AE, proposals).encode())
    ac = peer.next_pdu()
    assert isinstance(ac, AssociateAC), ac
    return Conversation(peer)


def _dataset(path: Path) -> bytes:
    data = path.read_bytes()
    start = data.index(b"DICM") + 4
    group_length = struct.unpack_from("<I", data, start + 8)[0]
    return data[start + 12 + group_length :]


QR = [
    Proposal(VERIFICATION, (IMPLICIT,)),  # 1
    Proposal(STUDY.find_uid, (EXPLICIT,)),  # 3
    Proposal(STUDY.move_uid, (EXPLICIT,)),  # 5
    Proposal(STUDY.get_uid, (EXPLICIT,)),  # 7
    Proposal(CT, (EXPLICIT,), scu_role=True, scp_role=True),  # 9
]
UNENDING = {
    "C-FIND": (3, c_find_rq(1, STUDY.find_uid)),
    "C-MOVE": (5, c_move_rq(1, STUDY.move_uid, "ANYWHERE")),
    "C-GET": (7, c_get_rq(1, STUDY.get_uid)),
}


@pytest.mark.parametrize("request_kind", list(UNENDING))
def test_an_identifier_that_never_ends_is_cut_off_at_one_mebibyte(
    tls_node: LiveNode, matrix_pki: MatrixPKI, client_tls: TLSSettings, request_kind: str
) -> None:
    node = tls_node
    context, command = UNENDING[request_kind]
    talk = _talk(node, matrix_pki, QR)
    before = node.rss_kib()
    talk.send(context, command)  # the command only; now the identifier, never its last fragment
    chunk = PDataTF((PDV(context, 0x00, b"\x10\x00\x10\x00PN\x00\x00" * 8192),)).encode()
    sent = 0
    with pytest.raises(OSError):  # the node aborts and closes: our next writes fail
        while sent < 64 * MIB:  # if nothing stopped us
            talk.peer.send(chunk)
            sent += len(chunk)
    assert sent < 16 * MIB  # it stopped reading soon after the bound
    line = node.wait_for(talk.peer.name)
    talk.peer.close()
    assert f"{request_kind.replace('-', '_')}_RQ data set larger than {MIB} bytes" in line
    assert node.rss_kib() - before < 32 * 1024
    assert echo_now(node.port, client_tls) == 0


def _dense_identifier() -> bytes:
    """A study-level identifier of 1 MiB, 131,070 empty LO elements after its level: within
    the size bound, and some two seconds of pydicom's time on the event loop to read."""
    level = struct.pack("<HH2sH", 0x0008, 0x0052, b"CS", 6) + b"STUDY "
    tags = itertools.product(range(0x0011, 0x0100, 2), range(0x1000, 0x10000))
    empty = (struct.pack("<HH2sH", group, element, b"LO", 0) for group, element in tags)
    return level + b"".join(itertools.islice(empty, (MIB - len(level)) // 8))


DENSE = _dense_identifier()


#: Where each request goes: a C-MOVE to a destination the node knows (dead_end_node's),
#: else it is refused for its destination before its identifier is read.
DENSE_REQUESTS = {
    "C-FIND": ("tls_node", 3, c_find_rq(1, STUDY.find_uid)),
    "C-MOVE": ("dead_end_node", 5, c_move_rq(1, STUDY.move_uid, "NOWHERE")),
    "C-GET": ("tls_node", 7, c_get_rq(1, STUDY.get_uid)),
}


@pytest.mark.parametrize("request_kind", list(DENSE_REQUESTS))
def test_an_identifier_of_a_hundred_thousand_elements_is_refused_before_it_is_read(
    request: pytest.FixtureRequest,
    matrix_pki: MatrixPKI,
    client_tls: TLSSettings,
    request_kind: str,
) -> None:
    """Real identifiers hold a few dozen keys; past 1,024 elements nothing reads the rest."""
    fixture, context, command = DENSE_REQUESTS[request_kind]
    node: LiveNode = request.getfixturevalue(fixture)
    talk = _talk(node, matrix_pki, QR)
    talk.send(context, command, DENSE)
    answers = talk.until_final()
    line = node.wait_for(talk.peer.name)
    talk.peer.close()
    assert [a.status for a in answers] == [Status.DATASET_DOES_NOT_MATCH_SOP_CLASS]
    assert "more than 1,024 elements" in line
    assert echo_now(node.port, client_tls) == 0


def test_dense_identifiers_do_not_hold_up_the_node(
    tls_node: LiveNode, matrix_pki: MatrixPKI, client_tls: TLSSettings
) -> None:
    """Three peers each send one such C-FIND; a C-ECHO from another is answered meanwhile in
    well under a second (before: pydicom read each on the event loop, some two seconds
    apiece, and every association on the node waited)."""
    talks = [_talk(tls_node, matrix_pki, QR) for _ in range(3)]
    for talk in talks:
        talk.send(3, c_find_rq(1, STUDY.find_uid), DENSE)
    started = time.perf_counter()
    assert echo_now(tls_node.port, client_tls) == 0
    echoed = time.perf_counter() - started
    for talk in talks:
        assert [a.status for a in talk.until_final()] == [Status.DATASET_DOES_NOT_MATCH_SOP_CLASS]
        tls_node.wait_for(talk.peer.name)
        talk.peer.close()
    assert echoed < 1.0


def test_a_c_echo_announcing_a_data_set_is_refused_at_its_command(
    tls_node: LiveNode, matrix_pki: MatrixPKI
) -> None:
    talk = _talk(tls_node, matrix_pki, QR)
    command = c_echo_rq(1)
    command[Tag.CommandDataSetType] = 0x0000  # "a data set follows"
    assert command[Tag.CommandDataSetType] != NO_DATASET
    talk.send(1, command)  # and none is sent: the node must not wait to collect one
    assert talk.next_message() is None and talk.aborted is not None
    line = tls_node.wait_for(talk.peer.name)
    talk.peer.close()
    assert "C-ECHO announces a data set, which it cannot carry" in line


def _nested(levels: int) -> bytes:
    """``levels`` sequences of undefined length, each in the item of the one before, closed."""
    sequence = struct.pack("<HH2s2xI", 0x0040, 0x0275, b"SQ", 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    sequence_end = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return (sequence + item) * levels + (item_end + sequence_end) * levels


def test_nesting_past_32_levels_is_refused_and_costs_no_memory(
    tls_node: LiveNode, matrix_pki: MatrixPKI, tmp_path: Path, client_tls: TLSSettings
) -> None:
    node = tls_node
    sample = tmp_path / "nested.dcm"
    ds = _make_file(sample, pixels=1000)
    body = _dataset(sample)
    # 400,000 levels (9 MiB of headers) after the object's own elements
    hostile = body[: body.index(b"\xe0\x7f\x10\x00")] + _nested(400_000)
    talk = _talk(node, matrix_pki, [Proposal(CT, (EXPLICIT,))])
    before = node.rss_kib()
    talk.send(1, c_store_rq(1, CT, ds.SOPInstanceUID), hostile)
    assert [a.status for a in talk.until_final()] == [Status.CANNOT_UNDERSTAND]
    line = node.wait_for(talk.peer.name)
    talk.peer.close()
    assert "nested more than 32 levels deep" in line and ds.SOPInstanceUID in line
    assert node.rss_kib() - before < 32 * 1024
    assert node.store is not None
    assert list(node.store.joinpath("objects").rglob(f"{ds.SOPInstanceUID}.dcm")) == []
    assert echo_now(node.port, client_tls) == 0


def _empty_pdvs(context_id: int, size: int) -> bytes:
    """A P-DATA-TF of ``size`` bytes of empty data set fragments (6 bytes each, none last):
    within the node's Maximum Length of 4 MiB, some 700,000 of them."""
    pdv = struct.pack(">IBB", 2, context_id, 0x00)
    count = (size - 6) // len(pdv)
    return struct.pack(">BBI", 0x04, 0, count * len(pdv)) + pdv * count


def test_a_pdu_of_700000_empty_fragments_is_refused_and_holds_up_no_one(
    tls_node: LiveNode, matrix_pki: MatrixPKI, tmp_path: Path, client_tls: TLSSettings
) -> None:
    """A C-STORE's data set arrives as P-DATA-TFs of 4 MiB, each some 700,000 empty PDVs.
    Decoding one took seconds on the event loop (a PDV object and a fragment each), during
    which no other association moved; past 1,024 PDVs in one P-DATA-TF the node aborts."""
    node = tls_node
    sample = tmp_path / "ct.dcm"
    ds = _make_file(sample, pixels=1000)
    talk = _talk(node, matrix_pki, [Proposal(CT, (EXPLICIT,))])
    talk.send(1, c_store_rq(1, CT, ds.SOPInstanceUID))  # its data set follows, in fragments
    hostile = _empty_pdvs(1, 4 << 20)
    with contextlib.suppress(OSError):  # the node aborts at the first: later sends may fail
        for _ in range(3):
            talk.peer.send(hostile)
    started = time.perf_counter()
    assert echo_now(node.port, client_tls) == 0
    echoed = time.perf_counter() - started
    line = node.wait_for(talk.peer.name)
    assert talk.next_message() is None and talk.aborted is not None
    talk.peer.close()
    assert echoed < 1.0, (echoed, line)
    assert "P-DATA-TF of more than 1,024 PDV items" in line
    assert node.store is not None
    assert list(node.store.joinpath("objects").rglob(f"{ds.SOPInstanceUID}.dcm")) == []


def test_a_data_set_of_another_sop_class_than_the_command_named(
    tls_node: LiveNode, matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    node = tls_node
    sample = tmp_path / "mr.dcm"
    ds = _make_file(sample, pixels=1000)
    ds.SOPClassUID = MR
    ds.save_as(sample, enforce_file_format=True)
    talk = _talk(node, matrix_pki, [Proposal(CT, (EXPLICIT,))])
    talk.send(1, c_store_rq(1, CT, ds.SOPInstanceUID), _dataset(sample))
    (answer,) = talk.until_final()
    assert answer.status == Status.DATASET_DOES_NOT_MATCH_SOP_CLASS
    # the sender is told why, in words about its own data (Error Comment, an LO)
    assert answer.command[Tag.ErrorComment] == "the data set's SOP class UID is not the command's"
    line = node.wait_for(talk.peer.name)
    talk.peer.close()
    assert f"the data set holds SOP class '{MR}', the command named '{CT}'" in line
    assert node.store is not None
    assert list(node.store.joinpath("objects").rglob(f"{ds.SOPInstanceUID}.dcm")) == []


@pytest.mark.parametrize("max_length", [1, 6, 1023])
def test_a_maximum_pdu_length_the_node_cannot_honour_is_rejected(
    tls_node: LiveNode, matrix_pki: MatrixPKI, max_length: int
) -> None:
    peer = _peer(tls_node, matrix_pki)
    request = build_request(
        "RAW", AE, [Proposal(VERIFICATION, (IMPLICIT,))], max_pdu_length=max_length
    )
    peer.send(request.encode())
    answer = peer.next_pdu()
    line = tls_node.wait_for(peer.name)
    peer.close()
    assert isinstance(answer, AssociateRJ), answer
    assert f"maximum PDU length {max_length} is too small to serve (at least 1024" in line


@pytest.mark.parametrize("max_length", [0, 1024])
def test_the_smallest_maximum_pdu_length_and_no_limit_are_served(
    tls_node: LiveNode, matrix_pki: MatrixPKI, max_length: int
) -> None:
    peer = _peer(tls_node, matrix_pki)
    request = build_request(
        "RAW", AE, [Proposal(VERIFICATION, (IMPLICIT,))], max_pdu_length=max_length
    )
    peer.send(request.encode())
    assert isinstance(peer.next_pdu(), AssociateAC)
    talk = Conversation(peer)
    talk.send(1, c_echo_rq(1))
    answers = talk.until_final()
    peer.close()
    assert [a.status for a in answers] == [Status.SUCCESS]
    assert tls_node.naming(peer.name) == []


# -- C-MOVE to a destination where nothing listens ------------------------------------------


@pytest.fixture(scope="module")
def dead_end_node(
    matrix_pki: MatrixPKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveNode]:
    tmp = tmp_path_factory.mktemp("dead-end")
    with socket.socket() as probe:  # a port that was free a moment ago, now closed
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    yield from _running(
        start(
            tmp,
            *_tls_args(matrix_pki),
            *_timeouts(PATIENT, PATIENT, PATIENT),
            "--move-destination",
            f"NOWHERE=127.0.0.1:{closed_port}",
        )
    )


def test_c_move_to_a_destination_where_nothing_listens(
    dead_end_node: LiveNode, matrix_pki: MatrixPKI, client_tls: TLSSettings, tmp_path: Path
) -> None:
    node = dead_end_node
    samples = [tmp_path / f"ct{i}.dcm" for i in range(3)]
    uids = [_make_file(path, pixels=1000).SOPInstanceUID for path in samples]

    async def store() -> list[int]:
        async with await associate(
            "127.0.0.1", node.port, client_tls, called_ae=AE, proposals=default_proposals([CT])
        ) as assoc:
            return [await assoc.store(path) for path in samples]

    assert asyncio.run(store()) == [Status.SUCCESS] * 3
    talk = _talk(node, matrix_pki, QR)
    study = identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=STUDY_UID)
    talk.send(5, c_move_rq(1, STUDY.move_uid, "NOWHERE"), study)
    answers = talk.until_final()
    final = answers[-1]
    assert [a.status for a in answers] == [Status.OUT_OF_RESOURCES_SUBOPERATIONS]
    assert final.command[Tag.NumberOfFailedSuboperations] == 3
    assert final.command[Tag.NumberOfCompletedSuboperations] == 0
    assert sorted(final.decoded().FailedSOPInstanceUIDList) == sorted(uids)
    line = node.wait_for(talk.peer.name)
    talk.peer.close()
    assert "C-MOVE from" in line and "to 'NOWHERE': 3 of 3 object(s) not sent" in line
    assert "cannot associate" in line and "Traceback" not in node.output()
    assert echo_now(node.port, client_tls) == 0
