"""The root of every error dicomtls raises on purpose, and the ones for a peer we cannot reach
and an address we cannot listen on.

``except DicomTLSError`` catches whatever this toolkit reports (a refused handshake, a
rejected association, a bad setting, a file that is not DICOM) and nothing else: a bug
of ours still surfaces as the Python error it is. Each layer keeps its own classes
(:class:`~dicomtls.tls.errors.TLSHandshakeError`, :class:`~dicomtls.net.association.
AssociationError`, ...), all below this root. This module imports nothing of ours, so every
layer can build on it without depending on another.
"""

from __future__ import annotations

import errno

__all__ = ["AssociationError", "ConnectError", "DicomTLSError", "ListenError"]


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


#: Why a listening socket could not be bound, in words, and what to do (errno -> both).
_LISTEN_FIXES = {
    errno.EADDRINUSE: ("address already in use", "stop what listens there, or choose another port"),
    errno.EACCES: (
        "permission denied",
        "ports below 1024 need root or CAP_NET_BIND_SERVICE: choose one of 1024 or above",
    ),
    errno.EADDRNOTAVAIL: (
        "not an address of this machine",
        "give one of its addresses, or 0.0.0.0 for all",
    ),
}


class ListenError(DicomTLSError, OSError):
    """A server could not listen on its address: the port in use, a port below 1024 without
    the right to it, an address that is not this machine's. Still an ``OSError`` with the
    system's ``errno``, for code that caught that before."""

    def __init__(self, address: str, reason: OSError) -> None:
        said, hint = _LISTEN_FIXES.get(
            reason.errno or 0, (reason.strerror or str(reason), "check the host and port")
        )
        self.message = f"cannot listen on {address}: {said}. Hint: {hint}"
        super().__init__(reason.errno, self.message)
        self.address = address
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class AssociationError(DicomTLSError):
    """The association could not be made or ended abnormally; the text says why and with whom."""
