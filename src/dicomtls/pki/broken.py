"""Deliberately bad certificates, one per way a DICOM TLS peer can get it wrong.

Each kind makes OpenSSL fail verification with one specific code, so tests (and
people testing a peer) can check that the failure is detected and explained.
"""

from __future__ import annotations

import datetime as dt
import enum
import warnings

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
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    BrokenKind.EXPIRED: "validity ended 30 days ago (CERT_HAS_EXPIRED)",
    BrokenKind.NOT_YET_VALID: "validity starts in 30 days (CERT_NOT_YET_VALID)",
    BrokenKind.NO_PURPOSE: "extendedKeyUsage emailProtection only: neither TLS client nor server (INVALID_PURPOSE)",
    BrokenKind.SERVER_ONLY: "extendedKeyUsage serverAuth only: fails as a client (INVALID_PURPOSE)",
    BrokenKind.CLIENT_ONLY: "extendedKeyUsage clientAuth only: fails as a server (INVALID_PURPOSE)",
    BrokenKind.SELF_SIGNED: "a self-signed leaf, not issued by the CA (DEPTH_ZERO_SELF_SIGNED_CERT)",
    BrokenKind.UNTRUSTED: "issued by another root CA the peer does not trust (UNABLE_TO_GET_ISSUER_CERT_LOCALLY)",
    BrokenKind.WEAK_KEY: "an RSA-1024 key, below BCP 195's 2048 bits (EE_KEY_TOO_SMALL)",
    BrokenKind.SHA1: "signed with SHA-1 (CA_MD_TOO_WEAK)",
    BrokenKind.WRONG_HOSTNAME: "subjectAltName names only wrong.example.invalid (HOSTNAME/IP_ADDRESS_MISMATCH)",
    BrokenKind.REVOKED: "a good certificate, for the caller to list on the CA's CRL (CERT_REVOKED)",
    BrokenKind.LONG_CHAIN: "issued under 3 more intermediate CAs (CERT_CHAIN_TOO_LONG at a small verify depth)",
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _self_signed_leaf(common_name: str, key: KeySpec | None) -> Credentials:
    # A one-off "CA" whose key is the leaf's own, and whose leaf names itself as issuer.
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
    now = _now()
    local = {"dns": ["localhost"], "ips": ["127.0.0.1", "::1"], "key": key}
    match broken:
        case BrokenKind.EXPIRED:
            return ca.issue(
                common_name,
                not_before=now - dt.timedelta(days=395),
                not_after=now - dt.timedelta(days=30),
                **local,  # type: ignore[arg-type]
            )
        case BrokenKind.NOT_YET_VALID:
            return ca.issue(
                common_name,
                not_before=now + dt.timedelta(days=30),
                not_after=now + dt.timedelta(days=395),
                **local,  # type: ignore[arg-type]
            )
        case BrokenKind.NO_PURPOSE:
            return ca.issue(common_name, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION], **local)  # type: ignore[arg-type]
        case BrokenKind.SERVER_ONLY:
            return ca.issue(common_name, server=True, client=False, **local)  # type: ignore[arg-type]
        case BrokenKind.CLIENT_ONLY:
            return ca.issue(common_name, server=False, client=True, **local)  # type: ignore[arg-type]
        case BrokenKind.SELF_SIGNED:
            return _self_signed_leaf(common_name, key)
        case BrokenKind.UNTRUSTED:
            stranger = CertificateAuthority.create("dicomtls Untrusted Root CA")
            return stranger.issue(common_name, **local)  # type: ignore[arg-type]
        case BrokenKind.WEAK_KEY:
            return ca.issue(
                common_name, dns=["localhost"], ips=["127.0.0.1", "::1"], key=KeySpec.rsa(1024)
            )
        case BrokenKind.SHA1:
            return _resign_sha1(ca, ca.issue(common_name, **local))  # type: ignore[arg-type]
        case BrokenKind.WRONG_HOSTNAME:
            return ca.issue(common_name, dns=["wrong.example.invalid"], key=key)
        case BrokenKind.REVOKED:
            return ca.issue(common_name, **local)  # type: ignore[arg-type]
        case BrokenKind.LONG_CHAIN:
            issuer = ca
            for level in range(1, 4):
                issuer = issuer.create_intermediate(
                    f"dicomtls Extra Intermediate {level}", path_length=None
                )
            return issuer.issue(common_name, **local)  # type: ignore[arg-type]
    raise AssertionError(broken)  # pragma: no cover
