"""A hostile SCP that answers our C-FIND with more matches than any list should hold.

Each identifier is bounded (1 MiB, Association.max_dataset_in_memory); their number was
not, and every collector of matches (Peer.find, sync find, ``dicomtls find``, the C-GET's
SOP-classes probe) keeps them all: ten million 30-byte matches are some 14 GB of data sets.
The matches of one C-FIND are bounded in memory (Association.max_find_memory): past it we
C-CANCEL and drop what the SCP had in flight; an SCP that goes on past the DIMSE timeout is
aborted.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

import pytest
from pydicom.dataset import Dataset

from dicomtls.dimse.command import (
    CommandField,
    CommandSet,
    Tag,
    command_field,
    decode_command,
    number,
)
from dicomtls.dimse.messages import c_find_rsp
from dicomtls.dimse.status import Status
from dicomtls.errors import AssociationError
from dicomtls.net.qr_scu import MATCH_OVERHEAD, QueryModel
from dicomtls.sync import associate
from dicomtls.tls.flags import VerifyFlags
from dicomtls.ul.acse import Proposal
from dicomtls.ul.pdu import Abort, PDataTF

from ..conftest import MatrixPKI
from .dimse import EXPLICIT, identifier, message_pdus
from .scp import HostileSCP, SCPLink

FIND = QueryModel.STUDY_ROOT.find_uid
MATCH = identifier(StudyInstanceUID="1.2.3.4", QueryRetrieveLevel="STUDY")
#: What we let the test's C-FIND keep: 100 matches.
KEPT = 100
FLOOD = 3000


def flooding(honour_cancel: bool) -> Callable[[SCPLink], None]:
    """A script: answer a C-FIND with FLOOD matches (without reading), then, if
    ``honour_cancel``, end it on our C-CANCEL with Cancel; else keep matching until we go."""

    def script(link: SCPLink) -> None:
        find = link.next_command()
        assert find is not None
        context = find.pdvs[0].context_id
        link.next_pdu()  # its identifier
        match = message_pdus(context, c_find_rsp(1, FIND, Status.PENDING, True), MATCH)
        for _ in range(FLOOD):
            link.send(match)
        if honour_cancel:
            link.next_command()
            link.send(message_pdus(context, c_find_rsp(1, FIND, Status.CANCEL, False)))
            link.release()
            return
        while link.send(match) and len(link.received) < 10:  # until we abort and close
            pass
        link.until_closed()

    return script


def _find(pki: MatrixPKI, scp: HostileSCP, dimse_timeout: float = 60.0) -> list[Dataset]:
    tls = pki.settings("client", VerifyFlags.PEER)
    proposals = [Proposal(FIND, (EXPLICIT,))]
    query = Dataset()
    query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", ""
    with associate(
        "127.0.0.1", scp.start().port, tls, called_ae="HOSTILE", proposals=proposals
    ) as assoc:
        assoc.max_find_memory = KEPT * (len(MATCH) + MATCH_OVERHEAD)
        assoc.dimse_timeout = dimse_timeout
        return assoc.find(query)


def _command_sets(pdus: list[object]) -> list[CommandSet]:
    return [
        decode_command(bytes(pdu.pdvs[-1].data))
        for pdu in pdus
        if isinstance(pdu, PDataTF) and pdu.pdvs[-1].is_command
    ]


def _commands(pdus: list[object]) -> list[CommandField]:
    return [command_field(command) for command in _command_sets(pdus)]


def test_past_the_bound_we_cancel_and_say_so(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    scp = HostileSCP(scp_context, flooding(honour_cancel=True))
    with caplog.at_level(logging.WARNING, "dicomtls"), pytest.raises(AssociationError) as raised:
        _find(matrix_pki, scp)
    assert "127.0.0.1" in str(raised.value) and "max_find_memory" in str(raised.value)
    seen = scp.join()
    assert _commands(seen.received) == [CommandField.C_FIND_RQ, CommandField.C_CANCEL_RQ]
    cancel = _command_sets(seen.received)[-1]
    assert number(cancel, Tag.MessageIDBeingRespondedTo) == 1
    said = [r.getMessage() for r in caplog.records]
    assert any("sending C-CANCEL" in line for line in said)
    # The SCP's FLOOD - KEPT matches in flight are dropped, not held against it: it ended the
    # C-FIND as asked, so it is not aborted for them.
    assert not any("aborting" in line for line in said), said


def test_an_scp_that_ignores_our_cancel_is_aborted(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    scp = HostileSCP(scp_context, flooding(honour_cancel=False))
    with caplog.at_level(logging.WARNING, "dicomtls"), pytest.raises(AssociationError):
        _find(matrix_pki, scp, dimse_timeout=1.0)
    assert any("still pending 1 s after our C-CANCEL" in r.getMessage() for r in caplog.records)
    seen = scp.join()
    assert _commands(seen.received) == [CommandField.C_FIND_RQ, CommandField.C_CANCEL_RQ]
    assert isinstance(seen.received[-1], Abort)


def test_matches_within_the_bound_are_all_kept(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext
) -> None:
    """The control: KEPT matches, then Success."""

    def honest(link: SCPLink) -> None:
        find = link.next_command()
        assert find is not None
        link.next_pdu()
        context = find.pdvs[0].context_id
        for _ in range(KEPT):
            link.send(message_pdus(context, c_find_rsp(1, FIND, Status.PENDING, True), MATCH))
        link.send(message_pdus(context, c_find_rsp(1, FIND, Status.SUCCESS, False)))
        link.release()

    matches = _find(matrix_pki, HostileSCP(scp_context, honest))
    assert [m.StudyInstanceUID for m in matches] == ["1.2.3.4"] * KEPT
