"""The root of every error dicomtls raises on purpose, and the one for an unreachable peer.

``except DicomTLSError`` catches whatever this toolkit reports (a refused handshake, a
rejected association, a bad setting, a file that is not DICOM) and nothing else: a bug
of ours still surfaces as the Python error it is. Each layer keeps its own classes
(:class:`~dicomtls.tls.errors.TLSHandshakeError`, :class:`~dicomtls.net.association.
AssociationError`, ...), all below this root. This module imports nothing, so every
layer can build on it without depending on another.
"""

from __future__ import annotations

__all__ = ["AssociationError", "ConnectError", "DicomTLSError"]


class DicomTLSError(Exception):
    """Base of every error dicomtls raises on purpose; the text says what and where."""


class ConnectError(DicomTLSError, ConnectionError):
    """The TCP connection to the peer could not be made (refused, unreachable, timed out).

    Distinct from a failed TLS handshake: nothing secure was attempted yet, so the fix is
    on the network or the peer's side (host, port, firewall, is it running).
    """

    def __init__(
        self,
        peer: str,
        reason: str,
        hint: str = "check host, port and firewall, and that the peer is running",
    ) -> None:
        super().__init__(f"cannot connect to {peer}: {reason}. Hint: {hint}")
        self.peer = peer
        self.reason = reason
        self.hint = hint


class AssociationError(DicomTLSError):
    """The association could not be made or ended abnormally; the text says why and with whom."""
