"""Reading the certificate files that settings name, with errors that say which file and why."""

from __future__ import annotations

import re
from pathlib import Path

from cryptography import x509

from dicomtls.tls.errors import SettingsError

__all__ = ["parse_certificates", "read_file", "unreadable"]


def read_file(path: Path, what: str) -> bytes:
    """The bytes of ``path``; ``what`` ("CA", "CRL", "private key") names it in errors."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SettingsError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise SettingsError(f"{what} file {path} is a directory, not a file") from None
    except OSError as exc:
        raise SettingsError(f"cannot read {what} file {path}: {exc.strerror}") from None


def parse_certificates(data: bytes, path: Path, what: str) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, or the one in a DER file."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except x509.InvalidVersion as exc:  # OpenSSL reads a v4
        raise SettingsError(f"{what} file {path} holds no readable certificate: {exc}") from None
    except ValueError:
        said = unreadable(data, "a certificate")
        raise SettingsError(f"{what} file {path} holds no readable certificate: {said}") from None


_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----")


def _kind(label: str) -> str:
    """A PEM block's label as a person names what it holds."""
    if label.endswith("PRIVATE KEY"):
        return "a private key"
    if label.endswith("CERTIFICATE REQUEST"):
        return "a certificate request"
    names = {"CERTIFICATE": "a certificate", "TRUSTED CERTIFICATE": "a certificate"}
    return names.get(label, {"X509 CRL": "a CRL", "PUBLIC KEY": "a public key"}.get(label, label))


def unreadable(data: bytes, wanted: str) -> str:
    """Why a file holds no readable ``wanted`` ("a certificate", "a CRL", "a private key"),
    in words: the parser's own message names ASN.1 tags, which tells a person nothing."""
    kinds = sorted({_kind(label.decode()) for label in _PEM_LABEL.findall(data)})
    if wanted in kinds:
        return f"its PEM {wanted[2:]} is damaged"
    if kinds:
        return f"it holds {' and '.join(kinds)}, not {wanted}"
    return f"it is not PEM, and not {wanted} in DER either"
