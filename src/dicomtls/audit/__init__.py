"""Security audit trail: DICOM audit messages (PS3.15 A.5) and their transport to syslog.

``messages`` builds the XML records; ``transport`` delivers them (file, syslog UDP per
PS3.15 A.7 / RFC 5426, syslog TLS per A.6 / RFC 5425) without ever blocking the caller.
"""

from .messages import (
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
from .transport import (
    AuditSink,
    AuditTrail,
    FileSink,
    SyslogTLSSink,
    SyslogUDPSink,
    parse_sink,
    syslog_frame,
)

__all__ = [
    "AuditMessage",
    "AuditSink",
    "AuditTrail",
    "FileSink",
    "Node",
    "Outcome",
    "PatientRef",
    "StudyRef",
    "SyslogTLSSink",
    "SyslogUDPSink",
    "application_activity",
    "association_rejected",
    "instances_transferred",
    "node_authentication_failure",
    "parse_sink",
    "query",
    "syslog_frame",
]
