"""The codes the upper layer puts in its fields, with the names the standard gives them.

One enum per field, each citing the table that defines it, so a reader looking up
"reason 6" finds it here, and the codecs (:mod:`~dicomtls.ul.pdu`,
:mod:`~dicomtls.ul.items`) and errors name every code they meet the standard's way.
"""

from __future__ import annotations

import enum

__all__ = [
    "AbortReason",
    "AbortSource",
    "ItemType",
    "PDUType",
    "PresentationResult",
    "RejectReason",
    "RejectReasonACSE",
    "RejectReasonPresentation",
    "RejectReasonServiceUser",
    "RejectResult",
    "RejectSource",
    "UserIdentityType",
]


# --- PDUs and items (PS3.8 9.3) ---------------------------------------------------------


class PDUType(enum.IntEnum):
    """PDU-type codes (PS3.8 9.3.1)."""

    ASSOCIATE_RQ = 0x01
    ASSOCIATE_AC = 0x02
    ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    RELEASE_RQ = 0x05
    RELEASE_RP = 0x06
    ABORT = 0x07

    @property
    def title(self) -> str:
        """The standard's spelling, for messages: A-ASSOCIATE-RQ, P-DATA-TF..."""
        spelled = self.name.replace("_", "-")
        return spelled if spelled.startswith("P-") else f"A-{spelled}"


class ItemType(enum.IntEnum):
    """Item and sub-item type codes (PS3.8 9.3.2-9.3.3, Annex D; PS3.7 D.3.3)."""

    APPLICATION_CONTEXT = 0x10
    PRESENTATION_CONTEXT_RQ = 0x20
    PRESENTATION_CONTEXT_AC = 0x21
    ABSTRACT_SYNTAX = 0x30
    TRANSFER_SYNTAX = 0x40
    USER_INFORMATION = 0x50
    MAXIMUM_LENGTH = 0x51
    IMPLEMENTATION_CLASS_UID = 0x52
    ASYNC_OPS_WINDOW = 0x53
    ROLE_SELECTION = 0x54
    IMPLEMENTATION_VERSION_NAME = 0x55
    EXTENDED_NEGOTIATION = 0x56
    COMMON_EXTENDED_NEGOTIATION = 0x57
    USER_IDENTITY_RQ = 0x58
    USER_IDENTITY_AC = 0x59


class PresentationResult(enum.IntEnum):
    """Result/reason of a presentation context in the A-ASSOCIATE-AC (PS3.8 Table 9-18)."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


class UserIdentityType(enum.IntEnum):
    """User-identity-type of sub-item 0x58 (PS3.7 Table D.3-14)."""

    USERNAME = 1
    USERNAME_AND_PASSCODE = 2
    KERBEROS = 3
    SAML = 4
    JWT = 5


# --- A-ASSOCIATE-RJ (PS3.8 9.3.4) and A-ABORT (PS3.8 9.3.8) -------------------------------


class RejectResult(enum.IntEnum):
    """A-ASSOCIATE-RJ result (PS3.8 Table 9-21)."""

    PERMANENT = 1
    TRANSIENT = 2


class RejectSource(enum.IntEnum):
    """A-ASSOCIATE-RJ source (PS3.8 Table 9-21)."""

    SERVICE_USER = 1
    SERVICE_PROVIDER_ACSE = 2
    SERVICE_PROVIDER_PRESENTATION = 3


class RejectReasonServiceUser(enum.IntEnum):
    """Reasons when the source is the service user; 4-6 and 8-10 are reserved."""

    NO_REASON_GIVEN = 1
    APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = 2
    CALLING_AE_NOT_RECOGNIZED = 3
    CALLED_AE_NOT_RECOGNIZED = 7


class RejectReasonACSE(enum.IntEnum):
    """Reasons when the source is the service provider's ACSE function."""

    NO_REASON_GIVEN = 1
    PROTOCOL_VERSION_NOT_SUPPORTED = 2


class RejectReasonPresentation(enum.IntEnum):
    """Reasons when the source is the service provider's presentation function."""

    TEMPORARY_CONGESTION = 1
    LOCAL_LIMIT_EXCEEDED = 2


RejectReason = RejectReasonServiceUser | RejectReasonACSE | RejectReasonPresentation

#: Which enum the reason field is read with, by source (PS3.8 Table 9-21).
REASONS_BY_SOURCE: dict[RejectSource, type[RejectReason]] = {
    RejectSource.SERVICE_USER: RejectReasonServiceUser,
    RejectSource.SERVICE_PROVIDER_ACSE: RejectReasonACSE,
    RejectSource.SERVICE_PROVIDER_PRESENTATION: RejectReasonPresentation,
}


class AbortSource(enum.IntEnum):
    """A-ABORT source field (PS3.8 Table 9-26); 1 is reserved."""

    SERVICE_USER = 0
    SERVICE_PROVIDER = 2


class AbortReason(enum.IntEnum):
    """A-ABORT reason/diag. field (PS3.8 Table 9-26), significant when the provider aborts."""

    REASON_NOT_SPECIFIED = 0
    UNRECOGNIZED_PDU = 1
    UNEXPECTED_PDU = 2
    UNRECOGNIZED_PDU_PARAMETER = 4
    UNEXPECTED_PDU_PARAMETER = 5
    INVALID_PDU_PARAMETER_VALUE = 6
