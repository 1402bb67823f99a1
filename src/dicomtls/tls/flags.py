"""The four verification flags and what each means on either side of a connection.

The values are the seed SDK's (and OpenSSL's ``SSL_VERIFY_*``) so that a number
read from another product's configuration means the same thing here.

================  =============================================  ===========================
flag              server mode                                    client mode
================  =============================================  ===========================
NONE              no certificate request; the client sends none  the server certificate is
                                                                 verified and reported, but a
                                                                 failure does not end the link
PEER              a certificate is requested; if one is sent     the server certificate is
                  it is verified and a failure ends the link     verified; a failure ends it
FAIL_IF_NO_PEER…  (with PEER) no certificate also ends the link  ignored
CLIENT_ONCE       (with PEER) request only on the first          ignored
                  handshake, never on renegotiation
================  =============================================  ===========================
"""

from __future__ import annotations

import enum

__all__ = ["Side", "VerifyFlags", "parse_verify_flags", "validate_verify_flags"]


class Side(enum.StrEnum):
    """Which end of the TLS connection we are: it changes what the flags mean."""

    CLIENT = "client"
    SERVER = "server"


class VerifyFlags(enum.IntFlag):
    """Certificate verification mode, combinable with ``|``."""

    NONE = 0x00
    PEER = 0x01
    FAIL_IF_NO_PEER_CERT = 0x02
    CLIENT_ONCE = 0x04

    @property
    def label(self) -> str:
        """The CLI spelling, e.g. ``peer,fail-if-no-peer-cert``."""
        if self == VerifyFlags.NONE:
            return "none"
        return ",".join(
            (member.name or "").lower().replace("_", "-") for member in VerifyFlags if member & self
        )

    def requests_client_certificate(self) -> bool:
        """Server mode: whether a CertificateRequest is sent at all."""
        return VerifyFlags.PEER in self

    def requires_client_certificate(self) -> bool:
        """Server mode: whether a client without a certificate is refused."""
        return VerifyFlags.FAIL_IF_NO_PEER_CERT in self

    def failure_ends_connection(self) -> bool:
        """Whether a failed verification terminates the handshake (either side).

        In client mode NONE still verifies the server, but only reports the result.
        """
        return VerifyFlags.PEER in self

    def describe(self, side: Side) -> str:
        """What these flags do on ``side``, in words (for logs and ``doctor``)."""
        if side is Side.CLIENT:
            if VerifyFlags.PEER in self:
                return "the server certificate is verified; a failure ends the connection"
            return "the server certificate is verified and reported; a failure does NOT end it"
        if VerifyFlags.PEER not in self:
            return "no client certificate is requested"
        if VerifyFlags.FAIL_IF_NO_PEER_CERT in self:
            return "a client certificate is required and verified"
        return "a client certificate is requested; if one is sent it is verified"

    def for_side(self, side: Side) -> VerifyFlags:
        """The flags that take effect on ``side``; the server-only ones drop in client mode."""
        if side is Side.CLIENT:
            return self & VerifyFlags.PEER
        return self


_ALL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT | VerifyFlags.CLIENT_ONCE


def validate_verify_flags(value: int) -> VerifyFlags:
    """Return ``value`` as VerifyFlags, refusing the combinations the seed forbids.

    NONE combines with nothing (it is zero, so any other bit means "not NONE");
    FAIL_IF_NO_PEER_CERT and CLIENT_ONCE only make sense together with PEER.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"verify flags must be VerifyFlags, not {type(value).__name__}")
    if value & ~int(_ALL):
        raise ValueError(
            f"verify flags 0x{value:02x} contain unknown bits (known: 0x01, 0x02, 0x04)"
        )
    flags = VerifyFlags(value)
    dependent = flags & (VerifyFlags.FAIL_IF_NO_PEER_CERT | VerifyFlags.CLIENT_ONCE)
    if dependent and VerifyFlags.PEER not in flags:
        names = " | ".join(m.name or "" for m in VerifyFlags if m and m in dependent)
        raise ValueError(f"verify flag {names} must be combined with PEER (got {flags.label})")
    return flags


def parse_verify_flags(text: str) -> VerifyFlags:
    """Parse the CLI spelling: a comma list of ``peer``, ``fail-if-no-peer-cert``,
    ``client-once``, or ``none`` on its own."""
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    if not words:
        raise ValueError("verify flags: empty; use 'none' or a comma list such as 'peer'")
    if "none" in words:
        if len(words) > 1:
            raise ValueError("verify flag 'none' cannot be combined with other flags")
        return VerifyFlags.NONE
    flags = VerifyFlags.NONE
    for word in words:
        key = word.replace("-", "_").upper()
        try:
            flags |= VerifyFlags[key]
        except KeyError:
            known = "peer, fail-if-no-peer-cert, client-once, none"
            raise ValueError(f"unknown verify flag {word!r} (known: {known})") from None
    return validate_verify_flags(flags)
