"""A small test PKI done right: CAs that issue DICOM node certificates with the right purposes.

DICOM nodes act as SCU and SCP, so leaves get extendedKeyUsage serverAuth and
clientAuth by default, subjectAltNames for how peers dial them, and a sane
validity. Keys are EC P-256 unless RSA is asked for (RSA generation is slow).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "CredentialFiles", "Credentials", "KeySpec", "PrivateKey"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9-]{1,63})*$"
)


@dataclass(frozen=True)
class KeySpec:
    """Which kind of key to generate."""

    kind: str = "ec"
    size: int = 256
    curve: str = "secp256r1"

    @classmethod
    def ec(cls, curve: str = "secp256r1") -> KeySpec:
        return cls("ec", 0, curve)

    @classmethod
    def rsa(cls, bits: int = 2048) -> KeySpec:
        return cls("rsa", bits, "")

    @classmethod
    def ed25519(cls) -> KeySpec:
        return cls("ed25519", 256, "")

    def generate(self) -> PrivateKey:
        if self.kind == "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=self.size)
        if self.kind == "ed25519":
            return ed25519.Ed25519PrivateKey.generate()
        curves = {
            "secp256r1": ec.SECP256R1(),
            "secp384r1": ec.SECP384R1(),
            "secp521r1": ec.SECP521R1(),
        }
        if self.curve not in curves:
            raise ValueError(f"unsupported curve {self.curve!r}; choose one of {', '.join(curves)}")
        return ec.generate_private_key(curves[self.curve])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _name(common_name: str, organization: str | None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _signing_hash(key: PrivateKey) -> hashes.SHA256 | None:
    """SHA-256 always (Ed25519 brings its own hash); the SHA-1 test case re-signs elsewhere."""
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write a file with exactly ``mode`` whatever the umask, from the moment it has data."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode & 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(fd, mode)
        handle.write(data)


def _write_private(path: Path, data: bytes) -> None:
    """A key file: readable by its owner only."""
    _write(path, data, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    """A certificate: anyone may read it, only its owner change it (never world-writable)."""
    _write(path, data, 0o644)


def _make_private_folder(folder: Path) -> None:
    """Create ``folder`` (and missing parents) 0700: it is for keys. An existing one stays."""
    missing = [p for p in (folder, *folder.parents) if not p.is_dir()]
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue  # made by someone else meanwhile: theirs
        os.chmod(path, 0o700)


def _encryption(password: bytes | None) -> serialization.KeySerializationEncryption:
    if password:
        return serialization.BestAvailableEncryption(password)
    return serialization.NoEncryption()


@dataclass(frozen=True)
class CredentialFiles:
    """Where :meth:`Credentials.write` put things."""

    cert: Path
    """The leaf certificate alone (PEM)."""
    chain: Path
    """The leaf followed by its intermediates (PEM): what a TLS peer should send."""
    key: Path
    """The private key (PKCS#8 PEM, mode 0600)."""


@dataclass(frozen=True)
class Credentials:
    """What a CA issued: a certificate, its private key, and the intermediates that chain it
    to a root (:class:`dicomtls.tls.identity.Identity` is the same, loaded for TLS)."""

    certificate: x509.Certificate
    private_key: PrivateKey = field(repr=False)
    intermediates: tuple[x509.Certificate, ...] = ()

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """Leaf first, then intermediates (never the root)."""
        return (self.certificate, *self.intermediates)

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def cert_chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def private_key_pem(self, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM, encrypted with the best available scheme when a password is given."""
        encryption = _encryption(password)
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def private_key_pem_traditional(self, password: bytes | None = None) -> bytes:
        """``BEGIN RSA/EC PRIVATE KEY``: what old tools (and some DCMTK builds) expect."""
        encryption = _encryption(password)
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, encryption
        )

    def private_key_der(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def pkcs12(self, password: bytes | None = None) -> bytes:
        encryption = _encryption(password)
        name = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        label = str(name[0].value).encode() if name else b"dicomtls"
        return pkcs12.serialize_key_and_certificates(
            label, self.private_key, self.certificate, list(self.intermediates) or None, encryption
        )

    def write(
        self, directory: Path, name: str | None = None, password: bytes | None = None
    ) -> CredentialFiles:
        """Write ``NAME.pem`` (leaf), ``NAME-chain.pem`` and ``NAME.key`` (0600) into ``directory``."""
        _make_private_folder(directory)
        if name is None:
            cn = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            name = str(cn[0].value) if cn else "identity"
        files = CredentialFiles(
            cert=directory / f"{name}.pem",
            chain=directory / f"{name}-chain.pem",
            key=directory / f"{name}.key",
        )
        _write_public(files.cert, self.cert_pem())
        _write_public(files.chain, self.cert_chain_pem())
        _write_private(files.key, self.private_key_pem(password))
        return files


class CertificateAuthority:
    """A CA that issues leaves and intermediate CAs, and signs CRLs."""

    def __init__(self, identity: Credentials, *, path_length: int | None) -> None:
        self.identity = identity
        self.path_length = path_length

    @property
    def certificate(self) -> x509.Certificate:
        return self.identity.certificate

    @classmethod
    def create(
        cls,
        common_name: str = "dicomtls Test Root CA",
        *,
        key: KeySpec | None = None,
        organization: str | None = "dicomtls test PKI",
        valid_days: int = 3650,
    ) -> CertificateAuthority:
        """A fresh self-signed root CA."""
        private_key = (key or KeySpec.ec()).generate()
        name = _name(common_name, organization)
        builder = _builder(name, name, private_key, None, _now() + dt.timedelta(days=valid_days))
        builder = _ca_extensions(builder, private_key, None, path_length=None)
        cert = builder.sign(private_key, _signing_hash(private_key))
        return cls(Credentials(cert, private_key), path_length=None)

    def _chain_for_children(self) -> tuple[x509.Certificate, ...]:
        """What a certificate issued by us sends along: us, unless we are the root."""
        if self.certificate.subject == self.certificate.issuer:
            return ()
        return self.identity.chain

    def create_intermediate(
        self,
        common_name: str,
        *,
        key: KeySpec | None = None,
        path_length: int | None = 0,
        organization: str | None = "dicomtls test PKI",
    ) -> CertificateAuthority:
        """An intermediate CA under this one (pathLenConstraint 0 by default)."""
        private_key = (key or KeySpec.ec()).generate()
        subject = _name(common_name, organization)
        not_after = _now() + dt.timedelta(days=1825)
        builder = _builder(subject, self.certificate.subject, private_key, None, not_after)
        builder = _ca_extensions(builder, private_key, self.identity.private_key, path_length)
        cert = builder.sign(self.identity.private_key, _signing_hash(self.identity.private_key))
        return CertificateAuthority(
            Credentials(cert, private_key, self._chain_for_children()), path_length=path_length
        )

    def issue(
        self,
        common_name: str,
        *,
        server: bool = True,
        client: bool = True,
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
        key: KeySpec | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        eku: Sequence[x509.ObjectIdentifier] | None = None,
        organization: str | None = "dicomtls test PKI",
    ) -> Credentials:
        """Issue a leaf certificate for a DICOM node.

        With no ``dns``/``ips``, a common name that looks like a host name becomes the
        DNS subjectAltName, so the certificate is usable by name at once. ``eku``
        overrides the purposes; an empty sequence leaves the extension out.
        """
        private_key = (key or KeySpec.ec()).generate()
        subject = _name(common_name, organization)
        not_after = not_after or _now() + dt.timedelta(days=365)
        builder = _builder(subject, self.certificate.subject, private_key, not_before, not_after)
        builder = _leaf_extensions(
            builder, private_key, self.identity.private_key, server, client, eku
        )
        names = _alt_names(common_name, dns, ips)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.identity.private_key, _signing_hash(self.identity.private_key))
        return Credentials(cert, private_key, self._chain_for_children())

    def issue_broken(
        self, kind: object, common_name: str, *, key: KeySpec | None = None
    ) -> Credentials:
        """A deliberately bad certificate for testing peers; see :class:`BrokenKind`."""
        from dicomtls.pki.broken import issue_broken

        return issue_broken(self, kind, common_name, key=key)

    def crl(
        self,
        revoked: Iterable[Credentials | x509.Certificate] = (),
        *,
        next_update: dt.timedelta = dt.timedelta(days=30),
    ) -> bytes:
        """A PEM CRL signed by this CA listing ``revoked``."""
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + next_update)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.identity.private_key.public_key()
                ),
                critical=False,
            )
            .add_extension(x509.CRLNumber(1), critical=False)
        )
        for item in revoked:
            cert = item.certificate if isinstance(item, Credentials) else item
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(cert.serial_number)
                .revocation_date(now - dt.timedelta(minutes=1))
                .build()
            )
        crl = builder.sign(self.identity.private_key, _signing_hash(self.identity.private_key))
        return crl.public_bytes(serialization.Encoding.PEM)

    def cert_pem(self) -> bytes:
        return self.identity.cert_pem()

    def write_cert(self, path: Path) -> Path:
        _make_private_folder(path.parent)
        _write_public(path, self.cert_pem())
        return path


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: PrivateKey,
    not_before: dt.datetime | None,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    """The common start of every certificate: names, key, a random serial, validity.

    Validity starts an hour back by default, so a peer whose clock runs a little
    behind does not see a brand-new certificate as not yet valid.
    """
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or _now() - dt.timedelta(hours=1))
        .not_valid_after(not_after)
    )


def _alt_names(common_name: str, dns: Sequence[str], ips: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    looks_like_host = bool(_HOSTNAME.match(common_name)) and "." in common_name
    if not names and (looks_like_host or common_name == "localhost"):
        names.append(x509.DNSName(common_name))
    return names


def _key_ids(
    builder: x509.CertificateBuilder, subject_key: PrivateKey, issuer_key: PrivateKey | None
) -> x509.CertificateBuilder:
    public = subject_key.public_key()
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(public), critical=False
    )
    issuer_public = (issuer_key or subject_key).public_key()
    return builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),
        critical=False,
    )


def _constraints(
    builder: x509.CertificateBuilder, *, ca: bool, path_length: int | None, rsa_key: bool
) -> x509.CertificateBuilder:
    """basicConstraints and keyUsage, both critical: every certificate signs (TLS handshakes,
    or certificates and CRLs for a CA); an RSA leaf may also encipher TLS 1.2 session keys."""
    return builder.add_extension(
        x509.BasicConstraints(ca=ca, path_length=path_length), critical=True
    ).add_extension(
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=rsa_key,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )


def _ca_extensions(
    builder: x509.CertificateBuilder,
    key: PrivateKey,
    issuer_key: PrivateKey | None,
    path_length: int | None,
) -> x509.CertificateBuilder:
    builder = _constraints(builder, ca=True, path_length=path_length, rsa_key=False)
    return _key_ids(builder, key, issuer_key)


def _leaf_extensions(
    builder: x509.CertificateBuilder,
    key: PrivateKey,
    issuer_key: PrivateKey,
    server: bool,
    client: bool,
    eku: Sequence[x509.ObjectIdentifier] | None,
) -> x509.CertificateBuilder:
    rsa_key = isinstance(key, rsa.RSAPrivateKey)
    builder = _constraints(builder, ca=False, path_length=None, rsa_key=rsa_key)
    if eku is None:
        eku = [
            *([ExtendedKeyUsageOID.SERVER_AUTH] if server else []),
            *([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []),
        ]
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return _key_ids(builder, key, issuer_key)
