"""The gate on our SCU side: a hostile SCP cannot push objects into a C-GET on contexts we
did not open for it, not even by granting itself a role we did not propose.

The SCP (tests/hostile/scp.py) accepts the association, and answers our C-GET with C-STORE
sub-operations where it should not send them. Our client answers each with a failure
status, stores nothing, and its C-GET ends with the SCP's final response.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dicomtls.dimse.messages import c_get_rsp, c_store_rq
from dicomtls.dimse.status import Status
from dicomtls.errors import AssociationError
from dicomtls.net.qr_scu import QueryModel
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.sync import associate
from dicomtls.tls.flags import VerifyFlags
from dicomtls.ul.acse import Proposal
from dicomtls.ul.items import RoleSelection
from dicomtls.ul.pdu import Abort, AssociateAC

from ..conftest import MatrixPKI
from ..node.test_storage import CT, _make_file
from .dimse import EXPLICIT, message_pdus
from .peers import IMPLICIT, VERIFICATION
from .scp import HostileSCP, SCPLink, status_of

GET = QueryModel.STUDY_ROOT.get_uid
MR = "1.2.840.10008.5.1.4.1.1.4"


def pushing(
    pushes: list[tuple[int, str]],
    dataset: bytes,
    uid: str,
    answers: list[int],
    answering: int = 1,
) -> Callable[[SCPLink], None]:
    """A script: answer a C-GET with ``pushes`` (context ID, SOP class) as C-STOREs of
    ``dataset``, keep our status for each in ``answers``, then end the C-GET with Success,
    as the response to message ``answering`` (ours is 1)."""

    def script(link: SCPLink) -> None:
        get = link.next_command()
        assert get is not None
        for index, (context_id, sop_class) in enumerate(pushes, start=1):
            link.send(message_pdus(context_id, c_store_rq(index, sop_class, uid), dataset))
            answer = link.next_command()
            assert answer is not None
            answers.append(status_of(answer))
        final = c_get_rsp(answering, GET, Status.SUCCESS, (0, 0, 0, 0))
        link.send(message_pdus(get.pdvs[0].context_id, final))
        link.release()

    return script


@pytest.fixture
def sample(tmp_path: Path) -> tuple[bytes, str]:
    """A CT data set as a hostile SCP would send it, and its SOP instance UID."""
    path = tmp_path / "push.dcm"
    uid = str(_make_file(path, pixels=1000).SOPInstanceUID)
    data = path.read_bytes()
    return data[data.index(b"DICM") + 4 :], uid


def _get(pki: MatrixPKI, scp: HostileSCP, store: Path) -> tuple[int, list[str]]:
    scp.start()
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
    scp.join()
    return result.status, result.stored


def _granting_itself(*roles: RoleSelection) -> Callable[[AssociateAC], AssociateAC]:
    """An A-ASSOCIATE-AC that answers role selections we never proposed."""

    def lie(ac: AssociateAC) -> AssociateAC:
        user = ac.user_information
        user = dataclasses.replace(user, role_selections=(*user.role_selections, *roles))
        return dataclasses.replace(ac, user_information=user)

    return lie


def test_pushes_on_contexts_we_did_not_open_for_receiving_are_refused(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, sample: tuple[bytes, str], tmp_path: Path
) -> None:
    pushes = [
        (3, GET),  # a C-STORE on the C-GET context itself
        (3, CT),  # CT, but on the C-GET context
        (7, MR),  # MR: a context where we took no SCP role
        (1, CT),  # on the Verification context
    ]
    answers: list[int] = []
    scp = HostileSCP(scp_context, pushing(pushes, *sample, answers))
    status, stored = _get(matrix_pki, scp, tmp_path / "got")
    assert status == Status.SUCCESS  # the SCP's own final word; nothing of it was kept
    assert stored == []
    assert answers == [
        Status.UNRECOGNIZED_OPERATION,
        Status.SOP_CLASS_NOT_SUPPORTED,
        Status.NOT_AUTHORIZED,
        Status.SOP_CLASS_NOT_SUPPORTED,
    ]
    assert list((tmp_path / "got").glob("*.dcm")) == []


def test_a_role_the_scp_grants_itself_unasked_admits_no_push(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, sample: tuple[bytes, str], tmp_path: Path
) -> None:
    """We proposed MR with no role selection (we would only send MR): an AC that answers
    "SCP role for MR: yes" anyway gives the SCP no right to push MR at us (PS3.7 D.3.3.4:
    an acceptor answers the roles proposed; unproposed, the defaults hold)."""
    answers: list[int] = []
    data, uid = sample
    scp = HostileSCP(
        scp_context,
        pushing([(7, MR)], data.replace(CT.encode(), MR.encode()), uid, answers),
        lie=_granting_itself(RoleSelection(MR, True, True)),
    )
    _, stored = _get(matrix_pki, scp, tmp_path / "got")
    assert answers == [Status.NOT_AUTHORIZED]
    assert stored == []
    assert list((tmp_path / "got").glob("*.dcm")) == []


def test_a_push_on_the_context_we_opened_is_received(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, sample: tuple[bytes, str], tmp_path: Path
) -> None:
    """The control: the same SCP, pushing where we asked it to, is served."""
    answers: list[int] = []
    scp = HostileSCP(scp_context, pushing([(5, CT)], *sample, answers))
    status, stored = _get(matrix_pki, scp, tmp_path / "got")
    assert answers == [Status.SUCCESS]
    assert stored == [sample[1]] and status == Status.SUCCESS
    assert [p.stem for p in (tmp_path / "got").glob("*.dcm")] == [sample[1]]


def test_a_final_response_to_another_message_ends_the_get_with_an_abort(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, sample: tuple[bytes, str], tmp_path: Path
) -> None:
    """A C-GET-RSP must answer our C-GET (Message ID Being Responded To, PS3.7 9.3.3.2): one
    answering a message we never sent ends nothing of ours, so the association is aborted."""
    answers: list[int] = []
    scp = HostileSCP(scp_context, pushing([(5, CT)], *sample, answers, answering=2))
    with pytest.raises(AssociationError, match="answered our C-GET out of order"):
        _get(matrix_pki, scp, tmp_path / "got")
    assert answers == [Status.SUCCESS]  # what came before it was received as usual
    assert isinstance(scp.join().received[-1], Abort)
