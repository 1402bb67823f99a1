"""Audit messages: valid against the PS3.15 A.5.1 schema, and carrying the right facts."""

from __future__ import annotations

import base64
import copy
import datetime as dt
from collections.abc import Callable

import pytest
from lxml import etree

from dicomtls.audit import (
    AuditMessage,
    Node,
    Outcome,
    PatientRef,
    StudyRef,
    application_activity,
    association_rejected,
    instances_transferred,
    node_authentication_failure,
    query,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"

LOCAL = Node("DICOMTLS", "192.0.2.10", process_id=4242)
PEER = Node("MODALITY", "ct1.example.org", user_name="CN=ct1,O=Hospital")


def _all_messages() -> dict[str, AuditMessage]:
    return {
        "start": application_activity(started=True, application=LOCAL, source_id="node-a"),
        "stop": application_activity(
            started=False, application=LOCAL, source_id="node-a", outcome=Outcome.SERIOUS_FAILURE
        ),
        "auth": node_authentication_failure(
            local=LOCAL, peer=PEER, reason="certificate has expired", source_id="node-a"
        ),
        "rejected": association_rejected(
            local=LOCAL, peer=PEER, reason="calling AE not allowed", source_id="node-a"
        ),
        "stored": instances_transferred(
            action="C",
            source=PEER,
            destination=LOCAL,
            requestor_is_source=True,
            studies=[StudyRef("1.2.3.4", {CT: 3, MR: 1}), StudyRef("1.2.3.5", {CT: 7})],
            patient=PatientRef("PID-1", "Müller^Jörg"),
            source_id="node-a",
        ),
        "sent": instances_transferred(
            action="R",
            source=LOCAL,
            destination=Node("VIEWER", "2001:db8::5"),
            requestor_is_source=False,
            studies=[StudyRef("1.2.3.4", {})],
            patient=None,
            source_id="node-a",
            outcome=Outcome.MINOR_FAILURE,
        ),
        "query": query(
            requestor=PEER,
            responder=LOCAL,
            sop_class_uid=STUDY_FIND,
            query=b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY ",
            source_id="node-a",
            transfer_syntax="1.2.840.10008.1.2.1",
        ),
    }


MESSAGES = _all_messages()


def parse(message: AuditMessage) -> etree._Element:
    return etree.fromstring(message.xml)


def code(element: etree._Element) -> tuple[str, str, str]:
    return (element.get("csd-code"), element.get("codeSystemName"), element.get("originalText"))


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_every_builder_validates_against_the_schema(name: str, schema: etree.RelaxNG) -> None:
    document = parse(MESSAGES[name])
    assert schema.validate(document), schema.error_log


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_one_line_utf8_without_declaration(name: str) -> None:
    message = MESSAGES[name]
    assert b"\n" not in message.xml and b"\r" not in message.xml
    assert message.xml.startswith(b"<AuditMessage>")
    assert str(message) == message.xml.decode("utf-8")


def _broken(mutate: Callable[[etree._Element], None]) -> etree._Element:
    document = copy.deepcopy(parse(MESSAGES["stored"]))
    mutate(document)
    return document


def _remove(path: str) -> Callable[[etree._Element], None]:
    def mutate(document: etree._Element) -> None:
        element = document.find(path)
        assert element is not None
        element.getparent().remove(element)

    return mutate


def _set(path: str, attribute: str, value: str) -> Callable[[etree._Element], None]:
    def mutate(document: etree._Element) -> None:
        element = document if path == "." else document.find(path)
        assert element is not None
        element.set(attribute, value)

    return mutate


def _swap_source_and_participants(document: etree._Element) -> None:
    source = document.find("AuditSourceIdentification")
    document.remove(source)
    document.insert(1, source)  # before the ActiveParticipants: wrong order


@pytest.mark.parametrize(
    "mutate",
    [
        _remove("EventIdentification/EventID"),
        _remove("AuditSourceIdentification"),
        _remove("ParticipantObjectIdentification/ParticipantObjectName"),
        _set("EventIdentification", "EventOutcomeIndicator", "3"),
        _set("EventIdentification", "EventActionCode", "X"),
        _set("EventIdentification", "EventDateTime", "25.11.2026 14:53"),
        _set("ActiveParticipant", "UserIsRequestor", "maybe"),
        _set("EventIdentification/EventID", "code", "110104"),
        _set(
            "ParticipantObjectIdentification/ParticipantObjectDescription/SOPClass",
            "NumberOfInstances",
            "three",
        ),
        _swap_source_and_participants,
    ],
    ids=[
        "no-EventID",
        "no-AuditSource",
        "no-object-name-or-query",
        "bad-outcome",
        "bad-action",
        "bad-datetime",
        "bad-boolean",
        "rfc3881-code-attribute",
        "non-integer-count",
        "wrong-order",
    ],
)
def test_schema_rejects_broken_documents(
    mutate: Callable[[etree._Element], None], schema: etree.RelaxNG
) -> None:
    assert schema.validate(parse(MESSAGES["stored"]))  # the original is fine...
    assert not schema.validate(_broken(mutate))  # ...so the schema really checks this


def test_event_date_time_is_utc_now_with_milliseconds() -> None:
    before = dt.datetime.now(dt.UTC)
    message = application_activity(started=True, application=LOCAL, source_id="x")
    after = dt.datetime.now(dt.UTC)
    stamp = parse(message).find("EventIdentification").get("EventDateTime")
    assert stamp.endswith("Z") and len(stamp) == len("2026-11-25T14:53:17.123Z")
    when = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before - dt.timedelta(milliseconds=1) <= when <= after


@pytest.mark.parametrize(("started", "type_code"), [(True, "110120"), (False, "110121")])
def test_application_activity(started: bool, type_code: str) -> None:
    message = application_activity(started=started, application=LOCAL, source_id="node-a")
    doc = parse(message)
    event = doc.find("EventIdentification")
    assert message.event == "Application Activity"
    assert event.get("EventActionCode") == "E"
    assert event.get("EventOutcomeIndicator") == "0"
    assert code(event.find("EventID")) == ("110100", "DCM", "Application Activity")
    assert event.find("EventTypeCode").get("csd-code") == type_code
    (participant,) = doc.findall("ActiveParticipant")
    assert participant.get("UserID") == "4242"  # the process ID, per A.5.2.1
    assert participant.get("AlternativeUserID") == "AETITLES=DICOMTLS"
    assert participant.get("NetworkAccessPointID") == "192.0.2.10"
    assert participant.get("NetworkAccessPointTypeCode") == "2"
    assert code(participant.find("RoleIDCode")) == ("110150", "DCM", "Application")
    assert doc.find("AuditSourceIdentification").get("AuditSourceID") == "node-a"
    assert doc.findall("ParticipantObjectIdentification") == []


def test_outcome_is_written_as_its_number() -> None:
    event = parse(MESSAGES["stop"]).find("EventIdentification")
    assert event.get("EventOutcomeIndicator") == "8"


@pytest.mark.parametrize(("name", "type_code"), [("auth", "110126"), ("rejected", "110132")])
def test_security_alerts(name: str, type_code: str) -> None:
    doc = parse(MESSAGES[name])
    event = doc.find("EventIdentification")
    assert code(event.find("EventID")) == ("110113", "DCM", "Security Alert")
    assert event.find("EventTypeCode").get("csd-code") == type_code
    assert event.get("EventActionCode") == "E"
    assert event.get("EventOutcomeIndicator") == "4"
    local, peer = doc.findall("ActiveParticipant")
    assert local.get("AlternativeUserID") == "AETITLES=DICOMTLS"
    assert peer.get("UserID") == "MODALITY"  # no process ID known: the AE title
    assert peer.get("UserName") == "CN=ct1,O=Hospital"
    assert peer.get("UserIsRequestor") == "false"  # A.5.3.11: performers never are
    assert peer.get("NetworkAccessPointID") == "ct1.example.org"
    assert peer.get("NetworkAccessPointTypeCode") == "1"  # a host name, not an IP
    (subject,) = doc.findall("ParticipantObjectIdentification")
    assert subject.get("ParticipantObjectID") == "ct1.example.org"
    assert subject.find("ParticipantObjectIDTypeCode").get("csd-code") == "110182"
    detail = subject.find("ParticipantObjectDetail")
    assert detail.get("type") == "Alert Description"
    reason = "certificate has expired" if name == "auth" else "calling AE not allowed"
    assert base64.b64decode(detail.get("value")).decode() == reason
    assert event.findtext("EventOutcomeDescription") == reason


def test_reason_with_newlines_and_control_characters_stays_one_valid_line(
    schema: etree.RelaxNG,
) -> None:
    message = node_authentication_failure(
        local=LOCAL, peer=PEER, reason="line one\nline two\x00<b>&", source_id="node-a"
    )
    assert b"\n" not in message.xml
    doc = parse(message)
    assert schema.validate(doc), schema.error_log
    text = doc.find("EventIdentification").findtext("EventOutcomeDescription")
    assert text == "line one\\nline two\\x00<b>&"  # escaped, as in the log (dicomtls.text)


def test_instances_received_by_store() -> None:
    doc = parse(MESSAGES["stored"])
    event = doc.find("EventIdentification")
    assert code(event.find("EventID")) == ("110104", "DCM", "DICOM Instances Transferred")
    assert event.get("EventActionCode") == "C"
    source, destination = doc.findall("ActiveParticipant")
    assert source.find("RoleIDCode").get("csd-code") == "110153"
    assert source.get("AlternativeUserID") == "AETITLES=MODALITY"
    assert source.get("UserIsRequestor") == "true"
    assert destination.find("RoleIDCode").get("csd-code") == "110152"
    assert destination.get("AlternativeUserID") == "AETITLES=DICOMTLS"
    assert destination.get("UserIsRequestor") == "false"
    objects = doc.findall("ParticipantObjectIdentification")
    studies = [o for o in objects if o.get("ParticipantObjectTypeCodeRole") == "3"]
    assert [s.get("ParticipantObjectID") for s in studies] == ["1.2.3.4", "1.2.3.5"]
    for study in studies:
        assert study.get("ParticipantObjectTypeCode") == "2"
        assert code(study.find("ParticipantObjectIDTypeCode"))[0] == "110180"
    counts = {
        (s.get("ParticipantObjectID"), c.get("UID")): int(c.get("NumberOfInstances"))
        for s in studies
        for c in s.findall("ParticipantObjectDescription/SOPClass")
    }
    assert counts == {("1.2.3.4", CT): 3, ("1.2.3.4", MR): 1, ("1.2.3.5", CT): 7}
    (patient,) = [o for o in objects if o.get("ParticipantObjectTypeCodeRole") == "1"]
    assert patient.get("ParticipantObjectTypeCode") == "1"
    assert patient.get("ParticipantObjectID") == "PID-1"
    assert patient.findtext("ParticipantObjectName") == "Müller^Jörg"
    assert objects[-1] is patient


def test_instances_sent_for_retrieve() -> None:
    doc = parse(MESSAGES["sent"])
    event = doc.find("EventIdentification")
    assert event.get("EventActionCode") == "R"
    assert event.get("EventOutcomeIndicator") == "4"
    source, destination = doc.findall("ActiveParticipant")
    assert source.get("UserIsRequestor") == "false"
    assert destination.get("UserIsRequestor") == "true"
    assert destination.get("NetworkAccessPointTypeCode") == "2"  # IPv6 is an IP too
    (study,) = doc.findall("ParticipantObjectIdentification")  # no patient given
    assert study.find("ParticipantObjectDescription") is None  # no SOP classes known


def test_instances_transferred_rejects_an_unknown_action() -> None:
    with pytest.raises(ValueError, match="action"):
        instances_transferred(
            action="D",  # type: ignore[arg-type]
            source=LOCAL,
            destination=PEER,
            requestor_is_source=True,
            studies=[],
            patient=None,
            source_id="x",
        )


def test_query() -> None:
    doc = parse(MESSAGES["query"])
    event = doc.find("EventIdentification")
    assert code(event.find("EventID")) == ("110112", "DCM", "Query")
    assert event.get("EventActionCode") == "E"
    requestor, responder = doc.findall("ActiveParticipant")
    assert requestor.get("UserIsRequestor") == "true"
    assert requestor.find("RoleIDCode").get("csd-code") == "110153"
    assert responder.get("UserIsRequestor") == "false"
    assert responder.find("RoleIDCode").get("csd-code") == "110152"
    (target,) = doc.findall("ParticipantObjectIdentification")
    assert target.get("ParticipantObjectID") == STUDY_FIND
    assert target.get("ParticipantObjectTypeCode") == "2"
    assert target.get("ParticipantObjectTypeCodeRole") == "3"
    assert code(target.find("ParticipantObjectIDTypeCode")) == ("110181", "DCM", "SOP Class UID")
    raw = base64.b64decode(target.findtext("ParticipantObjectQuery"))
    assert raw == b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY "
    detail = target.find("ParticipantObjectDetail")
    assert detail.get("type") == "TransferSyntax"
    assert base64.b64decode(detail.get("value")) == b"1.2.840.10008.1.2.1"


def test_node_without_ae_title_or_address() -> None:
    message = application_activity(
        started=True, application=Node(None, None, process_id=7), source_id="x"
    )
    (participant,) = parse(message).findall("ActiveParticipant")
    assert participant.get("UserID") == "7"
    for absent in ("AlternativeUserID", "NetworkAccessPointID", "NetworkAccessPointTypeCode"):
        assert participant.get(absent) is None
