"""DICOM audit messages (PS3.15 Annex A.5), built with the standard library only.

An audit repository validates what we send against the DICOM audit message schema
(A.5.1, derived from RFC 3881), so every builder here produces exactly the element order
that schema's RELAX NG *sequences* demand: EventIdentification, ActiveParticipant+,
AuditSourceIdentification, ParticipantObjectIdentification*; inside each, child elements
in schema order (attributes are unordered). Codes are written the schema's way
(``csd-code``, ``codeSystemName``, ``originalText``), not RFC 3881's ``code``.

The document is one line of UTF-8 without an XML declaration: syslog carries it as the MSG
of one record, and a file sink writes one message per line.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import ipaddress
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from dicomtls.text import printable

__all__ = [
    "AuditMessage",
    "Node",
    "Outcome",
    "PatientRef",
    "StudyRef",
    "application_activity",
    "association_rejected",
    "instances_transferred",
    "node_authentication_failure",
    "query",
]


class Outcome(enum.IntEnum):
    """EventOutcomeIndicator values (A.5.1 schema, A.5.2)."""

    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8
    MAJOR_FAILURE = 12


@dataclass(frozen=True)
class Node:
    """A DICOM application taking part in an event."""

    ae_title: str | None
    """-> AlternativeUserID ``AETITLES=...`` (A.5.2.2)."""
    address: str | None
    """IP address or host name -> NetworkAccessPointID (type 2 = IP, 1 = machine name)."""
    user_name: str | None = None
    """E.g. the peer certificate subject -> UserName."""
    process_id: int | None = None
    """-> UserID when given (A.5.2.1 asks for the process ID of a local application)."""

    def user_id(self) -> str:
        """UserID is mandatory: the process ID, else the AE title, else the address."""
        if self.process_id is not None:
            return str(self.process_id)
        return self.ae_title or self.address or "unknown"


@dataclass(frozen=True)
class StudyRef:
    """A study touched by a transfer: its UID and how many instances of each SOP class."""

    study_uid: str
    sop_classes: Mapping[str, int]


@dataclass(frozen=True)
class PatientRef:
    """The patient whose data moved (A.5.3: one patient per message)."""

    patient_id: str
    patient_name: str | None = None


@dataclass(frozen=True)
class AuditMessage:
    """One finished audit record, ready for any sink."""

    event: str
    """The EventID meaning, e.g. ``"Application Activity"``: for logs and counters."""
    xml: bytes
    """The UTF-8 AuditMessage document, one line, no XML declaration."""

    def __str__(self) -> str:
        return self.xml.decode("utf-8")


# --- codes (PS3.16 DCM terms used by PS3.15 A.5.3, and RFC 3881 ID type codes) -------------

Code = tuple[str, str, str]  # (csd-code, codeSystemName, originalText)

EV_APPLICATION_ACTIVITY: Code = ("110100", "DCM", "Application Activity")
EV_INSTANCES_TRANSFERRED: Code = ("110104", "DCM", "DICOM Instances Transferred")
EV_QUERY: Code = ("110112", "DCM", "Query")
EV_SECURITY_ALERT: Code = ("110113", "DCM", "Security Alert")

TYPE_APPLICATION_START: Code = ("110120", "DCM", "Application Start")
TYPE_APPLICATION_STOP: Code = ("110121", "DCM", "Application Stop")
TYPE_NODE_AUTHENTICATION: Code = ("110126", "DCM", "Node Authentication")
TYPE_USE_OF_RESTRICTED_FUNCTION: Code = ("110132", "DCM", "Use of Restricted Function")

ROLE_APPLICATION: Code = ("110150", "DCM", "Application")
ROLE_DESTINATION: Code = ("110152", "DCM", "Destination Role ID")
ROLE_SOURCE: Code = ("110153", "DCM", "Source Role ID")

ID_STUDY_INSTANCE_UID: Code = ("110180", "DCM", "Study Instance UID")
ID_SOP_CLASS_UID: Code = ("110181", "DCM", "SOP Class UID")
ID_NODE_ID: Code = ("110182", "DCM", "Node ID")
ID_PATIENT_NUMBER: Code = ("2", "RFC-3881", "Patient Number")

# AuditSourceTypeCode 4: "Application server process tier in a multi-tier system" (A.5.1.2.1).
AUDIT_SOURCE_APPLICATION_SERVER = "4"

# ParticipantObjectTypeCode / ParticipantObjectTypeCodeRole values (A.5.1 schema).
OBJECT_PERSON, OBJECT_SYSTEM = "1", "2"
ROLE_PATIENT, ROLE_REPORT, ROLE_SECURITY_RESOURCE = "1", "3", "13"


# --- helpers ---------------------------------------------------------------------------------


def _clean(value: str) -> str:
    """Text a peer may have chosen (an AE title, a certificate subject, a UID, an error that
    quotes one), escaped as it is everywhere else (:func:`dicomtls.text.printable`).

    XML 1.0 cannot carry most control characters at all, and a lone surrogate cannot even be
    encoded: one such character must neither make the record unparseable nor lose it. The
    escape keeps what it was visible (``\\x1b``) where U+FFFD would only say "something",
    and keeps a reviewer's viewer from acting on line breaks and bidi overrides.
    Base64 values (ParticipantObjectDetail, the query) carry the original bytes.
    """
    return printable(value)


def _now() -> str:
    """xs:dateTime in UTC with milliseconds, e.g. 2026-11-25T14:53:17.123Z (A.5.2.5)."""
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _code(parent: ET.Element, tag: str, code: Code) -> ET.Element:
    return ET.SubElement(
        parent, tag, {"csd-code": code[0], "codeSystemName": code[1], "originalText": code[2]}
    )


def _b64(data: bytes | str) -> str:
    # The text as it came; only a lone surrogate, which UTF-8 cannot encode, becomes \udXXX.
    raw = data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address.split("%", 1)[0])  # tolerate a scoped IPv6 zone
    except ValueError:
        return False
    return True


def _event(
    root: ET.Element,
    event_id: Code,
    action: str,
    outcome: Outcome,
    types: Sequence[Code] = (),
    description: str | None = None,
) -> None:
    ident = ET.SubElement(
        root,
        "EventIdentification",
        {
            "EventActionCode": action,
            "EventDateTime": _now(),
            "EventOutcomeIndicator": str(int(outcome)),
        },
    )
    _code(ident, "EventID", event_id)
    for type_code in types:
        _code(ident, "EventTypeCode", type_code)
    if description:
        ET.SubElement(ident, "EventOutcomeDescription").text = _clean(description)


def _participant(root: ET.Element, node: Node, *, requestor: bool, role: Code | None) -> None:
    attributes = {"UserID": _clean(node.user_id()), "UserIsRequestor": str(requestor).lower()}
    if node.ae_title:
        attributes["AlternativeUserID"] = _clean(f"AETITLES={node.ae_title}")
    if node.user_name:
        attributes["UserName"] = _clean(node.user_name)
    if node.address:
        attributes["NetworkAccessPointID"] = _clean(node.address)
        attributes["NetworkAccessPointTypeCode"] = "2" if _is_ip(node.address) else "1"
    element = ET.SubElement(root, "ActiveParticipant", attributes)
    if role is not None:
        _code(element, "RoleIDCode", role)


def _source(root: ET.Element, source_id: str) -> None:
    ident = ET.SubElement(root, "AuditSourceIdentification", {"AuditSourceID": _clean(source_id)})
    ET.SubElement(ident, "AuditSourceTypeCode", {"csd-code": AUDIT_SOURCE_APPLICATION_SERVER})


def _object(
    root: ET.Element,
    *,
    object_id: str,
    id_type: Code,
    type_code: str,
    role: str | None,
    name: str | None = None,
    query: bytes | None = None,
    details: Sequence[tuple[str, bytes | str]] = (),
) -> ET.Element:
    """A ParticipantObjectIdentification; the schema wants a name or a query, in that slot."""
    attributes = {"ParticipantObjectID": _clean(object_id), "ParticipantObjectTypeCode": type_code}
    if role is not None:
        attributes["ParticipantObjectTypeCodeRole"] = role
    element = ET.SubElement(root, "ParticipantObjectIdentification", attributes)
    _code(element, "ParticipantObjectIDTypeCode", id_type)
    if query is not None:
        ET.SubElement(element, "ParticipantObjectQuery").text = _b64(query)
    else:
        ET.SubElement(element, "ParticipantObjectName").text = _clean(name or object_id)
    for kind, value in details:
        ET.SubElement(element, "ParticipantObjectDetail", {"type": kind, "value": _b64(value)})
    return element


def _finish(event: str, root: ET.Element) -> AuditMessage:
    text = ET.tostring(root, encoding="unicode")
    # _clean leaves no line break in any text; this keeps the record on one line (the MSG
    # of one syslog record, one line of a file sink) even for a field added without it.
    text = text.replace("\r", "&#13;").replace("\n", "&#10;")
    return AuditMessage(event=event, xml=text.encode("utf-8"))


def _alert(
    *,
    event_type: Code,
    local: Node,
    peer: Node,
    reason: str,
    source_id: str,
    outcome: Outcome,
) -> AuditMessage:
    """Security Alert (A.5.3.11): reporter, performer, and the peer as the alert subject.

    The free text goes where the standard puts the nature of the alert: a
    ParticipantObjectDetail of type "Alert Description" on the alert subject (base64, like
    every ValuePair), and EventOutcomeDescription so a human reading the XML sees it at once.
    """
    root = ET.Element("AuditMessage")
    _event(root, EV_SECURITY_ALERT, "E", outcome, (event_type,), reason)
    # The reporting process, then the performing one (A.5.3.11: performers are never the
    # requestor of a security alert).
    _participant(root, local, requestor=True, role=None)
    _participant(root, peer, requestor=False, role=None)
    _source(root, source_id)
    subject = peer.address or peer.ae_title or peer.user_name or "unknown"
    _object(
        root,
        object_id=subject,
        id_type=ID_NODE_ID,
        type_code=OBJECT_SYSTEM,
        role=ROLE_SECURITY_RESOURCE,
        name=peer.user_name or peer.ae_title or subject,
        details=[("Alert Description", reason)],
    )
    return _finish(EV_SECURITY_ALERT[2], root)


# --- the builders -----------------------------------------------------------------------------


def application_activity(
    *, started: bool, application: Node, source_id: str, outcome: Outcome = Outcome.SUCCESS
) -> AuditMessage:
    """Application Activity (A.5.3.1): our node started or stopped."""
    root = ET.Element("AuditMessage")
    kind = TYPE_APPLICATION_START if started else TYPE_APPLICATION_STOP
    _event(root, EV_APPLICATION_ACTIVITY, "E", outcome, (kind,))
    _participant(root, application, requestor=False, role=ROLE_APPLICATION)
    _source(root, source_id)
    return _finish(EV_APPLICATION_ACTIVITY[2], root)


def node_authentication_failure(
    *,
    local: Node,
    peer: Node,
    reason: str,
    source_id: str,
    outcome: Outcome = Outcome.MINOR_FAILURE,
) -> AuditMessage:
    """Security Alert / Node Authentication (110113 / 110126): a TLS peer failed to authenticate.

    ``peer.user_name`` should carry the certificate subject when one was presented.
    """
    return _alert(
        event_type=TYPE_NODE_AUTHENTICATION,
        local=local,
        peer=peer,
        reason=reason,
        source_id=source_id,
        outcome=outcome,
    )


def association_rejected(*, local: Node, peer: Node, reason: str, source_id: str) -> AuditMessage:
    """Security Alert / Use of Restricted Function (110113 / 110132): policy refused an association.

    Why not Node Authentication (110126)? By the time access policy rejects an association
    the peer's node *has* authenticated (TLS succeeded, or TLS is not in use); what failed is
    authorization: an identified node asked for something (an AE, a service) that it is not
    allowed to use. A.5.3.11's event types (DCID 403) name exactly that case "Use of
    Restricted Function"; reporting it as a node authentication failure would mislead an
    auditor looking for bad certificates. Outcome is Minor failure: the mitigation worked.
    """
    return _alert(
        event_type=TYPE_USE_OF_RESTRICTED_FUNCTION,
        local=local,
        peer=peer,
        reason=reason,
        source_id=source_id,
        outcome=Outcome.MINOR_FAILURE,
    )


def instances_transferred(
    *,
    action: Literal["C", "R", "U"],
    source: Node,
    destination: Node,
    requestor_is_source: bool,
    studies: Sequence[StudyRef],
    patient: PatientRef | None,
    source_id: str,
    outcome: Outcome = Outcome.SUCCESS,
) -> AuditMessage:
    """DICOM Instances Transferred (110104), written when a transfer completes.

    ``action``: C = we received instances we did not hold (C-STORE SCP), R = read (we sent
    them, for C-MOVE/C-GET, or we do not know whether the receiver held them), U = the
    receiver updated copies it held.
    """
    if action not in ("C", "R", "U"):
        raise ValueError(f"action must be 'C', 'R' or 'U', not {action!r}")
    root = ET.Element("AuditMessage")
    _event(root, EV_INSTANCES_TRANSFERRED, action, outcome)
    _participant(root, source, requestor=requestor_is_source, role=ROLE_SOURCE)
    _participant(root, destination, requestor=not requestor_is_source, role=ROLE_DESTINATION)
    _source(root, source_id)
    for study in studies:
        element = _object(
            root,
            object_id=study.study_uid,
            id_type=ID_STUDY_INSTANCE_UID,
            type_code=OBJECT_SYSTEM,
            role=ROLE_REPORT,
        )
        if study.sop_classes:
            description = ET.SubElement(element, "ParticipantObjectDescription")
            for uid, count in study.sop_classes.items():
                ET.SubElement(
                    description,
                    "SOPClass",
                    {"UID": _clean(uid), "NumberOfInstances": str(int(count))},
                )
    if patient is not None:
        _object(
            root,
            object_id=patient.patient_id,
            id_type=ID_PATIENT_NUMBER,
            type_code=OBJECT_PERSON,
            role=ROLE_PATIENT,
            name=patient.patient_name or patient.patient_id,
        )
    return _finish(EV_INSTANCES_TRANSFERRED[2], root)


def query(
    *,
    requestor: Node,
    responder: Node,
    sop_class_uid: str,
    query: bytes,
    source_id: str,
    transfer_syntax: str = "1.2.840.10008.1.2",
    outcome: Outcome = Outcome.SUCCESS,
) -> AuditMessage:
    """Query (110112, A.5.3.10): a C-FIND was issued or received.

    The query data set goes in whole, base64, as ParticipantObjectQuery, with the transfer
    syntax it is encoded in as a ParticipantObjectDetail so a reviewer can decode it.
    """
    root = ET.Element("AuditMessage")
    _event(root, EV_QUERY, "E", outcome)
    _participant(root, requestor, requestor=True, role=ROLE_SOURCE)
    _participant(root, responder, requestor=False, role=ROLE_DESTINATION)
    _source(root, source_id)
    _object(
        root,
        object_id=sop_class_uid,
        id_type=ID_SOP_CLASS_UID,
        type_code=OBJECT_SYSTEM,
        role=ROLE_REPORT,
        query=query,
        details=[("TransferSyntax", transfer_syntax)],
    )
    return _finish(EV_QUERY[2], root)
