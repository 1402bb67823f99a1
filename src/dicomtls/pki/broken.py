"""Deliberately bad certificates, one per way a DICOM TLS peer can get it wrong.

Each kind makes OpenSSL fail verification with one specific code, so tests (and
people testing a peer) can check that the failure is detected and explained.
"""

from __future__ import annotations

import datetime as dt
import enum
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto

from dicomtls.pki.authority import CertificateAuthority, Credentials, KeySpec

__all__ = ["BrokenKind", "issue_broken"]


class BrokenKind(enum.StrEnum):
    """The kinds of broken certificate, with what each one gets wrong."""

    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    NO_PURPOSE = "no-purpose"
    SERVER_ONLY = "server-only"
    CLIENT_ONLY = "client-only"
    SELF_SIGNED = "self-signed"
    UNTRUSTED = "untrusted"
    WEAK_KEY = "weak-key"
    SHA1 = "sha1"
    WRONG_HOSTNAME = "wrong-hostname"
    REVOKED = "revoked"
    LONG_CHAIN = "long-chain"

    @property
    def description(self) -> str:
        """What is wrong with it, and the OpenSSL verify error that says so."""
        return _RECIPES[self].description


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _resign_sha1(ca: CertificateAuthority, identity: Credentials) -> Credentials:
    """Re-sign a certificate with SHA-1, which ``cryptography`` refuses to produce.

    pyOpenSSL's legacy signing API still can; it is only ever used for this test case.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy = crypto.X509.from_cryptography(identity.certificate)
        legacy.sign(crypto.PKey.from_cryptography_key(ca.identity.private_key), "sha1")
    return Credentials(legacy.to_cryptography(), identity.private_key, identity.intermediates)


def issue_broken(
    ca: CertificateAuthority, kind: object, common_name: str, *, key: KeySpec | None = None
) -> Credentials:
    """Issue a certificate of ``kind`` (a :class:`BrokenKind` or its value) from ``ca``."""
    try:
        broken = BrokenKind(str(kind))
    except ValueError:
        raise ValueError(
            f"unknown broken kind {kind!r}; choose one of: {', '.join(k.value for k in BrokenKind)}"
        ) from None
    return _RECIPES[broken].issue(ca, common_name, key)


def _local(
    issuer: CertificateAuthority, common_name: str, key: KeySpec | None, **options: Any
) -> Credentials:
    """A leaf for this machine (localhost, 127.0.0.1, ::1), where the tests dial their peers."""
    return issuer.issue(
        common_name, dns=["localhost"], ips=["127.0.0.1", "::1"], key=key, **options
    )


def _dated(
    ca: CertificateAuthority, common_name: str, key: KeySpec | None, *, starts: int, ends: int
) -> Credentials:
    """Valid from ``starts`` to ``ends`` days from now (negative: days ago)."""
    now = _now()
    return _local(
        ca,
        common_name,
        key,
        not_before=now + dt.timedelta(days=starts),
        not_after=now + dt.timedelta(days=ends),
    )


def _self_signed(_ca: CertificateAuthority, common_name: str, key: KeySpec | None) -> Credentials:
    """A leaf that names itself as issuer and signs itself: ``_ca`` has no part in it."""
    private_key = (key or KeySpec.ec()).generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(private_key, hashes.SHA256())
    )
    return Credentials(cert, private_key)


def _untrusted(_ca: CertificateAuthority, common_name: str, key: KeySpec | None) -> Credentials:
    """Issued by a root of its own, which ``_ca``'s peers do not know."""
    stranger = CertificateAuthority.create("dicomtls Untrusted Root CA")
    return _local(stranger, common_name, key)


def _weak_key(ca: CertificateAuthority, common_name: str, _key: KeySpec | None) -> Credentials:
    return _local(ca, common_name, KeySpec.rsa(1024))


def _sha1(ca: CertificateAuthority, common_name: str, key: KeySpec | None) -> Credentials:
    return _resign_sha1(ca, _local(ca, common_name, key))


def _wrong_hostname(ca: CertificateAuthority, common_name: str, key: KeySpec | None) -> Credentials:
    return ca.issue(common_name, dns=["wrong.example.invalid"], key=key)


def _long_chain(ca: CertificateAuthority, common_name: str, key: KeySpec | None) -> Credentials:
    issuer = ca
    for level in range(1, 4):
        issuer = issuer.create_intermediate(
            f"dicomtls Extra Intermediate {level}", path_length=None
        )
    return _local(issuer, common_name, key)


_Issue = Callable[[CertificateAuthority, str, KeySpec | None], Credentials]


@dataclass(frozen=True)
class _Recipe:
    description: str
    issue: _Issue


_RECIPES: dict[BrokenKind, _Recipe] = {
    BrokenKind.EXPIRED: _Recipe(
        "validity ended 30 days ago (CERT_HAS_EXPIRED)",
        partial(_dated, starts=-395, ends=-30),
    ),
    BrokenKind.NOT_YET_VALID: _Recipe(
        "validity starts in 30 days (CERT_NOT_YET_VALID)",
        partial(_dated, starts=30, ends=395),
    ),
    BrokenKind.NO_PURPOSE: _Recipe(
        "extendedKeyUsage emailProtection only: neither TLS client nor server (INVALID_PURPOSE)",
        partial(_local, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION]),
    ),
    BrokenKind.SERVER_ONLY: _Recipe(
        "extendedKeyUsage serverAuth only: fails as a client (INVALID_PURPOSE)",
        partial(_local, server=True, client=False),
    ),
    BrokenKind.CLIENT_ONLY: _Recipe(
        "extendedKeyUsage clientAuth only: fails as a server (INVALID_PURPOSE)",
        partial(_local, server=False, client=True),
    ),
    BrokenKind.SELF_SIGNED: _Recipe(
        "a self-signed leaf, not issued by the CA (DEPTH_ZERO_SELF_SIGNED_CERT)", _self_signed
    ),
    BrokenKind.UNTRUSTED: _Recipe(
        "issued by another root CA the peer does not trust (UNABLE_TO_GET_ISSUER_CERT_LOCALLY)",
        _untrusted,
    ),
    BrokenKind.WEAK_KEY: _Recipe(
        "an RSA-1024 key, below BCP 195's 2048 bits (EE_KEY_TOO_SMALL)", _weak_key
    ),
    BrokenKind.SHA1: _Recipe("signed with SHA-1 (CA_MD_TOO_WEAK)", _sha1),
    BrokenKind.WRONG_HOSTNAME: _Recipe(
        "subjectAltName names only wrong.example.invalid (HOSTNAME/IP_ADDRESS_MISMATCH)",
        _wrong_hostname,
    ),
    BrokenKind.REVOKED: _Recipe(
        "a good certificate, for the caller to list on the CA's CRL (CERT_REVOKED)", _local
    ),
    BrokenKind.LONG_CHAIN: _Recipe(
        "issued under 3 more intermediate CAs (CERT_CHAIN_TOO_LONG at a small verify depth)",
        _long_chain,
    ),
}
