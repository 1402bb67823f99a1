"""The gate on our SCU side: a hostile SCP cannot push objects into a C-GET on contexts we
did not open for it.

The SCP is hand-made over Python's ``ssl`` (mutual TLS, a real handshake): it accepts the
association, and answers our C-GET with C-STORE sub-operations where it should not send
them. Our client answers each with a failure status, stores nothing, and its C-GET ends
with the SCP's final response.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dicomtls.dimse.command import Tag, decode_command, number
from dicomtls.dimse.messages import c_get_rsp, c_store_rq
from dicomtls.dimse.status import Status
from dicomtls.net.qr_scu import QueryModel
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.sync import associate
from dicomtls.tls.flags import VerifyFlags
from dicomtls.ul import PDUReader
from dicomtls.ul.acse import AcceptorPolicy, Proposal, answer_request
from dicomtls.ul.pdu import AssociateRQ, PDataTF, ReleaseRP, ReleaseRQ

from ..conftest import MatrixPKI
from ..node.test_storage import CT, _make_file
from .dimse import EXPLICIT, message_pdus
from .peers import IMPLICIT, VERIFICATION

GET = QueryModel.STUDY_ROOT.get_uid
MR = "1.2.840.10008.5.1.4.1.1.4"


@dataclass
class HostileSCP:
    """Pushes ``pushes`` (context ID, SOP class) as C-STOREs in answer to any C-GET."""

    context: ssl.SSLContext
    dataset: bytes
    uid: str
    pushes: list[tuple[int, str]]
    answers: list[int] = field(default_factory=list)
    server: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))

    @property
    def port(self) -> int:
        return int(self.server.getsockname()[1])

    def serve_one(self) -> None:
        raw, _ = self.server.accept()
        with self.context.wrap_socket(raw, server_side=True) as sock:
            reader = PDUReader()

            def next_pdu() -> object:
                while (pdu := reader.next_pdu()) is None:
                    reader.feed(sock.recv(65536))
                return pdu

            rq = next_pdu()
            assert isinstance(rq, AssociateRQ)
            everything = {c.abstract_syntax: (EXPLICIT, IMPLICIT) for c in rq.presentation_contexts}
            sock.sendall(answer_request(rq, AcceptorPolicy("HOSTILE", everything)).encode())
            get = next_pdu()
            assert isinstance(get, PDataTF)
            get_context = get.pdvs[0].context_id
            for index, (context_id, sop_class) in enumerate(self.pushes, start=1):
                push = c_store_rq(index, sop_class, self.uid)
                sock.sendall(message_pdus(context_id, push, self.dataset))
                while True:
                    answer = next_pdu()
                    assert isinstance(answer, PDataTF)
                    if answer.pdvs[-1].is_last and answer.pdvs[-1].is_command:
                        break
                self.answers.append(_status(bytes(answer.pdvs[-1].data)))
            final = c_get_rsp(1, GET, Status.SUCCESS, (0, 0, 0, 0))
            sock.sendall(message_pdus(get_context, final))
            if isinstance(next_pdu(), ReleaseRQ):
                sock.sendall(ReleaseRP().encode())


def _status(command: bytes) -> int:
    return number(decode_command(command), Tag.Status)


@pytest.fixture
def scp_context(matrix_pki: MatrixPKI) -> ssl.SSLContext:
    server = matrix_pki.files["server"]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server.cert, server.key)
    context.load_verify_locations(matrix_pki.ca_file)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture
def sample(tmp_path: Path) -> tuple[bytes, str]:
    """A CT data set as a hostile SCP would send it, and its SOP instance UID."""
    path = tmp_path / "push.dcm"
    uid = str(_make_file(path, pixels=1000).SOPInstanceUID)
    data = path.read_bytes()
    return data[data.index(b"DICM") + 4 :], uid


def _get(pki: MatrixPKI, scp: HostileSCP, store: Path) -> tuple[int, list[str]]:
    thread = threading.Thread(target=scp.serve_one, daemon=True)
    thread.start()
    tls = pki.settings("client", VerifyFlags.PEER)
    proposals = [
        Proposal(VERIFICATION, (IMPLICIT,)),  # 1
        Proposal(GET, (EXPLICIT,)),  # 3
        Proposal(CT, (EXPLICIT,), scu_role=False, scp_role=True),  # 5: the one we receive on
        Proposal(MR, (EXPLICIT,)),  # 7: we would send MR, never receive it
    ]
    target = DurableStoreHandler(DurableStore(store, flat=True))
    query = Dataset()
    query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", "1.2.3"
    with associate("127.0.0.1", scp.port, tls, called_ae="HOSTILE", proposals=proposals) as assoc:
        result = assoc.get(query, target)
    thread.join(30)
    return result.status, result.stored


def test_pushes_on_contexts_we_did_not_open_for_receiving_are_refused(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, sample: tuple[bytes, str], tmp_path: Path
) -> None:
    scp = HostileSCP(
        scp_context,
        *sample,
        [
            (3, GET),  # a C-STORE on the C-GET context itself
            (3, CT),  # CT, but on the C-GET context
            (7, MR),  # MR: a context where we took no SCP role
            (1, CT),  # on the Verification context
        ],
    )
    status, stored = _get(matrix_pki, scp, tmp_path / "got")
    assert status == Status.SUCCESS  # the SCP's own final word; nothing of it was kept
    assert stored == []
    assert scp.answers == [
        Status.UNRECOGNIZED_OPERATION,
        Status.SOP_CLASS_NOT_SUPPORTED,
        Status.NOT_AUTHORIZED,
        Status.SOP_CLASS_NOT_SUPPORTED,
    ]
    assert list((tmp_path / "got").glob("*.dcm")) == []


def test_a_push_on_the_context_we_opened_is_received(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, sample: tuple[bytes, str], tmp_path: Path
) -> None:
    """The control: the same SCP, pushing where we asked it to, is served."""
    scp = HostileSCP(scp_context, *sample, [(5, CT)])
    status, stored = _get(matrix_pki, scp, tmp_path / "got")
    assert scp.answers == [Status.SUCCESS]
    assert stored == [sample[1]] and status == Status.SUCCESS
    assert [p.stem for p in (tmp_path / "got").glob("*.dcm")] == [sample[1]]
