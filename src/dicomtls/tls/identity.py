"""Loading our own identity (certificate chain + private key) from PEM, DER or PKCS#12.

Everything that can be wrong with a key file is found here, when the settings
are built: a missing or wrong password, a key that belongs to another
certificate, a file that is neither PEM, DER nor PKCS#12. A handshake must
never be the first place such a mistake shows up.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from dicomtls.tls.certinfo import key_facts
from dicomtls.tls.errors import SettingsError
from dicomtls.tls.files import parse_certificates, read_file, unreadable

__all__ = ["Identity", "PasswordCallback", "PrivateKey", "load_identity"]

PasswordCallback = Callable[[Path], str | bytes]
"""Asked for the password of an encrypted key; receives the key file's path."""

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)

_PKCS12_SUFFIXES = {".p12", ".pfx"}
_SIGNING_KEYS = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
)


@dataclass(frozen=True)
class Identity:
    """Our certificate, the intermediates to send with it, and the matching key."""

    certificate: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    private_key: PrivateKey

    @functools.cached_property
    def key_facts(self) -> tuple[str, int, str | None]:
        """Our key's type, size and curve, as every session reports them."""
        return key_facts(self.certificate)


def _as_bytes(password: str | bytes | None) -> bytes | None:
    if password is None or isinstance(password, bytes):
        return password
    return password.encode("utf-8")


class _PasswordSource:
    """Asks the callback at most once, only when a key turns out to be encrypted."""

    def __init__(self, password: str | bytes | None, callback: PasswordCallback | None) -> None:
        self._password = _as_bytes(password)
        self._callback = callback

    def get(self, path: Path) -> bytes | None:
        if self._password is None and self._callback is not None:
            try:
                answer = self._callback(path)
            except Exception as exc:
                raise SettingsError(
                    f"private key password callback failed for {path}: {exc!r}"
                ) from exc
            self._password = _as_bytes(answer)
        return self._password


def _is_encrypted_pem(data: bytes) -> bool:
    return b"ENCRYPTED" in data.split(b"-----END", 1)[0] or b"Proc-Type: 4,ENCRYPTED" in data


def _checked_key(key: object, path: Path) -> PrivateKey:
    if not isinstance(key, _SIGNING_KEYS):
        raise SettingsError(f"{path}: {type(key).__name__} keys cannot sign a TLS handshake")
    return key


def _load_private_key(data: bytes, path: Path, passwords: _PasswordSource) -> PrivateKey:
    is_pem = b"-----BEGIN" in data
    password = passwords.get(path) if (not is_pem or _is_encrypted_pem(data)) else None
    loader = serialization.load_pem_private_key if is_pem else serialization.load_der_private_key
    try:
        key = loader(data, password=password)
    except TypeError as exc:
        # cryptography says TypeError for "encrypted but no password" and the reverse.
        if password is None:
            raise SettingsError(
                f"private key {path} is encrypted: give a password or on_private_key_password"
            ) from exc
        key = loader(data, password=None)
    except ValueError as exc:
        if password is not None and (not is_pem or _is_encrypted_pem(data)):
            raise SettingsError(f"wrong password for private key {path}") from exc
        said = unreadable(data, "a private key")
        raise SettingsError(f"{path} does not contain a readable private key: {said}") from exc
    return _checked_key(key, path)


def _public_der(key: object) -> bytes:
    public = key.public_key()  # type: ignore[attr-defined]
    der: bytes = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _load_pkcs12(data: bytes, path: Path, passwords: _PasswordSource) -> Identity:
    def attempt(password: bytes | None) -> pkcs12.PKCS12KeyAndCertificates:
        return pkcs12.load_pkcs12(data, password)

    try:
        bundle = attempt(None)
    except ValueError:
        password = passwords.get(path)
        if password is None:
            raise SettingsError(
                f"PKCS#12 file {path} is protected: give a password or on_private_key_password"
            ) from None
        try:
            bundle = attempt(password)
        except ValueError:
            raise SettingsError(f"wrong password for PKCS#12 file {path}") from None
    if bundle.cert is None or bundle.key is None:
        raise SettingsError(f"PKCS#12 file {path} must hold both a certificate and its private key")
    extra = tuple(c.certificate for c in bundle.additional_certs)
    return Identity(bundle.cert.certificate, extra, _checked_key(bundle.key, path))


def load_identity(
    certificate: Path,
    private_key: Path | None,
    *,
    password: str | bytes | None = None,
    on_private_key_password: PasswordCallback | None = None,
) -> Identity:
    """Load and cross-check a certificate chain and its private key.

    ``certificate`` is PEM (leaf first, then intermediates; may also hold the
    key), DER (the leaf alone), or PKCS#12 (``.p12``/``.pfx``, key included).
    """
    passwords = _PasswordSource(password, on_private_key_password)
    data = read_file(certificate, "certificate")
    if certificate.suffix.lower() in _PKCS12_SUFFIXES:
        identity = _load_pkcs12(data, certificate, passwords)
    else:
        certs = parse_certificates(data, certificate, "certificate")
        key_path = private_key if private_key is not None else certificate
        key_data = read_file(private_key, "private key") if private_key is not None else data
        if private_key is None and b"PRIVATE KEY-----" not in data:
            raise SettingsError(
                f"no private key given and {certificate} does not contain one: set private_key"
            )
        key = _load_private_key(key_data, key_path, passwords)
        identity = Identity(certs[0], tuple(certs[1:]), key)
    if _public_der(identity.private_key) != _public_der(identity.certificate):
        raise SettingsError(
            f"private key {private_key or certificate} does not match the certificate in "
            f"{certificate} (subject {identity.certificate.subject.rfc4514_string()})"
        )
    return identity
