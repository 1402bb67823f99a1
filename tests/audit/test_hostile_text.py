"""Audit messages about a hostile peer: whatever its AE title, certificate subject or UIDs
hold, the record is written, valid against the schema, one line, and shows the escapes."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from lxml import etree

from dicomtls.audit import (
    AuditMessage,
    Node,
    PatientRef,
    StudyRef,
    association_rejected,
    instances_transferred,
    node_authentication_failure,
    query,
)

FORGED = "\n2026-01-01 00:00:00 WARNING dicomtls.net: FORGED\x1b[2J"
ESCAPED = "\\n2026-01-01 00:00:00 WARNING dicomtls.net: FORGED\\x1b[2J"
#: Characters XML 1.0 cannot carry, one that UTF-8 cannot encode, and the ones that fool a reader.
NASTY = "\x00\x07\x1b\x7f\x85\u2028\u202e\udc80\ufffe\uffff"
NASTY_ESCAPED = "\\x00\\x07\\x1b\\x7f\\x85\\u2028\\u202e\\udc80\\ufffe\\uffff"

LOCAL = Node("DICOMTLS", "192.0.2.10", process_id=4242)
PEER = Node(
    "EVIL" + FORGED,  # not an AE title the wire allows, but nothing here may rely on that
    "203.0.113.7",
    user_name=f"CN = [red]evil[/red]{FORGED}{NASTY}, O = x",
)
UID = "1.2.3" + FORGED + NASTY
CT = "1.2.840.10008.5.1.4.1.1.2"

BUILDERS: dict[str, Callable[[], AuditMessage]] = {
    "authentication failure": lambda: node_authentication_failure(
        local=LOCAL,
        peer=PEER,
        reason=f"certificate {PEER.user_name!r} untrusted{FORGED}{NASTY}",
        source_id="node-a",
    ),
    "association rejected": lambda: association_rejected(
        local=LOCAL, peer=PEER, reason=f"C-STORE of {UID} refused", source_id="node-a"
    ),
    "instances received": lambda: instances_transferred(
        action="C",
        source=PEER,
        destination=LOCAL,
        requestor_is_source=True,
        studies=[StudyRef(UID, {CT + NASTY: 2})],
        patient=PatientRef("PID" + NASTY, "Doe^" + FORGED),
        source_id="node-a",
    ),
    "query": lambda: query(
        requestor=PEER,
        responder=LOCAL,
        sop_class_uid=UID,
        query=b"\x1b[2J" + FORGED.encode(),
        source_id="node-a" + NASTY,
        transfer_syntax="1.2.840.10008.1.2" + NASTY,
    ),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_hostile_values_give_a_valid_one_line_record(name: str, schema: etree.RelaxNG) -> None:
    message = BUILDERS[name]()  # the record is made: no exception loses it
    assert b"\n" not in message.xml and b"\r" not in message.xml
    assert b"\x1b" not in message.xml
    document = etree.fromstring(message.xml)
    assert schema.validate(document), schema.error_log
    text = message.xml.decode("utf-8")
    assert "\u202e" not in text and "\u2028" not in text and "\x85" not in text
    assert ESCAPED in text or name == "query"  # the query's peer text is all base64


def _participant(document: etree._Element, requestor: str) -> etree._Element:
    found = [
        p for p in document.findall("ActiveParticipant") if p.get("UserIsRequestor") == requestor
    ]
    assert len(found) == 1
    return found[0]


def test_the_escapes_are_in_the_fields_where_a_reviewer_looks(schema: etree.RelaxNG) -> None:
    document = etree.fromstring(BUILDERS["instances received"]().xml)
    peer = _participant(document, "true")
    assert peer.get("AlternativeUserID") == f"AETITLES=EVIL{ESCAPED}"
    assert peer.get("UserName") == f"CN = [red]evil[/red]{ESCAPED}{NASTY_ESCAPED}, O = x"
    study, patient = document.findall("ParticipantObjectIdentification")
    assert study.get("ParticipantObjectID") == f"1.2.3{ESCAPED}{NASTY_ESCAPED}"
    assert study.find("ParticipantObjectDescription/SOPClass").get("UID") == CT + NASTY_ESCAPED
    assert patient.get("ParticipantObjectID") == "PID" + NASTY_ESCAPED
    assert patient.findtext("ParticipantObjectName") == "Doe^" + ESCAPED


def test_base64_details_keep_what_the_peer_sent() -> None:
    """The Alert Description is base64: it carries the reason as it was (a lone surrogate,
    which no UTF-8 can hold, as its escape), for a reviewer who wants the exact text."""
    document = etree.fromstring(BUILDERS["authentication failure"]().xml)
    detail = document.find("ParticipantObjectIdentification/ParticipantObjectDetail")
    reason = base64.b64decode(detail.get("value")).decode("utf-8")
    assert reason.endswith(FORGED + NASTY.replace("\udc80", "\\udc80"))
    shown = document.findtext("EventIdentification/EventOutcomeDescription")
    assert shown.endswith(ESCAPED + NASTY_ESCAPED)
