"""The node's C-MOVE as an SCU, to a configured destination that is hostile, or merely odd.

A real ``dicomtls serve`` sends a study to a destination that is a hand-made SCP
(tests/hostile/scp.py) answering each C-STORE as the test says. Whatever it answers, the
C-MOVE requestor gets the counts and status PS3.4 C.4.2 defines: a C-STORE answered with a
warning (B000 coercion, B007, B006: the destination kept the object) is a warning
sub-operation, not a failure; the C-MOVE ends in B000 "sub-operations complete, one or more
failures or warnings", and only failed objects are in the Failed SOP Instance UID List.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from dicomtls.dimse.command import Tag, decode_command, number
from dicomtls.dimse.messages import c_move_rq, c_store_rsp
from dicomtls.dimse.status import Status
from dicomtls.net.association import associate, default_proposals
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.pdu import Abort, PDataTF, ReleaseRP, ReleaseRQ

from ..conftest import MatrixPKI
from ..node.test_storage import CT, STUDY_UID, _make_file
from .conftest import PATIENT, LiveNode, _running, _timeouts, _tls_args, echo_now, start
from .dimse import Conversation, identifier, message_pdus
from .peers import READ_TIMEOUT
from .scp import HostileSCP, SCPLink
from .test_bounds import QR, STUDY, _talk

#: The called AE title the hostile SCP answers to (tests/hostile/scp.py).
DEST = "HOSTILE"


def answering(
    statuses: list[int],
    answered: dict[str, int],
    then: Callable[[SCPLink], None] = SCPLink.release,
) -> Callable[[SCPLink], None]:
    """A destination script: read each C-STORE whole and answer it with the next of
    ``statuses`` (kept in ``answered`` by SOP Instance UID); ``then`` ends the association
    (answering the release, by default)."""

    def script(link: SCPLink) -> None:
        for status in statuses:
            command = link.next_command()
            assert command is not None
            pdv = command.pdvs[-1]
            rq = decode_command(bytes(pdv.data))
            while not _dataset_ended(link.next_pdu()):
                pass
            rsp = c_store_rsp(
                number(rq, Tag.MessageID),
                str(rq[Tag.AffectedSOPClassUID]),
                str(rq[Tag.AffectedSOPInstanceUID]),
                status,
            )
            answered[str(rq[Tag.AffectedSOPInstanceUID])] = status
            link.send(message_pdus(pdv.context_id, rsp))
        then(link)

    return script


def _released(talk: Conversation) -> None:
    """The requestor's A-RELEASE, answered."""
    talk.peer.send(ReleaseRQ().encode())
    assert isinstance(talk.peer.next_pdu(), ReleaseRP)
    talk.peer.close()


def _dataset_ended(pdu: object) -> bool:
    assert isinstance(pdu, PDataTF), pdu
    return pdu.pdvs[-1].is_last and not pdu.pdvs[-1].is_command


def _node_moving_to(
    scp: HostileSCP, pki: MatrixPKI, tmp: Path, client_tls: TLSSettings
) -> tuple[LiveNode, list[str]]:
    """A node whose destination ``DEST`` is ``scp``, holding three CT objects of one study
    (their SOP Instance UIDs)."""
    scp.start()
    node = start(
        tmp,
        *_tls_args(pki),
        *_timeouts(PATIENT, PATIENT, PATIENT),
        "--move-destination",
        f"{DEST}=127.0.0.1:{scp.port}",
    )
    samples = [tmp / f"ct{i}.dcm" for i in range(3)]
    uids = [str(_make_file(path, pixels=1000).SOPInstanceUID) for path in samples]

    async def store() -> list[int]:
        async with await associate(
            "127.0.0.1",
            node.port,
            client_tls,
            called_ae="HOSTILE",
            proposals=default_proposals([CT]),
        ) as assoc:
            return [await assoc.store(path) for path in samples]

    assert asyncio.run(store()) == [Status.SUCCESS] * 3
    return node, uids


@pytest.mark.parametrize(
    ("statuses", "final", "completed", "failed", "warning"),
    [
        pytest.param(
            [Status.SUCCESS, Status.COERCION_OF_DATA_ELEMENTS, Status.ELEMENTS_DISCARDED],
            Status.COERCION_OF_DATA_ELEMENTS,
            1,
            0,
            2,
            id="success-and-warnings",
        ),
        pytest.param(
            [Status.DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING] * 3,
            Status.COERCION_OF_DATA_ELEMENTS,
            0,
            0,
            3,
            id="every-one-a-warning",
        ),
        pytest.param(
            [Status.COERCION_OF_DATA_ELEMENTS, Status.OUT_OF_RESOURCES, Status.PENDING],
            Status.COERCION_OF_DATA_ELEMENTS,
            0,
            2,
            1,
            id="a-warning-a-failure-and-a-pending",
        ),
    ],
)
def test_c_store_warnings_from_the_destination_are_warning_sub_operations(
    matrix_pki: MatrixPKI,
    scp_context: ssl.SSLContext,
    client_tls: TLSSettings,
    tmp_path: Path,
    statuses: list[int],
    final: int,
    completed: int,
    failed: int,
    warning: int,
) -> None:
    answered: dict[str, int] = {}
    scp = HostileSCP(scp_context, answering(statuses, answered))
    node, uids = _node_moving_to(scp, matrix_pki, tmp_path, client_tls)
    with contextlib.contextmanager(_running)(node):  # one line at most, no traceback
        talk = _talk(node, matrix_pki, QR)
        study = identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=STUDY_UID)
        talk.send(5, c_move_rq(1, STUDY.move_uid, DEST), study)
        answers = talk.until_final()
        _released(talk)
        scp.join()
        if failed:
            node.wait_for(talk.peer.name)  # the one line saying what was not sent
        assert echo_now(node.port, client_tls) == 0
    last = answers[-1]
    assert last.status == final
    assert number(last.command, Tag.NumberOfCompletedSuboperations) == completed
    assert number(last.command, Tag.NumberOfFailedSuboperations) == failed
    assert number(last.command, Tag.NumberOfWarningSuboperations) == warning
    assert sorted(answered) == sorted(uids)
    failed_uids = [
        uid for uid, status in answered.items() if status not in (0, 0xB000, 0xB006, 0xB007)
    ]
    if failed:
        assert sorted(last.decoded().FailedSOPInstanceUIDList) == sorted(failed_uids)
    else:
        assert last.dataset == b""  # nothing failed: no Failed SOP Instance UID List
    remaining = [number(a.command, Tag.NumberOfRemainingSuboperations) for a in answers[:-1]]
    assert remaining == [2, 1]


def test_a_destination_that_never_answers_the_release_does_not_hold_back_the_final_response(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, client_tls: TLSSettings, tmp_path: Path
) -> None:
    """Every object is answered Success, then the destination reads our A-RELEASE-RQ and
    never answers it. The C-MOVE's counts are final once the last C-STORE is answered: the
    requestor has them while the release is still unanswered (it used to wait for the
    release, up to the DIMSE timeout of 120 s, longer than many requestors wait: pynetdicom's
    is 30 s, so a C-MOVE that sent everything was reported lost)."""
    requestor_answered = threading.Event()
    answered_while_held: list[bool] = []

    def hold_the_release(link: SCPLink) -> None:
        assert isinstance(link.next_pdu(), ReleaseRQ)
        answered_while_held.append(requestor_answered.wait(READ_TIMEOUT / 2))

    scp = HostileSCP(scp_context, answering([Status.SUCCESS] * 3, {}, hold_the_release))
    node, _ = _node_moving_to(scp, matrix_pki, tmp_path, client_tls)
    with contextlib.contextmanager(_running)(node):
        talk = _talk(node, matrix_pki, QR)
        study = identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=STUDY_UID)
        talk.send(5, c_move_rq(1, STUDY.move_uid, DEST), study)
        final = talk.until_final()[-1]
        requestor_answered.set()
        _released(talk)
        scp.join()
        assert echo_now(node.port, client_tls) == 0
    assert final.status == Status.SUCCESS
    assert number(final.command, Tag.NumberOfCompletedSuboperations) == 3
    assert answered_while_held == [True]


def test_a_destination_answering_a_message_we_never_sent_is_aborted_and_every_object_counted(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, client_tls: TLSSettings, tmp_path: Path
) -> None:
    """The destination answers our first C-STORE with a C-STORE-RSP to message 99: the node
    aborts the sub-association (one line naming the destination); that object and the two
    never sent are failed sub-operations in the final response, with their UIDs. (Before,
    leaving the sub-association tried to release it after our A-ABORT: LocalProtocolError
    and a traceback, and the requestor got 0110H with no counts.)"""

    def out_of_order(link: SCPLink) -> None:
        command = link.next_command()
        assert command is not None
        while not _dataset_ended(link.next_pdu()):
            pass
        stray = c_store_rsp(99, CT, "1.2.3", Status.SUCCESS)
        link.send(message_pdus(command.pdvs[-1].context_id, stray))
        link.until_closed()

    scp = HostileSCP(scp_context, out_of_order)
    node, uids = _node_moving_to(scp, matrix_pki, tmp_path, client_tls)
    with contextlib.contextmanager(_running)(node):
        talk = _talk(node, matrix_pki, QR)
        study = identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=STUDY_UID)
        talk.send(5, c_move_rq(1, STUDY.move_uid, DEST), study)
        answers = talk.until_final()
        _released(talk)
        assert isinstance(scp.join().received[-1], Abort)
        # The abort's line names the destination, and so does the C-MOVE's, quoting why.
        destination, moved = node.wait_for_lines(f"127.0.0.1:{scp.port}", 2)
        assert node.wait_for(talk.peer.name) == moved
        assert echo_now(node.port, client_tls) == 0
    final = answers[-1]
    assert final.status == Status.OUT_OF_RESOURCES_SUBOPERATIONS
    assert number(final.command, Tag.NumberOfFailedSuboperations) == 3
    assert number(final.command, Tag.NumberOfCompletedSuboperations) == 0
    assert sorted(final.decoded().FailedSOPInstanceUIDList) == sorted(uids)
    assert "expected C_STORE_RSP for message 1; aborting" in destination
    assert "3 of 3 object(s) not sent" in moved
