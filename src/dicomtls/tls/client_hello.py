"""What a client offered in its ClientHello, for a server that found nothing in common with it.

"no shared cipher" is all OpenSSL says when an old modality meets a BCP 195 node, and the
node's administrator cannot see what the device offered. The ClientHello is in the first bytes
the node received, in the clear (RFC 8446 4.1.2, RFC 5246 7.4.1.2): its versions and cipher
suites, set beside our security profiles, say what the device can do and which profile, if
any, would take it. Every byte is the client's: the reader is bounded and gives up (None) on
anything malformed.
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomtls.tls.ciphers import CIPHER_SUITES, CipherSuite
from dicomtls.tls.profiles import DEFAULT_PROFILE, PROFILES, SecurityProfile, TLSVersion

__all__ = ["HELLO_MAX", "ClientHello", "offer_hint", "read_client_hello"]

HELLO_MAX = 16 * 1024 + 5
"""The bytes kept to read a ClientHello from: one full record (a hello spanning more is rare)."""

_VERSIONS: dict[int, TLSVersion | str] = {
    0x0300: "SSLv3",
    0x0301: TLSVersion.TLSv1,
    0x0302: TLSVersion.TLSv1_1,
    0x0303: TLSVersion.TLSv1_2,
    0x0304: TLSVersion.TLSv1_3,
}
_BY_CODE = {suite.code: suite for suite in CIPHER_SUITES}
_BY_NAME = {suite.iana_name: suite for suite in CIPHER_SUITES}
#: Signalling values, not suites: the renegotiation SCSV and the fallback SCSV.
_SIGNALS = {0x00FF, 0x5600}
_SUPPORTED_VERSIONS = 0x002B
_SHOWN = 8


class _Malformed(Exception):
    pass


class _Reader:
    """Bounded big-endian reads from a byte string; any overrun is malformed."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, count: int) -> bytes:
        if self.at + count > len(self.data):
            raise _Malformed
        piece = self.data[self.at : self.at + count]
        self.at += count
        return piece

    def number(self, width: int) -> int:
        return int.from_bytes(self.take(width), "big")

    def vector(self, length_width: int) -> bytes:
        return self.take(self.number(length_width))

    @property
    def left(self) -> int:
        return len(self.data) - self.at


@dataclass(frozen=True)
class ClientHello:
    """The TLS versions and cipher suites a client offered (code points, in its order)."""

    versions: tuple[int, ...]
    suites: tuple[int, ...]

    @property
    def tls_versions(self) -> tuple[TLSVersion, ...]:
        return tuple(
            v for code in self.versions if isinstance(v := _VERSIONS.get(code), TLSVersion)
        )

    def describe(self) -> str:
        """What it offered, in a sentence: versions, then suites by IANA name."""
        versions = ", ".join(_version_name(code) for code in self.versions) or "no version"
        names = [_suite_name(code) for code in self.suites if not _signal(code)]
        shown = ", ".join(names[:_SHOWN]) + (
            f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
        )
        return f"the client offered {versions} with {shown or 'no cipher suite'}"

    def profiles_that_accept(self) -> list[SecurityProfile]:
        """Our profiles that share a version and a suite with it (the default excluded)."""
        return [
            profile
            for name, profile in PROFILES.items()
            if name != DEFAULT_PROFILE and self.shared_suites(profile)
        ]

    def shared_suites(self, profile: SecurityProfile) -> list[CipherSuite]:
        """The suites it offered that ``profile`` allows under a version both take."""
        offered = set(self.suites)
        shared = []
        for version in set(self.tls_versions) & set(profile.versions):
            names = profile.tls13_suites if version is TLSVersion.TLSv1_3 else profile.tls12_suites
            shared += [_BY_NAME[name] for name in names if _BY_NAME[name].code in offered]
        return shared


def _signal(code: int) -> bool:
    """A signalling value or a GREASE value (RFC 8701: 0x?A?A), not a suite."""
    return code in _SIGNALS or (code & 0x0F0F == 0x0A0A and code >> 8 == code & 0xFF)


def _version_name(code: int) -> str:
    known = _VERSIONS.get(code, f"0x{code:04X}")
    return known.display_name if isinstance(known, TLSVersion) else known


def _suite_name(code: int) -> str:
    suite: CipherSuite | None = _BY_CODE.get(code)
    return suite.iana_name if suite is not None else f"0x{code:04X}"


def read_client_hello(data: bytes) -> ClientHello | None:
    """The ClientHello at the start of ``data`` (the first bytes a client sent), or None when
    there is none to read: not a TLS handshake record, cut short, or malformed."""
    try:
        return _client_hello(_handshake_message(data[:HELLO_MAX]))
    except _Malformed:
        return None


def _handshake_message(data: bytes) -> bytes:
    """The first handshake message, from the handshake records' fragments joined."""
    records = _Reader(data)
    joined = b""
    while records.left >= 5:
        content_type, _version, length = records.number(1), records.number(2), records.number(2)
        if content_type != 0x16:
            break
        joined += records.take(min(length, records.left))
    message = _Reader(joined)
    if message.number(1) != 0x01:  # ClientHello
        raise _Malformed
    return message.take(message.number(3))


def _client_hello(body: bytes) -> ClientHello:
    hello = _Reader(body)
    legacy_version = hello.number(2)
    hello.take(32)  # random
    hello.vector(1)  # session id
    suites_bytes = hello.vector(2)
    hello.vector(1)  # compression methods
    suites = tuple(
        int.from_bytes(suites_bytes[i : i + 2], "big") for i in range(0, len(suites_bytes) - 1, 2)
    )
    versions = _supported_versions(hello) if hello.left else ()
    return ClientHello(versions=versions or (legacy_version,), suites=suites)


def _supported_versions(hello: _Reader) -> tuple[int, ...]:
    """The supported_versions extension's list (TLS 1.3 clients), else empty."""
    extensions = _Reader(hello.vector(2))
    while extensions.left:
        kind, content = extensions.number(2), extensions.vector(2)
        if kind == _SUPPORTED_VERSIONS:
            listed = _Reader(content).vector(1)
            codes = (int.from_bytes(listed[i : i + 2], "big") for i in range(0, len(listed) - 1, 2))
            return tuple(code for code in codes if not _signal(code))
    return ()


def offer_hint(hello: ClientHello, our_key: str | None) -> str:
    """What a server's administrator can do about a client it shares nothing with; ``our_key``
    is our certificate's key type (``RSA``, ``EC``), since a suite signs with one of them."""
    profiles = hello.profiles_that_accept()
    if not profiles:
        return (
            "no DICOM TLS profile accepts what it offers: the device needs a TLS update "
            "(TLS 1.2 with ECDHE and AES-GCM, or TLS 1.3)"
        )
    named = ", ".join(f"{p.name} ({p.annex}{', retired' if p.retired else ''})" for p in profiles)
    hint = (
        f"the profiles {named} accept it: serve this device with --profile {profiles[0].name} "
        f"(a node of its own, say), or have the device updated to what {DEFAULT_PROFILE} takes"
    )
    signers = {suite.authentication for suite in hello.shared_suites(profiles[0])}
    if our_key is not None and our_key not in signers and "any" not in signers:
        needed = " or ".join(sorted("EC" if s == "ECDSA" else s for s in signers))
        hint += f"; those suites need an {needed} certificate, and ours is {our_key}"
    return hint
