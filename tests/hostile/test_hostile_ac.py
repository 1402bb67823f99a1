"""An A-ASSOCIATE-AC that lies: limits and syntaxes a hostile SCP answers with.

Each SCP (tests/hostile/scp.py) accepts our association with an AC doctored one way; we
either refuse it with an A-ABORT and one error that names the SCP and what it said, or,
for the controls, echo over it.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicomtls.dimse.command import CommandSet, Tag, decode_command, number
from dicomtls.dimse.messages import c_echo_rsp, c_store_rsp
from dicomtls.errors import AssociationError
from dicomtls.sync import associate
from dicomtls.tls.flags import VerifyFlags
from dicomtls.ul.acse import Proposal
from dicomtls.ul.items import AsyncOpsWindow
from dicomtls.ul.pdu import Abort, AssociateAC, PDataTF, ReleaseRQ

from ..conftest import MatrixPKI
from ..node.test_storage import CT, _make_file
from .dimse import message_pdus
from .peers import IMPLICIT, VERIFICATION
from .scp import HostileSCP, SCPLink

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def echoing(link: SCPLink) -> None:
    """A script: answer C-ECHOs until we release or abort."""
    while (echo := link.next_command()) is not None:
        link.send(message_pdus(echo.pdvs[0].context_id, c_echo_rsp(1)))
    link.answer_release()


def _max_length(value: int) -> Callable[[AssociateAC], AssociateAC]:
    def lie(ac: AssociateAC) -> AssociateAC:
        user = dataclasses.replace(ac.user_information, max_length=value)
        return dataclasses.replace(ac, user_information=user)

    return lie


def _in_syntax(syntax: str) -> Callable[[AssociateAC], AssociateAC]:
    def lie(ac: AssociateAC) -> AssociateAC:
        contexts = tuple(
            dataclasses.replace(c, transfer_syntax=syntax) for c in ac.presentation_contexts
        )
        return dataclasses.replace(ac, presentation_contexts=contexts)

    return lie


def _echo(pki: MatrixPKI, scp: HostileSCP) -> int:
    scp.start()
    tls = pki.settings("client", VerifyFlags.PEER)
    proposals = [Proposal(VERIFICATION, (IMPLICIT,))]
    with associate("127.0.0.1", scp.port, tls, called_ae="HOSTILE", proposals=proposals) as assoc:
        return assoc.echo()


@pytest.mark.parametrize("length", [1, 6, 7, 1023])
def test_a_maximum_pdu_length_we_cannot_honour_is_refused(
    matrix_pki: MatrixPKI,
    scp_context: ssl.SSLContext,
    length: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Below 1024 (not 0, no limit) every PDV would carry a few bytes: a 100 MB object a
    hundred thousand PDUs or more, or none at all below 7. We ask no more of an SCP than
    our SCP asks of a requestor (MIN_PEER_PDU_LENGTH)."""
    scp = HostileSCP(scp_context, echoing, lie=_max_length(length))
    with caplog.at_level(logging.WARNING, "dicomtls"), pytest.raises(AssociationError) as raised:
        _echo(matrix_pki, scp)
    assert f"maximum PDU length {length}" in str(raised.value)
    assert "127.0.0.1" in str(raised.value)
    seen = scp.join()
    assert [type(pdu) for pdu in seen.received[1:]] == [Abort]  # not one P-DATA
    assert [r.levelname for r in caplog.records if "maximum PDU length" in r.message] == ["WARNING"]


@pytest.mark.parametrize("length", [0, 1024])
def test_no_limit_and_the_smallest_honoured_length_are_used(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, length: int
) -> None:
    scp = HostileSCP(scp_context, echoing, lie=_max_length(length))
    assert _echo(matrix_pki, scp) == 0
    scp.join()


def test_a_transfer_syntax_we_did_not_propose_is_refused(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext
) -> None:
    """PS3.8 9.3.3.2: the acceptor picks one of the syntaxes proposed for the context. A
    context it answers in another would have us encode and decode in a syntax nobody chose."""
    scp = HostileSCP(scp_context, echoing, lie=_in_syntax(JPEG_BASELINE))
    with pytest.raises(AssociationError, match=JPEG_BASELINE):
        _echo(matrix_pki, scp)
    seen = scp.join()
    assert [type(pdu) for pdu in seen.received[1:]] == [Abort]


def _window(invoked: int) -> Callable[[AssociateAC], AssociateAC]:
    def lie(ac: AssociateAC) -> AssociateAC:
        window = AsyncOpsWindow(invoked, 1)
        user = dataclasses.replace(ac.user_information, async_ops_window=window)
        return dataclasses.replace(ac, user_information=user)

    return lie


@dataclass
class _Outstanding:
    """A script: answers C-STOREs only once ``held`` are unanswered (or all ``total`` came),
    keeping the most it ever saw unanswered."""

    held: int
    total: int
    most: int = 0

    def __call__(self, link: SCPLink) -> None:
        unanswered: list[tuple[int, CommandSet]] = []
        received = 0
        while received < self.total and isinstance(pdu := link.next_pdu(), PDataTF):
            for pdv in pdu.pdvs:  # a command may share its PDU with the data set's start
                if pdv.is_command and pdv.is_last:
                    received += 1
                    unanswered.append((pdv.context_id, decode_command(bytes(pdv.data))))
            self.most = max(self.most, len(unanswered))
            while unanswered and (len(unanswered) >= self.held or received == self.total):
                context_id, rq = unanswered.pop(0)
                rsp = c_store_rsp(
                    number(rq, Tag.MessageID),
                    str(rq[Tag.AffectedSOPClassUID]),
                    str(rq[Tag.AffectedSOPInstanceUID]),
                    0,
                )
                link.send(message_pdus(context_id, rsp))
        while not isinstance(link.next_pdu(), ReleaseRQ | None):
            pass  # the last data set
        link.answer_release()


@pytest.mark.parametrize("invoked", [0, 4, 65535])
def test_a_window_larger_than_we_proposed_is_not_used(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, tmp_path: Path, invoked: int
) -> None:
    """PS3.7 D.3.3.3: the acceptor may lower the requestor's window, not raise it. An SCP
    answering "unlimited" (0) or 65535 to our 4 would have us send every object unanswered."""
    files = [tmp_path / f"{n}.dcm" for n in range(12)]
    for path in files:
        _make_file(path, pixels=64)
    script = _Outstanding(held=4, total=len(files))
    scp = HostileSCP(scp_context, script, lie=_window(invoked)).start()
    tls = matrix_pki.settings("client", VerifyFlags.PEER)
    proposals = [Proposal(CT, (IMPLICIT,))]
    with associate(
        "127.0.0.1", scp.port, tls, called_ae="HOSTILE", proposals=proposals, max_operations=4
    ) as assoc:
        assert assoc.negotiated.max_operations == 4
        assert [status for _, status in assoc.store_many(files)] == [0] * len(files)
    scp.join()
    assert script.most == 4
