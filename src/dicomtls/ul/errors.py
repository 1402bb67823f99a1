"""Upper-layer errors, split the h11 way: who broke the protocol decides what happens next.

A :class:`LocalProtocolError` means *we* misused the API (an AE title of 17
characters, an even presentation context ID): a bug to fix, nothing to send.
A :class:`RemoteProtocolError` means the *peer* sent something PS3.8 forbids;
:class:`PDUError` carries the A-ABORT reason PS3.8 9.3.8 wants us to answer
with, so the state machine (AA-8) never has to guess.
"""

from __future__ import annotations

import enum

from dicomtls.errors import DicomTLSError

__all__ = [
    "AbortReason",
    "AbortSource",
    "LocalProtocolError",
    "PDUError",
    "ProtocolError",
    "RemoteProtocolError",
]


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


class ProtocolError(DicomTLSError):
    """Base of every upper-layer protocol error."""


class LocalProtocolError(ProtocolError, ValueError):
    """We asked for something PS3.8 does not allow; nothing was encoded or sent."""


class RemoteProtocolError(ProtocolError):
    """The peer broke PS3.8; the association cannot continue."""


class PDUError(RemoteProtocolError):
    """Bytes from the peer are not a valid PDU; ``reason`` is what to put in our A-ABORT."""

    def __init__(
        self, message: str, reason: AbortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE
    ) -> None:
        super().__init__(message)
        self.reason = reason

    def __repr__(self) -> str:
        return f"PDUError({self.args[0]!r}, reason=AbortReason.{self.reason.name})"
