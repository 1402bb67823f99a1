"""Errors of the secure link, each one able to say who failed, where, and why.

DCMTK logs "certificate verify failed" and cannot name the peer; a
:class:`TLSHandshakeError` always carries the peer address, our side, the stage
of the handshake, the first failing certificate with its verification code, the
TLS alert when the other side sent one, and a hint for the person reading it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from dicomtls.errors import DicomTLSError
from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.flags import Side
from dicomtls.tls.verify_error import VerifyError

__all__ = [
    "HandshakeStage",
    "SettingsError",
    "TLSError",
    "TLSHandshakeError",
    "alert_from_reason",
]


class TLSError(DicomTLSError):
    """Base of every error raised by the secure link."""


class SettingsError(TLSError, ValueError):
    """A TLS setting is wrong; raised when the settings are built, never at handshake time."""


class HandshakeStage(enum.StrEnum):
    """Where in the life of a secure connection a failure happened."""

    CONNECT = "connect"
    """The TCP connection could not be made."""
    HANDSHAKE = "handshake"
    """TLS negotiation itself failed (no common version or cipher suite, bad record)."""
    NOT_TLS = "not-tls"
    """The peer speaks something other than TLS on this connection (plain DICOM, HTTP)."""
    VERIFY = "verify"
    """We rejected the peer's certificate chain."""
    NO_PEER_CERTIFICATE = "no-peer-certificate"
    """We require a certificate and the peer sent none."""
    PEER_REJECTED = "peer-rejected"
    """The peer refused us and said so with a TLS alert."""
    CALLBACK = "callback"
    """Our own verify callback raised an exception."""
    TIMEOUT = "timeout"
    """The handshake did not finish within the handshake timeout."""
    CLOSED = "closed"
    """The peer closed the connection before the handshake finished."""


# TLS alert descriptions (RFC 8446 section 6), as OpenSSL's reason strings spell them.
_ALERTS = (
    "close_notify",
    "unexpected_message",
    "bad_record_mac",
    "record_overflow",
    "handshake_failure",
    "bad_certificate",
    "unsupported_certificate",
    "certificate_revoked",
    "certificate_expired",
    "certificate_unknown",
    "illegal_parameter",
    "unknown_ca",
    "access_denied",
    "decode_error",
    "decrypt_error",
    "protocol_version",
    "insufficient_security",
    "internal_error",
    "inappropriate_fallback",
    "user_canceled",
    "missing_extension",
    "unsupported_extension",
    "unrecognized_name",
    "bad_certificate_status_response",
    "unknown_psk_identity",
    "certificate_required",
    "no_application_protocol",
)

_ALERT_MEANING = {
    "unknown_ca": "the peer does not trust the CA that issued our certificate",
    "bad_certificate": "the peer found our certificate unacceptable",
    "unsupported_certificate": "the peer does not accept our certificate's type or purpose",
    "certificate_revoked": "the peer considers our certificate revoked",
    "certificate_expired": "the peer considers our certificate expired or not yet valid",
    "certificate_unknown": "the peer rejected our certificate for an unspecified reason",
    "certificate_required": "the peer requires a client certificate and we sent none",
    "handshake_failure": "the peer found no acceptable set of security parameters",
    "protocol_version": "the peer does not accept our TLS version",
    "insufficient_security": "the peer requires stronger cipher suites than we offered",
    "access_denied": "the peer refused access after verifying us",
    "decrypt_error": "a handshake signature or key check failed",
    "internal_error": (
        "the peer had an internal error, or its verify callback refused our certificate "
        "without naming an error (OpenSSL then sends internal_error)"
    ),
    "illegal_parameter": "the peer found a malformed handshake field",
}


def alert_from_reason(reason: str) -> str | None:
    """Extract the alert name from an OpenSSL reason such as ``tlsv1 alert unknown ca``."""
    text = reason.lower()
    if "alert" not in text:
        return None
    tail = text.split("alert", 1)[1].strip().replace(" ", "_")
    for alert in _ALERTS:
        if tail.startswith(alert):
            return alert
    return tail or None


def alert_meaning(alert: str) -> str:
    """A sentence for a TLS alert, so nobody has to look up RFC 8446."""
    return _ALERT_MEANING.get(alert, f"the peer sent TLS alert {alert}")


@dataclass(eq=False)
class TLSHandshakeError(TLSError):
    """A secure link could not be established: one object with everything needed to fix it."""

    peer: str
    """The peer's address, ``host:port``."""
    side: Side
    stage: HandshakeStage
    reason: str
    """What happened, in words."""
    certificate: CertificateInfo | None = None
    """The first certificate that failed verification, if that is why."""
    verify_error: VerifyError | None = None
    alert: str | None = None
    """The TLS alert the peer sent, e.g. ``unknown_ca``."""
    openssl_error: str | None = None
    hint: str | None = None
    accepted_issuers: tuple[str, ...] = ()
    """The CAs a server said it takes client certificates from, when it refused ours (or
    our lack of one) after naming them; at most 16."""
    our_issuer: str | None = None
    """The issuer of the certificate we presented, beside :attr:`accepted_issuers`."""

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [f"TLS handshake with {self.peer} failed ({self.side} side, stage {self.stage}): "]
        parts.append(self.reason)
        if self.certificate is not None and self.verify_error is not None:
            parts.append(
                f"; certificate '{self.certificate.readable_subject}' at depth "
                f"{self.certificate.depth}: {self.verify_error.name} ({self.verify_error.message})"
            )
        if self.issuers_note:
            parts.append(f"; {self.issuers_note}")
        if self.hint:
            parts.append(f". Hint: {self.hint}")
        return "".join(parts)

    @property
    def issuers_note(self) -> str | None:
        """The CAs the server takes beside ours, in a sentence, when it named any."""
        if not self.accepted_issuers:
            return None
        from dicomtls.tls.issuers import issuers_sentence

        return issuers_sentence(self.accepted_issuers, self.our_issuer, self.alert)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, for ``--json`` output and audit records."""
        return {
            "peer": self.peer,
            "side": str(self.side),
            "stage": str(self.stage),
            "reason": self.reason,
            "certificate": None if self.certificate is None else self.certificate.to_dict(),
            "verify_error": None if self.verify_error is None else self.verify_error.to_dict(),
            "alert": self.alert,
            "openssl_error": self.openssl_error,
            "hint": self.hint,
            "accepted_issuers": list(self.accepted_issuers),
            "our_issuer": self.our_issuer,
        }
