"""TLS cipher suites: IANA and OpenSSL names, code points, and what each one is made of.

The seed asks for the key exchange, authentication, encryption, integrity and key
length of the negotiated suite; OpenSSL only gives a name, so this table holds the
rest. It covers every suite a DICOM PS3.15 profile names, the TLS 1.3 suites, and
the common TLS 1.2 suites a scanner or ``doctor`` may meet (so it can call them
forbidden by name).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from dicomtls.errors import DicomTLSError

__all__ = [
    "CIPHER_SUITES",
    "CipherSuite",
    "UnknownCipherSuite",
    "cipher_from_openssl",
    "lookup_cipher",
]


class UnknownCipherSuite(DicomTLSError, ValueError):
    """A cipher suite name that is neither an IANA nor an OpenSSL name we know."""


@dataclass(frozen=True)
class CipherSuite:
    """One TLS cipher suite and its parts."""

    iana_name: str
    openssl_name: str
    code: int
    tls13: bool
    key_exchange: str
    """``ECDHE``, ``DHE``, ``RSA`` (key transport); ``any`` for TLS 1.3 (negotiated apart)."""
    authentication: str
    """``ECDSA``, ``RSA``; ``any`` for TLS 1.3 (the certificate decides)."""
    encryption: str
    encryption_bits: int
    integrity: str
    """``AEAD`` for GCM/CCM/Poly1305, else the HMAC hash (``SHA1``, ``SHA256``, ``SHA384``)."""

    @property
    def aead(self) -> bool:
        return self.integrity == "AEAD"

    @property
    def forward_secret(self) -> bool:
        return self.tls13 or self.key_exchange in ("ECDHE", "DHE")


def _tls13(iana: str, code: int, enc: str, bits: int) -> CipherSuite:
    return CipherSuite(iana, iana, code, True, "any", "any", enc, bits, "AEAD")


def _tls12(iana: str, openssl: str, code: int, enc: str, bits: int, mac: str) -> CipherSuite:
    head = iana.removeprefix("TLS_").split("_WITH_")[0]
    kx, _, auth = head.partition("_")
    return CipherSuite(iana, openssl, code, False, kx, auth or "RSA", enc, bits, mac)


def _tls12_table(table: str) -> tuple[CipherSuite, ...]:
    """One TLS 1.2 suite a line: IANA name, OpenSSL name, code point (hex), encryption,
    its key bits, integrity; a ``#`` line is a heading."""
    rows = (line.split() for line in table.splitlines() if line and not line.startswith("#"))
    return tuple(
        _tls12(iana, openssl, int(code, 16), enc, int(bits), mac)
        for iana, openssl, code, enc, bits, mac in rows
    )


_TLS12_SUITES = _tls12_table(
    """
#  IANA name                                   OpenSSL name                   code  encryption         bits  integrity
# ECDHE, AEAD
TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384        ECDHE-ECDSA-AES256-GCM-SHA384  C02C  AES-256-GCM        256  AEAD
TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384          ECDHE-RSA-AES256-GCM-SHA384    C030  AES-256-GCM        256  AEAD
TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256        ECDHE-ECDSA-AES128-GCM-SHA256  C02B  AES-128-GCM        128  AEAD
TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256          ECDHE-RSA-AES128-GCM-SHA256    C02F  AES-128-GCM        128  AEAD
TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256  ECDHE-ECDSA-CHACHA20-POLY1305  CCA9  CHACHA20-POLY1305  256  AEAD
TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256    ECDHE-RSA-CHACHA20-POLY1305    CCA8  CHACHA20-POLY1305  256  AEAD
TLS_ECDHE_ECDSA_WITH_AES_256_CCM               ECDHE-ECDSA-AES256-CCM         C0AD  AES-256-CCM        256  AEAD
TLS_ECDHE_ECDSA_WITH_AES_128_CCM               ECDHE-ECDSA-AES128-CCM         C0AC  AES-128-CCM        128  AEAD
TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8             ECDHE-ECDSA-AES256-CCM8        C0AF  AES-256-CCM-8      256  AEAD
TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8             ECDHE-ECDSA-AES128-CCM8        C0AE  AES-128-CCM-8      128  AEAD
# ECDHE, CBC
TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384        ECDHE-ECDSA-AES256-SHA384      C024  AES-256-CBC        256  SHA384
TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384          ECDHE-RSA-AES256-SHA384        C028  AES-256-CBC        256  SHA384
TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256        ECDHE-ECDSA-AES128-SHA256      C023  AES-128-CBC        128  SHA256
TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256          ECDHE-RSA-AES128-SHA256        C027  AES-128-CBC        128  SHA256
TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA           ECDHE-ECDSA-AES256-SHA         C00A  AES-256-CBC        256  SHA1
TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA             ECDHE-RSA-AES256-SHA           C014  AES-256-CBC        256  SHA1
TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA           ECDHE-ECDSA-AES128-SHA         C009  AES-128-CBC        128  SHA1
TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA             ECDHE-RSA-AES128-SHA           C013  AES-128-CBC        128  SHA1
# finite-field DHE
TLS_DHE_RSA_WITH_AES_256_GCM_SHA384            DHE-RSA-AES256-GCM-SHA384      009F  AES-256-GCM        256  AEAD
TLS_DHE_RSA_WITH_AES_128_GCM_SHA256            DHE-RSA-AES128-GCM-SHA256      009E  AES-128-GCM        128  AEAD
TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256      DHE-RSA-CHACHA20-POLY1305      CCAA  CHACHA20-POLY1305  256  AEAD
TLS_DHE_RSA_WITH_AES_256_CBC_SHA256            DHE-RSA-AES256-SHA256          006B  AES-256-CBC        256  SHA256
TLS_DHE_RSA_WITH_AES_128_CBC_SHA256            DHE-RSA-AES128-SHA256          0067  AES-128-CBC        128  SHA256
TLS_DHE_RSA_WITH_AES_256_CBC_SHA               DHE-RSA-AES256-SHA             0039  AES-256-CBC        256  SHA1
TLS_DHE_RSA_WITH_AES_128_CBC_SHA               DHE-RSA-AES128-SHA             0033  AES-128-CBC        128  SHA1
# RSA key transport: no forward secrecy
TLS_RSA_WITH_AES_256_GCM_SHA384                AES256-GCM-SHA384              009D  AES-256-GCM        256  AEAD
TLS_RSA_WITH_AES_128_GCM_SHA256                AES128-GCM-SHA256              009C  AES-128-GCM        128  AEAD
TLS_RSA_WITH_AES_256_CBC_SHA256                AES256-SHA256                  003D  AES-256-CBC        256  SHA256
TLS_RSA_WITH_AES_128_CBC_SHA256                AES128-SHA256                  003C  AES-128-CBC        128  SHA256
TLS_RSA_WITH_AES_256_CBC_SHA                   AES256-SHA                     0035  AES-256-CBC        256  SHA1
TLS_RSA_WITH_AES_128_CBC_SHA                   AES128-SHA                     002F  AES-128-CBC        128  SHA1
TLS_RSA_WITH_3DES_EDE_CBC_SHA                  DES-CBC3-SHA                   000A  3DES-EDE-CBC       112  SHA1
TLS_RSA_WITH_NULL_SHA                          NULL-SHA                       0002  NULL               0    SHA1
"""
)

CIPHER_SUITES: tuple[CipherSuite, ...] = (
    _tls13("TLS_AES_256_GCM_SHA384", 0x1302, "AES-256-GCM", 256),
    _tls13("TLS_CHACHA20_POLY1305_SHA256", 0x1303, "CHACHA20-POLY1305", 256),
    _tls13("TLS_AES_128_GCM_SHA256", 0x1301, "AES-128-GCM", 128),
    _tls13("TLS_AES_128_CCM_SHA256", 0x1304, "AES-128-CCM", 128),
    _tls13("TLS_AES_128_CCM_8_SHA256", 0x1305, "AES-128-CCM-8", 128),
    *_TLS12_SUITES,
)

_BY_NAME = {s.iana_name.upper(): s for s in CIPHER_SUITES}
_BY_NAME.update({s.openssl_name.upper(): s for s in CIPHER_SUITES})


def lookup_cipher(name: str) -> CipherSuite:
    """Find a suite by IANA or OpenSSL name, case-insensitively."""
    found = _BY_NAME.get(name.strip().upper())
    if found is not None:
        return found
    close = difflib.get_close_matches(name.strip().upper(), list(_BY_NAME), n=3, cutoff=0.6)
    suggestion = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownCipherSuite(f"unknown cipher suite {name!r}{suggestion}")


def cipher_from_openssl(name: str, protocol: str) -> CipherSuite | None:
    """The suite OpenSSL reports as negotiated (``get_cipher_name``), if we know it."""
    suite = _BY_NAME.get(name.upper())
    if suite is None:
        return None
    return suite if suite.tls13 == (protocol == "TLSv1.3") else None
