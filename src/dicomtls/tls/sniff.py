"""Recognising a peer that does not speak TLS, from the first bytes it sends.

Without this a plain DICOM client on a TLS port is an opaque "wrong version
number", and a TLS client on a plain port shows up as "PDU too large:
369295617". A TLS record starts with content type 0x16 (handshake) or 0x15
(alert) followed by version 0x03 0x0N; a DICOM PDU starts with its type
(0x01..0x07) and a reserved zero byte (PS3.8 9.3).
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomtls.tls.flags import Side

__all__ = ["SNIFF_MAX", "NonTLS", "describe_non_tls", "looks_like_tls_client_hello", "undecided"]

PDU_NAMES = {
    0x01: "A-ASSOCIATE-RQ",
    0x02: "A-ASSOCIATE-AC",
    0x03: "A-ASSOCIATE-RJ",
    0x04: "P-DATA-TF",
    0x05: "A-RELEASE-RQ",
    0x06: "A-RELEASE-RP",
    0x07: "A-ABORT",
}

_HTTP_STARTS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"OPTIONS ", b"DELETE ", b"HTTP/")
#: A TLS record or a PDU is told by its first 3 bytes; an HTTP request by its method and space.
_SNIFF_MIN = 3
SNIFF_MAX = max(len(start) for start in _HTTP_STARTS)
"""The most bytes :func:`describe_non_tls` ever needs."""


def undecided(head: bytes) -> bool:
    """Too few of the peer's first bytes to tell what it speaks: wait for more.

    Three bytes tell a TLS record from a PDU; a head that may still grow into an HTTP
    method ("GET" before its space, "OPTIO") waits for the rest, up to :data:`SNIFF_MAX`.
    """
    if len(head) < _SNIFF_MIN:
        return True
    return any(start.startswith(head) and start != head for start in _HTTP_STARTS)


@dataclass(frozen=True)
class NonTLS:
    """What the peer seems to speak instead of TLS, and what to do about it."""

    protocol: str
    reason: str
    hint: str


def looks_like_tls_client_hello(head: bytes) -> bool:
    """A TLS handshake record (or an SSLv2-compatible hello) starts ``head``."""
    if len(head) >= 3 and head[0] == 0x16 and head[1] == 0x03:
        return True
    return _is_sslv2_hello(head)


def _is_tls_record(head: bytes) -> bool:
    return len(head) >= 2 and head[0] in (0x14, 0x15, 0x16, 0x17) and head[1] == 0x03


def _is_sslv2_hello(head: bytes) -> bool:
    """A two-byte record header with its top bit set, then message type 1 (CLIENT-HELLO)."""
    return len(head) >= 3 and head[0] & 0x80 != 0 and head[2] == 0x01


def _pdu_name(head: bytes) -> str | None:
    """The DICOM PDU ``head`` starts, if it starts one: its type, then a reserved zero."""
    if len(head) >= 2 and head[1] == 0x00:
        return PDU_NAMES.get(head[0])
    return None


_HTTP = NonTLS(
    "http",
    "peer speaks HTTP, not TLS",
    "this is a web client or server, not a DICOM TLS node: check the port number",
)
_SSLV2 = NonTLS(
    "sslv2",
    "peer sent an SSLv2-format hello",
    "the peer's TLS stack is obsolete; BCP 195 needs TLS 1.2 or newer",
)


def describe_non_tls(head: bytes, side: Side) -> NonTLS | None:
    """Return what the first bytes ``head`` from the peer are, unless they look like TLS."""
    if not head or _is_tls_record(head):
        return None
    pdu = _pdu_name(head)
    if pdu is not None:
        return _plain_dicom(pdu, side)
    if head.startswith(_HTTP_STARTS):
        return _HTTP
    if _is_sslv2_hello(head):
        return _SSLV2
    shown = " ".join(f"{b:02x}" for b in head[:8])
    return NonTLS(
        "unknown",
        f"peer sent data that is not TLS (first bytes {shown})",
        "check that both sides use TLS on this port",
    )


def _plain_dicom(pdu: str, side: Side) -> NonTLS:
    """A plain DICOM peer: a client on our TLS port, or a server answering our ClientHello."""
    if side is Side.SERVER:
        return NonTLS(
            "dicom",
            f"peer sent a plain DICOM {pdu} to a TLS port",
            "the peer must enable TLS for this port, or connect to our plain-DICOM port",
        )
    return NonTLS(
        "dicom",
        f"peer answered our TLS ClientHello with a plain DICOM {pdu}: "
        "this port speaks DICOM without TLS",
        "use the peer's TLS port (often 2762), or turn TLS off for this peer explicitly",
    )
