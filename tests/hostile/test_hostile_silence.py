"""A hostile SCP that goes silent: after our A-ASSOCIATE-RQ, during our C-GET, after our
A-RELEASE-RQ. TLS itself is bounded (its handshake timeout); each of these waits is bounded
by the DIMSE timeout, as our other waits for an answer are, and ends in an A-ABORT the SCP
receives, not in a client that waits forever.

The DIMSE timeout is 1 s here; the SCP (tests/hostile/scp.py) holds the connection open,
reading, until we close it (or for READ_TIMEOUT, 20 s, which no test should reach).
"""

from __future__ import annotations

import logging
import ssl
import time
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dicomtls.dimse.messages import c_echo_rsp
from dicomtls.errors import AssociationError
from dicomtls.net.qr_scu import QueryModel
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.sync import Association, associate
from dicomtls.tls.flags import VerifyFlags
from dicomtls.ul.acse import Proposal
from dicomtls.ul.pdu import Abort, PDataTF, ReleaseRQ

from ..conftest import MatrixPKI
from .dimse import EXPLICIT, message_pdus
from .peers import IMPLICIT, VERIFICATION
from .scp import HostileSCP, SCPLink

GET = QueryModel.STUDY_ROOT.get_uid
TIMEOUT = 1.0
#: Well under the SCP's own READ_TIMEOUT: we ended it, not the SCP.
PROMPTLY = 10.0


def silent(link: SCPLink) -> None:
    """A script: never say a word; read until we close."""
    link.until_closed()


def echo_then_silent(link: SCPLink) -> None:
    """A script: answer one C-ECHO, then say nothing more (not even to A-RELEASE-RQ)."""
    echo = link.next_command()
    assert echo is not None
    link.send(message_pdus(echo.pdvs[0].context_id, c_echo_rsp(1)))
    link.until_closed()


def _open(pki: MatrixPKI, scp: HostileSCP, proposals: list[Proposal]) -> Association:
    tls = pki.settings("client", VerifyFlags.PEER)
    return associate(
        "127.0.0.1",
        scp.start().port,
        tls,
        called_ae="HOSTILE",
        proposals=proposals,
        dimse_timeout=TIMEOUT,
    )


def test_no_answer_to_our_a_associate_rq(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext
) -> None:
    scp = HostileSCP(scp_context, silent, lie=lambda ac: None)
    started = time.monotonic()
    with pytest.raises(AssociationError) as raised:
        _open(matrix_pki, scp, [Proposal(VERIFICATION, (IMPLICIT,))])
    assert time.monotonic() - started < PROMPTLY
    assert "127.0.0.1" in str(raised.value) and f"{TIMEOUT:g} s" in str(raised.value)
    assert [type(pdu) for pdu in scp.join().received[1:]] == [Abort]


def test_no_answer_to_our_c_get(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, tmp_path: Path
) -> None:
    scp = HostileSCP(scp_context, silent)
    query = Dataset()
    query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", "1.2.3"
    started = time.monotonic()
    with (
        pytest.raises(AssociationError, match="C-GET") as raised,
        _open(matrix_pki, scp, [Proposal(GET, (EXPLICIT,))]) as assoc,
    ):
        assoc.get(query, DurableStoreHandler(tmp_path / "got"))
    assert time.monotonic() - started < PROMPTLY
    assert f"{TIMEOUT:g} s" in str(raised.value)
    assert [type(pdu) for pdu in scp.join().received[1:]] == [PDataTF, PDataTF, Abort]


def test_no_answer_to_our_a_release_rq(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    """What was done stays done: the echo's answer is ours; the release ends in an A-ABORT
    and one warning, not in an error (nor in a wait)."""
    scp = HostileSCP(scp_context, echo_then_silent)
    started = time.monotonic()
    with (
        caplog.at_level(logging.WARNING, "dicomtls"),
        _open(matrix_pki, scp, [Proposal(VERIFICATION, (IMPLICIT,))]) as assoc,
    ):
        assert assoc.echo() == 0
    assert time.monotonic() - started < PROMPTLY
    assert [type(pdu) for pdu in scp.join().received[1:]] == [PDataTF, ReleaseRQ, Abort]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "127.0.0.1" in warned[0] and "A-RELEASE" in warned[0], warned
