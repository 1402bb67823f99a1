"""What we trust: CA certificates (files and a directory) and certificate revocation lists.

We parse every file ourselves instead of handing paths to OpenSSL, so that a
typo, an empty bundle or a CRL in the wrong format is a clear error naming the
file when the settings are built, and a CA directory may hold ordinary
``*.pem`` files (OpenSSL's own ``capath`` wants hashed file names).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from dicomtls.tls.errors import SettingsError
from dicomtls.tls.files import parse_certificates, read_file, unreadable

__all__ = ["CRLScope", "TrustStore", "load_trust"]

_CERT_SUFFIXES = {".pem", ".crt", ".cer", ".der"}


class CRLScope(enum.StrEnum):
    """Which certificates of a chain are checked against the CRLs."""

    LEAF = "leaf"
    """Only the peer's own certificate (OpenSSL ``X509_V_FLAG_CRL_CHECK``)."""
    CHAIN = "chain"
    """Every certificate; each issuing CA then needs a CRL (``CRL_CHECK_ALL``)."""


@dataclass(frozen=True)
class TrustStore:
    """The parsed trust material, ready to go into an OpenSSL store."""

    ca_certificates: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...]


def _looks_like_ca_file(path: Path) -> bool:
    # OpenSSL's hashed names look like "1a2b3c4d.0"; accept them as well as ordinary suffixes.
    name = path.name
    hashed = len(name) >= 10 and name[8] == "." and name[9:].isdigit()
    return path.is_file() and (path.suffix.lower() in _CERT_SUFFIXES or hashed)


def _load_directory(directory: Path) -> list[x509.Certificate]:
    if not directory.is_dir():
        raise SettingsError(f"CA directory not found: {directory}")
    certs: list[x509.Certificate] = []
    for path in sorted(directory.iterdir()):
        if _looks_like_ca_file(path):
            certs.extend(parse_certificates(read_file(path, "CA"), path, "CA"))
    if not certs:
        raise SettingsError(f"CA directory {directory} holds no certificate files (*.pem, *.crt)")
    return certs


def _parse_crls(path: Path) -> list[x509.CertificateRevocationList]:
    """Every CRL of a PEM bundle, or the one of a DER file; a file without one is refused."""
    data = read_file(path, "CRL")
    try:
        if b"-----BEGIN" not in data:
            return [x509.load_der_x509_crl(data)]
        blocks = data.split(b"-----END X509 CRL-----")[:-1]
        if blocks:
            return [x509.load_pem_x509_crl(b + b"-----END X509 CRL-----\n") for b in blocks]
    except ValueError:
        pass
    said = unreadable(data, "a CRL")
    raise SettingsError(f"CRL file {path} is not a readable CRL: {said}")


def load_trust(
    ca_files: Iterable[Path], ca_directory: Path | None, crl_files: Iterable[Path]
) -> TrustStore:
    """Read every CA and CRL file, failing early with the file's name."""
    certs: list[x509.Certificate] = []
    for path in ca_files:
        certs.extend(parse_certificates(read_file(path, "CA"), path, "CA"))
    if ca_directory is not None:
        certs.extend(_load_directory(ca_directory))
    crls: list[x509.CertificateRevocationList] = []
    for path in crl_files:
        crls.extend(_parse_crls(path))
    return TrustStore(tuple(certs), tuple(crls))
