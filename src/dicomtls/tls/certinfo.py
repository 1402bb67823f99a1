"""Everything a person needs to see about one certificate, as the verify callback shows it.

``str(info)`` renders the seed SDK's certificate string (subject, issuer,
validity, serial, basic constraints, the certificate purposes table), one field
per line, followed by the facts that usually explain a failure: key type and
size, signature hash, subjectAltNames, key usages, fingerprint.

Subject and issuer are OpenSSL's one-line form byte for byte (what
``openssl x509 -nameopt oneline`` prints, see :mod:`dicomtls.tls.names`): every
byte beyond ASCII and every control character written as ``\\XX``, so
``CN = Z\\C3\\BCrich``. ``readable_subject`` and ``readable_issuer`` are the same
names with the characters that are safe to show written as themselves
(``CN = Zürich``), for people: the CLI and log lines use them, and
``info.text(readable=True)`` is the whole string in that form. The other fields
are escaped (:func:`dicomtls.text.printable`), so the string is safe to log or
print whatever the certificate holds.

The purposes table reproduces OpenSSL's ``X509_check_purpose`` rules
(crypto/x509/v3_purp.c), the same table ``openssl x509 -purpose`` prints, so
that "SSL client : No" here means exactly what makes OpenSSL answer
INVALID_PURPOSE during a handshake.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from dicomtls.text import printable
from dicomtls.tls.names import PrintedName, certificate_names

__all__ = ["PURPOSE_NAMES", "CertificateInfo", "Purpose", "key_facts", "subject_alt_names"]

PURPOSE_NAMES = (
    "SSL client",
    "SSL client CA",
    "SSL server",
    "SSL server CA",
    "Netscape SSL server",
    "Netscape SSL server CA",
    "S/MIME signing",
    "S/MIME signing CA",
    "S/MIME encryption",
    "S/MIME encryption CA",
    "CRL signing",
    "CRL signing CA",
    "Any Purpose",
    "Any Purpose CA",
    "OCSP helper",
    "OCSP helper CA",
    "Time Stamp signing",
)


@dataclass(frozen=True)
class Purpose:
    """One row of the purposes table: ``SSL client : Yes``."""

    name: str
    ok: bool

    def __str__(self) -> str:
        return f"{self.name} : {'Yes' if self.ok else 'No'}"


_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}
_SGC_OIDS = {"2.16.840.1.113730.4.1", "1.3.6.1.4.1.311.10.3.3"}  # Netscape / Microsoft SGC
_NS_CERT_TYPE = x509.ObjectIdentifier("2.16.840.1.113730.1.1")

_KU_FIELDS = (
    ("digital_signature", "digitalSignature"),
    ("content_commitment", "nonRepudiation"),
    ("key_encipherment", "keyEncipherment"),
    ("data_encipherment", "dataEncipherment"),
    ("key_agreement", "keyAgreement"),
    ("key_cert_sign", "keyCertSign"),
    ("crl_sign", "cRLSign"),
)

# Netscape certificate type bits, as OpenSSL numbers them.
_NS_SSL_CLIENT, _NS_SSL_SERVER, _NS_SMIME = 0x80, 0x40, 0x20
_NS_SSL_CA, _NS_SMIME_CA, _NS_ANY_CA = 0x04, 0x02, 0x07


def _openssl_date(when: dt.datetime) -> str:
    return f"{when:%b} {when.day:2d} {when:%H:%M:%S %Y} GMT"


def _extensions(cert: x509.Certificate) -> tuple[x509.Extensions, str | None]:
    """The certificate's extensions, or none and why not.

    cryptography refuses extensions OpenSSL reads and verifies (an IP address of five
    bytes, a DNS name beyond ASCII, bytes after a value), and the peer chooses its
    certificate: describing one must never raise, or the refusal of a hostile
    certificate becomes a crash that names the wrong cause.
    """
    try:
        return cert.extensions, None
    except (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        # TypeError: a directoryName whose CN is a BIT STRING, which cryptography's Name refuses.
        return x509.Extensions([]), printable(str(exc))


def _ext(extensions: x509.Extensions, kind: type[x509.ExtensionType]) -> Any:
    try:
        return extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None


def subject_alt_names(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    """The certificate's subjectAltName; empty when it has none or it cannot be read."""
    san = _ext(_extensions(cert)[0], x509.SubjectAlternativeName)
    return x509.SubjectAlternativeName([]) if san is None else san.value


@dataclass(frozen=True)
class _Facts:
    """The extension facts OpenSSL's purpose checks read (its ``ex_flags``)."""

    bcons: bool
    ca: bool
    ku: frozenset[str] | None
    xku: frozenset[str] | None
    xku_critical: bool
    nscert: int | None
    v1_root: bool


def _ns_cert_type(extensions: x509.Extensions) -> int | None:
    try:
        ext = extensions.get_extension_for_oid(_NS_CERT_TYPE)
    except x509.ExtensionNotFound:
        return None
    value = getattr(ext.value, "value", b"")
    # DER BIT STRING: 0x03, length, unused-bits, first content byte holds the flags.
    return value[3] if len(value) >= 4 else 0


def _facts(cert: x509.Certificate, extensions: x509.Extensions, self_signed: bool) -> _Facts:
    bc = _ext(extensions, x509.BasicConstraints)
    ku_ext = _ext(extensions, x509.KeyUsage)
    ku = None
    if ku_ext is not None:
        ku = frozenset(name for attr, name in _KU_FIELDS if getattr(ku_ext.value, attr))
    eku_ext = _ext(extensions, x509.ExtendedKeyUsage)
    xku = None
    if eku_ext is not None:
        xku = frozenset(
            "sgc" if oid.dotted_string in _SGC_OIDS else _EKU_NAMES.get(oid, oid.dotted_string)
            for oid in eku_ext.value
        )
    return _Facts(
        bcons=bc is not None,
        ca=bc is not None and bc.value.ca,
        ku=ku,
        xku=xku,
        xku_critical=eku_ext is not None and eku_ext.critical,
        nscert=_ns_cert_type(extensions),
        v1_root=cert.version is x509.Version.v1 and self_signed,
    )


def _ku_reject(f: _Facts, *usages: str) -> bool:
    return f.ku is not None and not f.ku.intersection(usages)


def _xku_reject(f: _Facts, *usages: str) -> bool:
    return f.xku is not None and not f.xku.intersection(usages)


def _ns_reject(f: _Facts, bits: int) -> bool:
    return f.nscert is not None and not f.nscert & bits


def _check_ca(f: _Facts) -> int:
    """OpenSSL's check_ca: 0 = not a CA; 1..5 = a CA, for increasingly doubtful reasons."""
    if _ku_reject(f, "keyCertSign"):
        return 0
    if f.bcons:
        return 1 if f.ca else 0
    if f.v1_root:
        return 3
    if f.ku is not None:
        return 4
    if f.nscert is not None and f.nscert & _NS_ANY_CA:
        return 5
    return 0


def _ssl_ca(f: _Facts) -> bool:
    ca = _check_ca(f)
    return ca != 0 and (ca != 5 or bool((f.nscert or 0) & _NS_SSL_CA))


def _ssl_client(f: _Facts, ca: bool) -> bool:
    if _xku_reject(f, "clientAuth"):
        return False
    if ca:
        return _ssl_ca(f)
    return not _ku_reject(f, "digitalSignature", "keyAgreement") and not _ns_reject(
        f, _NS_SSL_CLIENT
    )


def _ssl_server(f: _Facts, ca: bool) -> bool:
    if _xku_reject(f, "serverAuth", "sgc"):
        return False
    if ca:
        return _ssl_ca(f)
    if _ns_reject(f, _NS_SSL_SERVER):
        return False
    return not _ku_reject(f, "digitalSignature", "keyEncipherment", "keyAgreement")


def _ns_ssl_server(f: _Facts, ca: bool) -> bool:
    ok = _ssl_server(f, ca)
    return ok and (ca or not _ku_reject(f, "keyEncipherment"))


def _smime(f: _Facts, ca: bool) -> bool:
    if _xku_reject(f, "emailProtection"):
        return False
    if ca:
        ca_ret = _check_ca(f)
        return ca_ret != 0 and (ca_ret != 5 or bool((f.nscert or 0) & _NS_SMIME_CA))
    if f.nscert is not None:
        return bool(f.nscert & (_NS_SMIME | _NS_SSL_CLIENT))
    return True


def _smime_sign(f: _Facts, ca: bool) -> bool:
    ok = _smime(f, ca)
    return ok and (ca or not _ku_reject(f, "digitalSignature", "nonRepudiation"))


def _smime_encrypt(f: _Facts, ca: bool) -> bool:
    ok = _smime(f, ca)
    return ok and (ca or not _ku_reject(f, "keyEncipherment"))


def _crl_sign(f: _Facts, ca: bool) -> bool:
    if ca:
        ca_ret = _check_ca(f)
        return ca_ret not in (0, 2)
    return not _ku_reject(f, "cRLSign")


def _timestamp_sign(f: _Facts) -> bool:
    signing = {"digitalSignature", "nonRepudiation"}
    if f.ku is not None and (f.ku - signing or not f.ku & signing):
        return False
    return f.xku == frozenset({"timeStamping"}) and f.xku_critical


def _purposes(f: _Facts, *, readable: bool) -> tuple[Purpose, ...]:
    if not readable:  # what OpenSSL would answer depends on extensions we could not read
        return tuple(Purpose(name, False) for name in PURPOSE_NAMES)
    checks = (
        _ssl_client(f, False),
        _ssl_client(f, True),
        _ssl_server(f, False),
        _ssl_server(f, True),
        _ns_ssl_server(f, False),
        _ns_ssl_server(f, True),
        _smime_sign(f, False),
        _smime_sign(f, True),
        _smime_encrypt(f, False),
        _smime_encrypt(f, True),
        _crl_sign(f, False),
        _crl_sign(f, True),
        True,  # Any Purpose: OpenSSL checks nothing
        True,  # Any Purpose CA
        True,  # OCSP helper: the leaf is checked later, by OCSP_verify
        _check_ca(f) != 0,  # OCSP helper CA
        _timestamp_sign(f),
    )
    return tuple(Purpose(name, ok) for name, ok in zip(PURPOSE_NAMES, checks, strict=True))


def key_facts(cert: x509.Certificate) -> tuple[str, int, str | None]:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):  # a peer's key type cryptography cannot load
        return "unreadable", 0, None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size, key.curve.name
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, None
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456, None
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, None
    return type(key).__name__, 0, None


def _is_self_signed(cert: x509.Certificate, subject: PrintedName, issuer: PrintedName) -> bool:
    try:
        same_name = cert.subject == cert.issuer
    except (ValueError, TypeError):
        # A name cryptography cannot decode (a T61String in Latin-1, a CN that is a BIT
        # STRING): OpenSSL can, and so can we.
        same_name = subject == issuer
    if not same_name:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, Exception):
        return False
    return True


def _signature_hash(cert: x509.Certificate) -> str | None:
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:
        return None
    return None if algorithm is None else algorithm.name


@dataclass(frozen=True)
class CertificateInfo:
    """One certificate of a peer's chain, at ``depth`` (0 = the peer's own)."""

    depth: int
    subject: str
    """OpenSSL's one-line form, byte for byte: ``CN = Z\\C3\\BCrich, O = "Acme, Inc."``."""
    issuer: str
    readable_subject: str
    """The subject with the characters safe to show as themselves: ``CN = Zürich, ...``."""
    readable_issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    serial_number: int
    is_ca: bool
    path_length: int | None
    has_basic_constraints: bool
    key_type: str
    key_bits: int
    key_curve: str | None
    signature_hash: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    uris: tuple[str, ...]
    emails: tuple[str, ...]
    key_usage: tuple[str, ...] | None
    extended_key_usage: tuple[str, ...] | None
    sha256_fingerprint: str
    self_signed: bool
    purposes: tuple[Purpose, ...]
    extensions_error: str | None
    """Why the extensions could not be read (None: they could). Then the certificate shows
    no subjectAltName, usages or constraints, and no purpose says Yes."""
    certificate: x509.Certificate = field(repr=False, compare=False, hash=False)

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, depth: int = 0) -> CertificateInfo:
        subject, issuer = certificate_names(cert)
        self_signed = _is_self_signed(cert, subject, issuer)
        extensions, extensions_error = _extensions(cert)
        facts = _facts(cert, extensions, self_signed)
        bc = _ext(extensions, x509.BasicConstraints)
        san = _ext(extensions, x509.SubjectAlternativeName)
        san_value = san.value if san is not None else x509.SubjectAlternativeName([])
        eku = _ext(extensions, x509.ExtendedKeyUsage)
        key_type, key_bits, curve = key_facts(cert)
        digest = cert.fingerprint(hashes.SHA256())
        return cls(
            depth=depth,
            subject=subject.openssl,
            issuer=issuer.openssl,
            readable_subject=subject.readable,
            readable_issuer=issuer.readable,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            serial_number=cert.serial_number,
            is_ca=facts.ca,
            path_length=None if bc is None else bc.value.path_length,
            has_basic_constraints=bc is not None,
            key_type=key_type,
            key_bits=key_bits,
            key_curve=curve,
            signature_hash=_signature_hash(cert),
            dns_names=tuple(san_value.get_values_for_type(x509.DNSName)),
            ip_addresses=tuple(str(a) for a in san_value.get_values_for_type(x509.IPAddress)),
            uris=tuple(san_value.get_values_for_type(x509.UniformResourceIdentifier)),
            emails=tuple(san_value.get_values_for_type(x509.RFC822Name)),
            key_usage=None
            if facts.ku is None
            else tuple(name for _, name in _KU_FIELDS if name in facts.ku),
            extended_key_usage=None
            if eku is None
            else tuple(_EKU_NAMES.get(oid, oid.dotted_string) for oid in eku.value),
            sha256_fingerprint=":".join(f"{b:02X}" for b in digest),
            self_signed=self_signed,
            purposes=_purposes(facts, readable=extensions_error is None),
            extensions_error=extensions_error,
            certificate=cert,
        )

    @property
    def serial_hex(self) -> str:
        """The serial as OpenSSL and the seed show it: ``ae:8a:75:37:56:03:c4:45``, and a
        negative one (which RFC 5280 forbids, and OpenSSL reads) as ``(Negative)01:00``."""
        raw = f"{abs(self.serial_number):x}"
        raw = raw if len(raw) % 2 == 0 else "0" + raw
        sign = "(Negative)" if self.serial_number < 0 else ""
        return sign + ":".join(raw[i : i + 2] for i in range(0, len(raw), 2))

    @property
    def basic_constraints(self) -> str:
        if not self.is_ca:
            suffix = "" if self.has_basic_constraints else " (no basicConstraints extension)"
            return "Not a CA (Certificate Authority)" + suffix
        if self.path_length is None:
            return "CA (Certificate Authority), unlimited path length"
        return f"CA (Certificate Authority), path length {self.path_length}"

    def purpose(self, name: str) -> bool:
        """Whether the purposes table says Yes for ``name`` (e.g. ``"SSL client"``)."""
        for row in self.purposes:
            if row.name == name:
                return row.ok
        raise KeyError(f"unknown purpose {name!r}; known: {', '.join(PURPOSE_NAMES)}")

    @property
    def has_client_auth(self) -> bool:
        return self.purpose("SSL client")

    @property
    def has_server_auth(self) -> bool:
        return self.purpose("SSL server")

    @property
    def key_description(self) -> str:
        curve = f" {self.key_curve}" if self.key_curve else ""
        return f"{self.key_type}{curve} {self.key_bits} bits"

    def __str__(self) -> str:
        return self.text()

    def text(self, *, readable: bool = False) -> str:
        """The certificate string: the seed's fields, then ours, one per line.

        ``readable=True`` shows subject and issuer in their readable form, for a person.
        """
        subject, issuer = (
            (self.readable_subject, self.readable_issuer)
            if readable
            else (self.subject, self.issuer)
        )
        lines = [
            f"Subject Name: {subject}",
            f"Issuer Name: {issuer}",
            f"Valid From: {_openssl_date(self.not_before)}",
            f"Valid To: {_openssl_date(self.not_after)}",
            f"Serial Number: {self.serial_hex}",
            f"Basic Constraints: {self.basic_constraints}",
            *(
                [f"Extensions: unreadable ({self.extensions_error})"]
                if self.extensions_error
                else []
            ),
            "Certificate purposes:",
            *(str(p) for p in self.purposes),
            f"Key: {self.key_description}",
            f"Signature Hash: {self.signature_hash or 'none (signature scheme has its own)'}",
            f"Subject Alternative Names: {', '.join(self._alt_names()) or 'none'}",
            f"Key Usage: {_listed(self.key_usage)}",
            f"Extended Key Usage: {_listed(self.extended_key_usage)}",
            f"SHA-256 Fingerprint: {self.sha256_fingerprint}",
        ]
        # The names come escaped already; the other fields are the issuer's (or an
        # attacker's) choice too: one field stays one line, whatever it holds.
        return "\n".join(printable(line) for line in lines)

    def _alt_names(self) -> list[str]:
        """The subjectAltName entries as OpenSSL prints them: ``DNS:pacs``, ``IP:10.0.0.5``."""
        return [
            *(f"DNS:{n}" for n in self.dns_names),
            *(f"IP:{a}" for a in self.ip_addresses),
            *(f"URI:{u}" for u in self.uris),
            *(f"email:{e}" for e in self.emails),
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view, for ``--json`` output, audit records and ``doctor``."""
        return {
            "depth": self.depth,
            "subject": self.subject,
            "issuer": self.issuer,
            "readable_subject": self.readable_subject,
            "readable_issuer": self.readable_issuer,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "serial": self.serial_hex,
            "basic_constraints": self.basic_constraints,
            "is_ca": self.is_ca,
            "key": {"type": self.key_type, "bits": self.key_bits, "curve": self.key_curve},
            "signature_hash": self.signature_hash,
            "subject_alt_names": {
                "dns": list(self.dns_names),
                "ip": list(self.ip_addresses),
                "uri": list(self.uris),
                "email": list(self.emails),
            },
            "key_usage": None if self.key_usage is None else list(self.key_usage),
            "extended_key_usage": (
                None if self.extended_key_usage is None else list(self.extended_key_usage)
            ),
            "sha256_fingerprint": self.sha256_fingerprint,
            "self_signed": self.self_signed,
            "purposes": {p.name: p.ok for p in self.purposes},
            "extensions_error": self.extensions_error,
        }


def _listed(values: tuple[str, ...] | None) -> str:
    """An extension's values, comma-separated; ``absent`` when it has none."""
    return ", ".join(values) if values else "absent"
