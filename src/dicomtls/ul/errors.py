"""Upper-layer errors, split the h11 way: who broke the protocol decides what happens next.

A :class:`LocalProtocolError` means *we* misused the API (an AE title of 17
characters, an even presentation context ID): a bug to fix, nothing to send.
A :class:`RemoteProtocolError` means the *peer* sent something PS3.8 forbids;
:class:`PDUError` carries the A-ABORT reason PS3.8 9.3.8 wants us to answer
with, so the state machine (AA-8) never has to guess.
"""

from __future__ import annotations

from dicomtls.errors import DicomTLSError
from dicomtls.ul.codes import AbortReason

__all__ = [
    "LocalProtocolError",
    "PDUError",
    "ProtocolError",
    "RemoteProtocolError",
]


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
