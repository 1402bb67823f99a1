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

import pytest

from dicomtls.dimse.messages import c_echo_rsp
from dicomtls.errors import AssociationError
from dicomtls.sync import associate
from dicomtls.tls.flags import VerifyFlags
from dicomtls.ul.acse import Proposal
from dicomtls.ul.pdu import Abort, AssociateAC

from ..conftest import MatrixPKI
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
