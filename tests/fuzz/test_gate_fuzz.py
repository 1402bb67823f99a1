"""Fuzzing the gate: no request a rule does not grant is ever served.

Two levels. The gate's own rules, on generated negotiations and commands: whatever
passes satisfies every condition the standard and the policy set. Then the whole SCP,
over mutual TLS on loopback: a restrictive access policy, and a client that proposes a
random set of contexts and sends random DIMSE requests (any service, any SOP class, on
accepted, declined and never-proposed context IDs). Handlers that record every call stand
behind the dispatcher; after each session, every call they saw was for a service the
rule grants, on a SOP class negotiated for that service.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from dicomtls.dimse.command import CommandField, CommandSet, Tag
from dicomtls.dimse.datasets import encode_dataset
from dicomtls.dimse.messages import (
    c_cancel_rq,
    c_echo_rq,
    c_find_rq,
    c_get_rq,
    c_move_rq,
    c_store_rq,
)
from dicomtls.dimse.pdv import CommandReceived
from dicomtls.dimse.sop_classes import VERIFICATION, Service, service_of
from dicomtls.net.association import Association, AssociationError, associate
from dicomtls.net.gate import Gate
from dicomtls.net.hooks import Admission, RequestInfo, Services, StoreJob
from dicomtls.net.qr_scu import QueryModel
from dicomtls.net.scp import DicomServer, serve_dicom
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.tls.flags import VerifyFlags
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.acse import AcceptedContext, AcceptorPolicy, Negotiated, Proposal

from ..conftest import MatrixPKI
from ..node.test_storage import CT

EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
PATIENT_ROOT, STUDY_ROOT = QueryModel.PATIENT_ROOT, QueryModel.STUDY_ROOT
#: Every SOP class a request may name: ours, theirs and nobody's.
SOP_CLASSES = [
    VERIFICATION,
    CT,
    MR,
    "1.2.3.4.5",
    *PATIENT_ROOT.value,
    *STUDY_ROOT.value,
]
REQUESTS = [
    CommandField.C_ECHO_RQ,
    CommandField.C_STORE_RQ,
    CommandField.C_FIND_RQ,
    CommandField.C_MOVE_RQ,
    CommandField.C_GET_RQ,
    CommandField.C_CANCEL_RQ,
]
SERVICE_OF = {
    CommandField.C_ECHO_RQ: Service.ECHO,
    CommandField.C_STORE_RQ: Service.STORE,
    CommandField.C_FIND_RQ: Service.FIND,
    CommandField.C_MOVE_RQ: Service.MOVE,
    CommandField.C_GET_RQ: Service.GET,
}


def _command(field: CommandField, sop_class: str, message_id: int) -> CommandSet:
    if field is CommandField.C_ECHO_RQ:
        return c_echo_rq(message_id, sop_class)
    if field is CommandField.C_STORE_RQ:
        return c_store_rq(message_id, sop_class, f"1.2.826.0.1.3680043.10.1432.9.{message_id}")
    if field is CommandField.C_FIND_RQ:
        return c_find_rq(message_id, sop_class)
    if field is CommandField.C_MOVE_RQ:
        return c_move_rq(message_id, sop_class, "DEST")
    if field is CommandField.C_GET_RQ:
        return c_get_rq(message_id, sop_class)
    return c_cancel_rq(message_id)


# -- the gate's rules ----------------------------------------------------------------------


@st.composite
def negotiations(draw: st.DrawFn) -> Negotiated:
    ids = draw(st.lists(st.sampled_from(range(1, 256, 2)), unique=True, max_size=6))
    contexts = tuple(
        AcceptedContext(
            i,
            draw(st.sampled_from(SOP_CLASSES)),
            EXPLICIT,
            draw(st.booleans()),
            draw(st.booleans()),
        )
        for i in ids
    )
    return Negotiated(contexts, 0, "1.2.3", None)


services = st.frozensets(st.sampled_from(list(Service))) | st.none()


@settings(max_examples=3000, deadline=None)
@given(
    negotiations(),
    services,
    st.booleans(),
    st.sampled_from(REQUESTS),
    st.sampled_from(SOP_CLASSES),
    st.sampled_from(range(1, 256, 2)),
    st.booleans(),
)
def test_what_the_gate_lets_through_fits_its_context_role_and_grant(
    negotiated: Negotiated,
    granted: frozenset[Service] | None,
    acceptor: bool,
    field: CommandField,
    sop_class: str,
    context_id: int,
    with_dataset: bool,
) -> None:
    gate = Gate(negotiated, acceptor, granted)
    received = CommandReceived(context_id, _command(field, sop_class, 1), with_dataset)
    refusal = gate.check(received, field)
    if refusal is not None:
        assert refusal.reason
        return
    context = negotiated.by_id(context_id)
    assert context is not None
    if field is CommandField.C_CANCEL_RQ:
        assert not with_dataset
        return
    service = SERVICE_OF[field]
    assert with_dataset == (service is not Service.ECHO)
    assert sop_class == context.abstract_syntax
    assert service_of(sop_class) in (service, None)
    assert context.scu_role if acceptor else context.scp_role
    if acceptor:
        assert granted is None or service in granted
    else:
        assert service is Service.STORE


# -- the whole SCP, over the wire ------------------------------------------------------------

GRANTED = frozenset({Service.ECHO, Service.STORE})  # a modality's rule: echo and store only
ALL_CONTEXTS = [
    Proposal(VERIFICATION, (IMPLICIT,)),
    Proposal(CT, (EXPLICIT,)),
    Proposal(MR, (EXPLICIT,), scu_role=False, scp_role=True),
    *(Proposal(uid, (EXPLICIT,)) for uid in (*PATIENT_ROOT.value, *STUDY_ROOT.value)),
]


@dataclass
class Served:
    """What reached the application, by service, with the SOP class it was asked for."""

    calls: list[tuple[Service, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, service: Service, sop_class: str) -> None:
        with self.lock:
            self.calls.append((service, sop_class))

    def take(self) -> list[tuple[Service, str]]:
        with self.lock:
            calls, self.calls = self.calls, []
        return calls


class RecordingStore:
    def __init__(self, inner: DurableStoreHandler, served: Served) -> None:
        self.inner, self.served = inner, served

    @property
    def keep_tags(self) -> frozenset[int]:
        return self.inner.keep_tags

    def begin(self, association: Association, command: CommandSet, syntax: str) -> StoreJob:
        self.served.add(Service.STORE, str(command[Tag.AffectedSOPClassUID]))
        return self.inner.begin(association, command, syntax)


@dataclass
class Node:
    port: int
    served: Served


@pytest.fixture(scope="module")
def node(matrix_pki: MatrixPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    served = Served()
    store = DurableStore(tmp_path_factory.mktemp("gate-fuzz"), fsync=False)

    def find(association: Association, sop_class: str, identifier: Dataset) -> Iterable[Dataset]:
        served.add(Service.FIND, sop_class)
        match = Dataset()
        match.PatientID = "SECRET"
        return [match]

    def retrieve(association: Association, sop_class: str, identifier: Dataset) -> Iterable[Path]:
        served.add(Service.MOVE if sop_class.endswith(".2") else Service.GET, sop_class)
        return []

    def gatekeeper(request: RequestInfo) -> Admission:
        return Admission(services=GRANTED, rule="rule 'modality'")

    services = Services(
        store=RecordingStore(DurableStoreHandler(store), served),
        find=find,
        retrieve=retrieve,
        move_destinations={"DEST": ("127.0.0.1", 9)},
        gatekeeper=gatekeeper,
    )
    everything = {p.abstract_syntax: (EXPLICIT, IMPLICIT) for p in ALL_CONTEXTS}
    policy = AcceptorPolicy("FUZZ", everything)
    tls = matrix_pki.settings("server", VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT)
    loop = asyncio.new_event_loop()
    started: list[DicomServer] = []
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        started.append(loop.run_until_complete(serve_dicom("127.0.0.1", 0, tls, policy, services)))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30)
    yield Node(started[0].port, served)
    asyncio.run_coroutine_threadsafe(started[0].close(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)


requests = st.lists(
    st.tuples(
        st.sampled_from(REQUESTS),
        st.sampled_from(SOP_CLASSES),
        st.sampled_from([1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 201]),
    ),
    min_size=1,
    max_size=6,
)


def _dataset(field: CommandField, sop_class: str, message_id: int) -> bytes:
    ds = Dataset()
    if field is CommandField.C_STORE_RQ:
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1432.9.{message_id}"
        ds.PatientID = "INTRUDER"
    else:
        ds.QueryRetrieveLevel = "STUDY"
        ds.PatientID = "*"
    return encode_dataset(ds, EXPLICIT)


async def _session(
    port: int,
    tls: TLSSettings,
    proposals: list[Proposal],
    sent: list[tuple[CommandField, str, int]],
) -> None:
    async with await associate(
        "127.0.0.1",
        port,
        tls,
        called_ae="FUZZ",
        calling_ae="MODALITY",
        proposals=proposals,
        dimse_timeout=10,
    ) as assoc:
        for index, (field, sop_class, context_id) in enumerate(sent, start=1):
            dataset = (
                None
                if field in (CommandField.C_ECHO_RQ, CommandField.C_CANCEL_RQ)
                else [_dataset(field, sop_class, index)]
            )
            await assoc.send_message(context_id, _command(field, sop_class, index), dataset)
            if field is CommandField.C_CANCEL_RQ:
                continue  # nothing answers a cancel
            while (message := await assoc.receive_message()) is not None:
                status = message.command.get(Tag.Status)
                if status not in (0xFF00, 0xFF01):
                    break
            if message is None:
                return  # aborted: the context was not ours to use


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(ALL_CONTEXTS), min_size=1, max_size=8, unique=True), requests)
def test_no_request_a_rule_does_not_grant_is_served(
    node: Node,
    matrix_pki: MatrixPKI,
    proposals: list[Proposal],
    sent: list[tuple[CommandField, str, int]],
) -> None:
    tls = matrix_pki.settings("client", VerifyFlags.PEER)
    # The node may abort us (seen at the next send after a cancel): refused, which is the point.
    with contextlib.suppress(AssociationError, ConnectionError):
        asyncio.run(_session(node.port, tls, proposals, sent))
    served = node.served.take()
    accepted_for = {
        p.abstract_syntax for p in proposals if service_of(p.abstract_syntax) in GRANTED
    }
    for service, sop_class in served:
        assert service in GRANTED, (service, sop_class, sent)
        assert sop_class in accepted_for, (service, sop_class, proposals)
        assert service_of(sop_class) is service


def test_the_harness_sees_what_the_rule_grants(node: Node, matrix_pki: MatrixPKI) -> None:
    """The control: a granted C-STORE through the same harness reaches the application, so the
    fuzz above would see a request that slipped through."""
    tls = matrix_pki.settings("client", VerifyFlags.PEER)
    proposals = [Proposal(VERIFICATION, (IMPLICIT,)), Proposal(CT, (EXPLICIT,))]
    asyncio.run(_session(node.port, tls, proposals, [(CommandField.C_STORE_RQ, CT, 3)]))
    assert node.served.take() == [(Service.STORE, CT)]
