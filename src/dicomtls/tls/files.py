"""Reading the certificate files that settings name, with errors that say which file and why."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from dicomtls.tls.errors import SettingsError

__all__ = ["parse_certificates", "read_file"]


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
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion: OpenSSL reads a v4
        raise SettingsError(f"{what} file {path} holds no readable certificate: {exc}") from None
