"""Issue 13 finding 1: access rules hold for every message, not only at negotiation.

A real ``dicomtls serve`` with access rules and a file audit trail; hostile peers holding
valid client certificates send raw DIMSE messages on whatever presentation context they
like. A message on a context the association does not have costs the peer its
association; a request whose SOP class or service does not fit its context, or that the
peer's rule does not grant, is answered with a PS3.7 failure status. Either way no data
leaves the node, nothing is stored, nothing is sent to a move destination, the node logs
one line naming the peer and its rule, and the audit trail records a Security Alert.
"""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicomtls.dimse.messages import c_find_rq, c_get_rq, c_move_rq, c_store_rq
from dicomtls.dimse.status import Status
from dicomtls.net.association import associate, default_proposals
from dicomtls.net.qr_scu import QueryModel
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.acse import Proposal, build_request
from dicomtls.ul.codes import PresentationResult
from dicomtls.ul.pdu import AssociateAC

from ..conftest import Files, MatrixPKI
from ..node.test_storage import CT, _make_file
from .conftest import AE, MUTUAL, PATIENT, LiveNode, _timeouts, _tls_args, start
from .dimse import EXPLICIT, Conversation, identifier
from .peers import IMPLICIT, VERIFICATION, DicomPeer

STUDY = QueryModel.STUDY_ROOT
MODALITY_RULE = "rule 'modality'"


@dataclass
class Site:
    node: LiveNode
    pki: MatrixPKI
    identities: dict[str, Files]
    sink: socket.socket
    audit: Path
    victim_study: str

    def peer(self, name: str) -> DicomPeer:
        files = self.identities[name]
        return DicomPeer.tls(self.node.port, files.cert, files.key, self.pki.ca_file)

    def tls(self, name: str) -> TLSSettings:
        files = self.identities[name]
        return TLSSettings(
            certificate=files.cert, private_key=files.key, ca_files=self.pki.ca_file, verify=MUTUAL
        )

    def nothing_sent_to_the_destination(self) -> bool:
        readable, _, _ = select.select([self.sink], [], [], 0)
        return not readable

    def stored_objects(self) -> int:
        assert self.node.store is not None
        return sum(1 for p in (self.node.store / "objects").rglob("*.dcm"))

    def restricted_function_alerts(self) -> list[str]:
        """Security Alert / Use of Restricted Function records in the audit file."""
        return [
            line
            for line in self.audit.read_text().splitlines()
            if 'csd-code="110113"' in line and 'csd-code="110132"' in line
        ]


def _issue(pki: MatrixPKI, directory: Path, name: str) -> Files:
    written = pki.intermediate.issue(name, dns=["localhost"], ips=["127.0.0.1"]).write(
        directory, name=name
    )
    return Files(cert=written.chain, key=written.key)


@pytest.fixture(scope="module")
def site(matrix_pki: MatrixPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("access-bypass")
    identities = {
        "client": matrix_pki.files["client"],
        "viewer": _issue(matrix_pki, tmp, "viewer"),
        "stranger": _issue(matrix_pki, tmp, "stranger"),
    }
    sink = socket.create_server(("127.0.0.1", 0))  # a move destination that counts callers
    audit = tmp / "audit.log"
    config = tmp / "node.toml"
    config.write_text(f"""
move_destinations = ["SINK=127.0.0.1:{sink.getsockname()[1]}"]

[access]
default_services = ["echo", "store", "find", "move"]

[[access.rule]]
name = "modality"
ae_title = "MODALITY"
certificate = {{ cn = "client" }}
services = ["echo", "store"]

[[access.rule]]
name = "viewer"
ae_title = "VIEWER"
certificate = {{ cn = "viewer" }}
services = ["echo", "find"]
""")
    node = start(
        tmp,
        *_tls_args(matrix_pki, crl=False),
        "--config",
        str(config),
        "--audit",
        f"file:{audit}",
        *_timeouts(PATIENT, PATIENT, PATIENT),
    )
    sample = tmp / "victim.dcm"
    victim = _make_file(sample)
    site = Site(node, matrix_pki, identities, sink, audit, victim.StudyInstanceUID)

    async def store_victim() -> int:
        async with await associate(
            "127.0.0.1",
            node.port,
            site.tls("client"),
            calling_ae="MODALITY",
            called_ae=AE,
            proposals=default_proposals([CT]),
        ) as assoc:
            return await assoc.store(sample)

    try:
        assert asyncio.run(store_victim()) == Status.SUCCESS
        yield site
        assert site.nothing_sent_to_the_destination()
    finally:
        node.stop()
        sink.close()
    node.check_one_line_each()


def _associate(site: Site, name: str, calling: str, proposals: list[Proposal]) -> Conversation:
    peer = site.peer(name)
    peer.send(build_request(calling, AE, proposals).encode())
    ac = peer.next_pdu()
    assert isinstance(ac, AssociateAC), ac
    return Conversation(peer)


MODALITY_PROPOSALS = [
    Proposal(VERIFICATION, (IMPLICIT,)),  # context 1
    Proposal(CT, (EXPLICIT,)),  # context 3
]


def _refused_once(site: Site, conversation: Conversation, status: int) -> str:
    """The single answer to the last request: a final response with ``status`` and nothing
    before it; then the node's one log line for this peer."""
    answers = conversation.until_final()
    assert [a.status for a in answers] == [status], answers
    line = site.node.wait_for(conversation.peer.name)
    conversation.peer.close()
    return line


def test_c_find_on_the_verification_context_returns_nothing(site: Site) -> None:
    talk = _associate(site, "client", "MODALITY", MODALITY_PROPOSALS)
    talk.send(
        1,
        c_find_rq(1, STUDY.find_uid),
        identifier(IMPLICIT, QueryRetrieveLevel="STUDY", PatientID="*"),
    )
    line = _refused_once(site, talk, Status.SOP_CLASS_NOT_SUPPORTED)
    assert (
        "C-FIND from" in line
        and MODALITY_RULE in line
        and "negotiated for 1.2.840.10008.1.1" in line
    )


def test_c_find_naming_verification_on_its_context_is_an_unknown_operation(site: Site) -> None:
    talk = _associate(site, "client", "MODALITY", MODALITY_PROPOSALS)
    talk.send(1, c_find_rq(1, VERIFICATION), identifier(IMPLICIT, QueryRetrieveLevel="STUDY"))
    line = _refused_once(site, talk, Status.UNRECOGNIZED_OPERATION)
    assert "negotiated for the echo service" in line


def test_c_find_on_a_context_never_proposed_aborts(site: Site) -> None:
    talk = _associate(site, "client", "MODALITY", MODALITY_PROPOSALS)
    talk.send(201, c_find_rq(1, STUDY.find_uid), identifier(QueryRetrieveLevel="STUDY"))
    assert talk.next_message() is None and talk.aborted is not None
    line = site.node.wait_for(talk.peer.name)
    assert (
        "presentation context 201, which this association (rule 'modality') did not accept" in line
    )


def test_c_get_on_the_storage_context_delivers_nothing(site: Site) -> None:
    talk = _associate(site, "client", "MODALITY", MODALITY_PROPOSALS)
    query = identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=site.victim_study)
    talk.send(3, c_get_rq(1, STUDY.get_uid), query)
    # No C-STORE sub-operation comes first: the one answer is the refusal.
    line = _refused_once(site, talk, Status.SOP_CLASS_NOT_SUPPORTED)
    assert "C-GET from" in line


def test_c_move_on_context_1_sends_nothing_anywhere(site: Site) -> None:
    talk = _associate(site, "client", "MODALITY", MODALITY_PROPOSALS)
    query = identifier(IMPLICIT, QueryRetrieveLevel="STUDY", StudyInstanceUID=site.victim_study)
    talk.send(1, c_move_rq(1, STUDY.move_uid, "SINK"), query)
    _refused_once(site, talk, Status.SOP_CLASS_NOT_SUPPORTED)
    assert site.nothing_sent_to_the_destination()


def test_c_store_without_the_store_grant_stores_nothing(site: Site) -> None:
    before = site.stored_objects()
    talk = _associate(
        site,
        "viewer",
        "VIEWER",
        [
            Proposal(VERIFICATION, (IMPLICIT,)),  # context 1
            Proposal(STUDY.find_uid, (EXPLICIT,)),  # context 3
        ],
    )
    sample = Path(site.audit.parent / "intruder.dcm")
    ds = _make_file(sample, pixels=2000)
    data = sample.read_bytes()
    body = data[data.index(b"DICM") + 4 :]
    # a bogus SOP class on the find context: refused, its data set dropped as it came
    talk.send(3, c_store_rq(1, "1.2.3.4.5", ds.SOPInstanceUID), body)
    assert [a.status for a in talk.until_final()] == [Status.SOP_CLASS_NOT_SUPPORTED]
    # the find context's own SOP class with a C-STORE: not an operation of that service
    talk.send(3, c_store_rq(3, STUDY.find_uid, ds.SOPInstanceUID), body)
    assert [a.status for a in talk.until_final()] == [Status.UNRECOGNIZED_OPERATION]
    lines = site.node.wait_for_lines(talk.peer.name, 2)
    talk.peer.close()
    assert all("C-STORE from" in line and "rule 'viewer'" in line for line in lines)
    assert site.stored_objects() == before


def test_c_store_on_a_context_where_the_peer_took_only_the_scp_role(site: Site) -> None:
    before = site.stored_objects()
    talk = _associate(
        site,
        "client",
        "MODALITY",
        [
            Proposal(VERIFICATION, (IMPLICIT,)),
            Proposal(CT, (EXPLICIT,), scu_role=False, scp_role=True),  # context 3: we only receive
        ],
    )
    sample = Path(site.audit.parent / "role.dcm")
    ds = _make_file(sample, pixels=2000)
    data = sample.read_bytes()
    talk.send(3, c_store_rq(1, CT, ds.SOPInstanceUID), data[data.index(b"DICM") + 4 :])
    line = _refused_once(site, talk, Status.NOT_AUTHORIZED)
    assert "role selection did not give the peer's side the SCU role" in line
    assert site.stored_objects() == before


def test_c_get_on_a_context_the_default_policy_declined_aborts(site: Site) -> None:
    peer = site.peer("stranger")  # no rule names it: default services, which leave out C-GET
    peer.send(
        build_request(
            "STRANGER",
            AE,
            [
                Proposal(VERIFICATION, (IMPLICIT,)),  # context 1
                Proposal(STUDY.get_uid, (EXPLICIT,)),  # context 3: declined
                Proposal(CT, (EXPLICIT,), scu_role=False, scp_role=True),  # context 5
            ],
        ).encode()
    )
    ac = peer.next_pdu()
    assert isinstance(ac, AssociateAC)
    results = {c.id: c.result for c in ac.presentation_contexts}
    assert results[3] == PresentationResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
    talk = Conversation(peer)
    query = identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=site.victim_study)
    talk.send(3, c_get_rq(1, STUDY.get_uid), query)
    assert talk.next_message() is None and talk.aborted is not None
    declined, aborted = site.node.wait_for_lines(peer.name, 2)
    assert "does not grant get" in declined and "context 3" in aborted
    peer.close()


@pytest.mark.parametrize("context", [1, 201])
def test_every_refusal_is_a_security_alert_naming_what_was_asked(site: Site, context: int) -> None:
    before = len(site.restricted_function_alerts())
    talk = _associate(site, "client", "MODALITY", MODALITY_PROPOSALS)
    talk.send(
        context, c_find_rq(7, STUDY.find_uid), identifier(IMPLICIT, QueryRetrieveLevel="STUDY")
    )
    # The node records the alert before it answers or aborts: the record is in the file now.
    answers = talk.until_final()
    site.node.wait_for(talk.peer.name)
    talk.peer.close()
    alerts = site.restricted_function_alerts()[before:]
    assert len(alerts) == 1, alerts
    assert f"presentation context {context}" in alerts[0] and "find refused" in alerts[0]
    assert 'UserID="MODALITY"' in alerts[0] and 'NetworkAccessPointID="127.0.0.1"' in alerts[0]
    assert answers == [] if context == 201 else [a.status for a in answers] == [0x0122]


def test_a_good_client_is_served_throughout(site: Site) -> None:
    async def echo() -> int:
        async with await associate(
            "127.0.0.1",
            site.node.port,
            site.tls("client"),
            calling_ae="MODALITY",
            called_ae=AE,
            proposals=[Proposal(VERIFICATION, (IMPLICIT,))],
        ) as assoc:
            return await assoc.echo()

    assert asyncio.run(echo()) == Status.SUCCESS
