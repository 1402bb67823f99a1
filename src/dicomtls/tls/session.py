"""What a completed handshake negotiated: the seed's cipher introspection, and more.

The seed asks for the key exchange, authentication, encryption and integrity
algorithms and the encryption and mutual-authentication key lengths. For
TLS 1.2 the suite name says all of that; for TLS 1.3 the key exchange group
and the signature key are negotiated apart from the suite, so we read them
from the connection and the certificates.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from OpenSSL import SSL, crypto
from OpenSSL._util import lib as _openssl_lib

from dicomtls.text import printable
from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.ciphers import CipherSuite, cipher_from_openssl
from dicomtls.tls.flags import Side
from dicomtls.tls.names import certificate_der_names
from dicomtls.tls.verify_error import VerifyError

if TYPE_CHECKING:
    from dicomtls.tls.engine import TLSEngine

__all__ = ["SessionInfo", "UnreadableCertificate", "session_info"]


@dataclass(frozen=True)
class UnreadableCertificate:
    """A certificate the peer sent that cryptography cannot load (version 4, say).

    The engine refuses such a certificate in the chain it verifies, so this is one the
    chain did not need, sent along anyway: shown by its names and why it is unreadable.
    """

    depth: int
    subject: str
    """OpenSSL's one-line form, as :attr:`CertificateInfo.subject`."""
    issuer: str
    sha256_fingerprint: str
    unreadable: str
    """Why it cannot be read."""

    @classmethod
    def of(cls, certificate: crypto.X509, depth: int, error: Exception) -> UnreadableCertificate:
        der = _der(certificate)
        subject, issuer = certificate_der_names(der)
        fingerprint = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
        reason = printable(f"cannot be read: {error}")
        return cls(depth, subject.openssl, issuer.openssl, fingerprint, reason)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _described(certificate: crypto.X509, depth: int) -> CertificateInfo | UnreadableCertificate:
    try:
        loaded = certificate.to_cryptography()
    except (ValueError, x509.InvalidVersion) as exc:
        return UnreadableCertificate.of(certificate, depth, exc)
    return CertificateInfo.from_certificate(loaded, depth)


@dataclass(frozen=True)
class SessionInfo:
    """The negotiated parameters of one secure link."""

    protocol: str
    """``TLSv1.2`` or ``TLSv1.3``."""
    cipher_openssl: str
    cipher_iana: str | None
    key_exchange: str
    """e.g. ``ECDHE (x25519)``: for TLS 1.3 the group negotiated separately."""
    authentication: str
    """The server's signature algorithm family: ``ECDSA``, ``RSA``, ``Ed25519``."""
    encryption: str
    encryption_bits: int
    integrity: str
    """``AEAD`` (GCM, Poly1305) or the HMAC hash for CBC suites."""
    peer_key_type: str | None
    peer_key_bits: int | None
    """The seed's "mutual authentication key length": the peer's certificate key size."""
    local_key_type: str | None
    local_key_bits: int | None
    peer_x509: tuple[crypto.X509, ...] = field(repr=False)
    """The chain the peer sent, leaf first, as OpenSSL holds it (converted when asked for)."""
    resumed: bool
    verify_result: VerifyError
    """Result of verifying the peer; not OK only when the flags let a failure pass."""
    server_name: str | None

    @functools.cached_property
    def peer_certificates(self) -> tuple[x509.Certificate, ...]:
        """The chain the peer sent, leaf first, but for any certificate cryptography cannot
        load; :attr:`peer_chain` describes each, those too."""
        return tuple(c.certificate for c in self.peer_chain if isinstance(c, CertificateInfo))

    @functools.cached_property
    def peer_chain(self) -> tuple[CertificateInfo | UnreadableCertificate, ...]:
        """Each certificate of the peer's chain as the verify callback shows it, made
        when first asked for: a busy server that never looks pays nothing for it."""
        if self.peer_certificate is None:
            return ()
        rest = self.peer_x509[1:]
        return (self.peer_certificate, *(_described(c, depth) for depth, c in enumerate(rest, 1)))

    @functools.cached_property
    def peer_certificate(self) -> CertificateInfo | None:
        """The peer's own certificate (what an access rule looks at), made when first asked
        for. The engine refuses one cryptography cannot load, so this one loads."""
        if not self.peer_x509:
            return None
        return CertificateInfo.from_certificate(self.peer_x509[0].to_cryptography(), 0)

    def summary(self) -> str:
        """One line, as a log or ``--verbose`` shows it."""
        peer_key = (
            f"{self.peer_key_type}-{self.peer_key_bits}" if self.peer_key_type else "no peer cert"
        )
        return (
            f"{self.protocol} {self.cipher_iana or self.cipher_openssl} "
            f"(kx {self.key_exchange}, auth {self.authentication}, enc {self.encryption} "
            f"{self.encryption_bits}-bit, integrity {self.integrity}, peer key {peer_key})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view for ``--json`` and audit records."""
        return {
            "protocol": self.protocol,
            "cipher": {"openssl": self.cipher_openssl, "iana": self.cipher_iana},
            "key_exchange": self.key_exchange,
            "authentication": self.authentication,
            "encryption": self.encryption,
            "encryption_bits": self.encryption_bits,
            "integrity": self.integrity,
            "peer_key": {"type": self.peer_key_type, "bits": self.peer_key_bits},
            "local_key": {"type": self.local_key_type, "bits": self.local_key_bits},
            "peer_chain": [c.to_dict() for c in self.peer_chain],
            "resumed": self.resumed,
            "verify_result": self.verify_result.to_dict(),
            "server_name": self.server_name,
        }


def _signature_family(key_type: str | None) -> str:
    return {"EC": "ECDSA", "RSA": "RSA", None: "none"}.get(key_type, key_type or "none")


def _peer_chain(conn: SSL.Connection) -> tuple[crypto.X509, ...]:
    """The chain the peer sent, leaf first, each certificate once.

    OpenSSL leaves the peer's own certificate out of the sent chain on the server
    side only, so the leaf is put back in front where it is missing. pyOpenSSL's
    X509 objects have no value equality (two wrappers of one certificate differ),
    so "missing" is decided on the DER encoding.
    """
    leaf = conn.get_peer_certificate()
    if leaf is None:
        return ()
    sent: list[crypto.X509] = conn.get_peer_cert_chain() or []
    if not sent or _der(sent[0]) != _der(leaf):
        sent = [leaf, *sent]
    return tuple(sent)


def _der(certificate: crypto.X509) -> bytes:
    return crypto.dump_certificate(crypto.FILETYPE_ASN1, certificate)


#: OpenSSL's key type NIDs, as key_facts names them.
_KEY_TYPES = {6: "RSA", 408: "EC", 116: "DSA", 1087: "Ed25519", 1088: "Ed448"}


def _key_facts(certificate: crypto.X509) -> tuple[str, int]:
    """The key's type and size, read by OpenSSL itself (no conversion of the certificate)."""
    key = certificate.get_pubkey()
    name = _KEY_TYPES.get(key.type(), f"NID {key.type()}")
    return name, 256 if name == "Ed25519" else key.bits()  # as CertificateInfo reports it


def _tls13_key_exchange(group: str | None) -> str:
    """TLS 1.3 negotiates the group apart from the suite; hybrids add ML-KEM to ECDHE."""
    if not group:
        return "ECDHE"
    if "MLKEM" in group.upper():
        return f"ECDHE+ML-KEM hybrid ({group})"
    if group.lower().startswith("ffdhe"):
        return f"DHE ({group})"
    return f"ECDHE ({group})"


def _server_name(conn: SSL.Connection, engine: TLSEngine) -> str | None:
    """The name the client asked for: ours as a client, the SNI it sent as a server."""
    if engine.side is Side.CLIENT:
        return engine.server_hostname
    name = conn.get_servername()
    return None if name is None else name.decode("idna")


def _group(conn: SSL.Connection) -> str | None:
    """The key exchange group, where this pyOpenSSL can tell (older releases cannot)."""
    return conn.get_group_name() if hasattr(conn, "get_group_name") else None


def _local_key(engine: TLSEngine) -> tuple[str | None, int | None]:
    identity = engine.settings.identity
    return (None, None) if identity is None else identity.key_facts[:2]


def _resumed(conn: SSL.Connection) -> bool:
    # pyOpenSSL has no public accessor for SSL_session_reused.
    return bool(_openssl_lib.SSL_session_reused(conn._ssl))


def _key_exchange_and_authentication(
    suite: CipherSuite | None, group: str | None, server_key: str | None
) -> tuple[str, str]:
    """A TLS 1.2 suite names both; TLS 1.3 negotiates the group and the server's
    signature apart from the suite."""
    if suite is not None and not suite.tls13:
        return suite.key_exchange + (f" ({group})" if group else ""), suite.authentication
    return _tls13_key_exchange(group), _signature_family(server_key)


def session_info(conn: SSL.Connection, engine: TLSEngine) -> SessionInfo:
    """Read the negotiated parameters from a connection whose handshake completed."""
    protocol = conn.get_protocol_version_name()
    name = conn.get_cipher_name() or ""
    suite = cipher_from_openssl(name, protocol)
    peer_chain = _peer_chain(conn)
    local_type, local_bits = _local_key(engine)
    peer_type, peer_bits = _key_facts(peer_chain[0]) if peer_chain else (None, None)
    client_with_peer = engine.side is Side.CLIENT and bool(peer_chain)
    key_exchange, authentication = _key_exchange_and_authentication(
        suite, _group(conn), server_key=peer_type if client_with_peer else local_type
    )
    failed = engine.first_rejected_call
    return SessionInfo(
        protocol=protocol,
        cipher_openssl=name,
        cipher_iana=None if suite is None else suite.iana_name,
        key_exchange=key_exchange,
        authentication=authentication,
        encryption=suite.encryption if suite is not None else name,
        encryption_bits=conn.get_cipher_bits() or 0,
        integrity=suite.integrity if suite is not None else "unknown",
        peer_key_type=peer_type,
        peer_key_bits=peer_bits,
        local_key_type=local_type,
        local_key_bits=local_bits,
        peer_x509=peer_chain,
        resumed=_resumed(conn),
        verify_result=VerifyError(0) if failed is None else failed.error,
        server_name=_server_name(conn, engine),
    )
