"""CertificateInfo against the real ``openssl`` command: names, dates, serial, and purposes."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID

from dicomtls.pki import CertificateAuthority, KeySpec
from dicomtls.tls.certinfo import PURPOSE_NAMES, CertificateInfo

from ..forged import with_serial


def _openssl_purposes(pem: bytes, tmp_path: Path) -> dict[str, bool]:
    path = tmp_path / "cert.pem"
    path.write_bytes(pem)
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-purpose", "-in", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        match = re.match(r"^(.+?) : (Yes|No)", line.strip())
        if match:
            rows[match.group(1)] = match.group(2) == "Yes"
    return rows


@pytest.fixture(scope="module")
def root() -> CertificateAuthority:
    return CertificateAuthority.create("Purpose Root")


def _cases(root: CertificateAuthority) -> dict[str, x509.Certificate]:
    return {
        "both": root.issue("both").certificate,
        "server-only": root.issue("srv", client=False).certificate,
        "client-only": root.issue("cli", server=False).certificate,
        "email": root.issue("mail", eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION]).certificate,
        "no-eku": root.issue("noeku", eku=[]).certificate,
        "timestamp": root.issue("ts", eku=[ExtendedKeyUsageOID.TIME_STAMPING]).certificate,
        "rsa": root.issue("rsa", key=KeySpec.rsa(2048)).certificate,
        "root": root.certificate,
        "intermediate": root.create_intermediate("inter").certificate,
    }


def test_purposes_match_openssl(root: CertificateAuthority, tmp_path: Path) -> None:
    for label, cert in _cases(root).items():
        info = CertificateInfo.from_certificate(cert)
        theirs = _openssl_purposes(cert.public_bytes(serialization.Encoding.PEM), tmp_path)
        ours = {p.name: p.ok for p in info.purposes}
        assert list(ours) == list(PURPOSE_NAMES)
        for name in PURPOSE_NAMES:
            assert ours[name] == theirs[name], f"{label}: {name}"


def test_dicom_purposes_of_a_node_certificate(root: CertificateAuthority) -> None:
    both = CertificateInfo.from_certificate(root.issue("node").certificate)
    assert both.has_client_auth and both.has_server_auth
    server_only = CertificateInfo.from_certificate(root.issue("s", client=False).certificate)
    assert server_only.has_server_auth and not server_only.has_client_auth


def test_fields_match_openssl(root: CertificateAuthority, tmp_path: Path) -> None:
    ident = root.issue("fields", dns=["pacs.example.org"], ips=["10.0.0.7"])
    info = CertificateInfo.from_certificate(ident.certificate, depth=0)
    path = tmp_path / "c.pem"
    path.write_bytes(ident.cert_pem())
    out = subprocess.run(
        [
            "openssl",
            "x509",
            "-noout",
            "-subject",
            "-issuer",
            "-serial",
            "-startdate",
            "-enddate",
            "-fingerprint",
            "-sha256",
            "-nameopt",
            "oneline",
            "-in",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert f"subject={info.subject}" in out
    assert f"issuer={info.issuer}" in out
    assert f"serial={info.serial_hex.replace(':', '').upper()}" in out
    text = str(info)
    start = re.search(r"notBefore=(.+)", out)
    assert start is not None and f"Valid From: {start.group(1)}" in text
    assert f"={info.sha256_fingerprint}" in out
    assert info.dns_names == ("pacs.example.org",) and info.ip_addresses == ("10.0.0.7",)
    assert info.key_description == "EC secp256r1 256 bits"
    assert info.extended_key_usage == ("serverAuth", "clientAuth")


def test_seed_certificate_string_layout(root: CertificateAuthority) -> None:
    info = CertificateInfo.from_certificate(root.issue("Test Client").certificate)
    lines = str(info).splitlines()
    assert lines[0].startswith("Subject Name: CN = Test Client")
    assert lines[1].startswith("Issuer Name: CN = Purpose Root")
    assert lines[2].startswith("Valid From: ") and lines[2].endswith(" GMT")
    assert lines[3].startswith("Valid To: ")
    assert re.fullmatch(r"Serial Number: [0-9a-f]{2}(:[0-9a-f]{2})*", lines[4])
    assert lines[5] == "Basic Constraints: Not a CA (Certificate Authority)"
    assert lines[6] == "Certificate purposes:"
    assert lines[7:24] == [str(p) for p in info.purposes]
    assert lines[7] == "SSL client : Yes"


def test_ca_and_names_with_commas() -> None:
    ca = CertificateAuthority.create("Root, Inc.", organization='LEAD "Technologies"')
    info = CertificateInfo.from_certificate(ca.certificate, depth=1)
    # As OpenSSL prints it: a comma quotes the value, a double quote only gets a backslash.
    assert info.subject == 'CN = "Root, Inc.", O = LEAD \\"Technologies\\"'
    assert info.is_ca and info.self_signed
    assert info.basic_constraints == "CA (Certificate Authority), unlimited path length"
    data = info.to_dict()
    assert data["depth"] == 1 and data["purposes"]["SSL client CA"] is True


def test_extensions_cryptography_cannot_read_are_marked_not_raised(
    root: CertificateAuthority,
) -> None:
    # OpenSSL verifies a subjectAltName with a five-byte IP address; cryptography refuses it.
    odd = x509.UnrecognizedExtension(
        x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, bytes.fromhex("300787050102030405")
    )
    key = KeySpec.ec().generate()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "odd")]))
        .issuer_name(root.certificate.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(root.certificate.not_valid_before_utc)
        .not_valid_after(root.certificate.not_valid_after_utc)
        .add_extension(odd, critical=False)
        .sign(root.identity.private_key, hashes.SHA256())
    )
    info = CertificateInfo.from_certificate(cert)
    assert info.extensions_error is not None and "IPv4 or IPv6" in info.extensions_error
    assert f"Extensions: unreadable ({info.extensions_error})" in str(info).splitlines()
    assert not any(p.ok for p in info.purposes)  # we cannot tell what OpenSSL would say
    assert info.dns_names == info.ip_addresses == ()
    assert info.to_dict()["extensions_error"] == info.extensions_error
    assert "Extensions:" not in str(CertificateInfo.from_certificate(root.certificate))


def test_a_negative_serial_is_shown_as_openssl_shows_it(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "n")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x12)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    # OpenSSL writes a serial beyond a long in hex, a negative one after "(Negative)".
    der = with_serial(cert, b"\xfe" + b"\x01" * 12, key)
    path = tmp_path / "negative.der"
    path.write_bytes(der)
    text = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-noout", "-text", "-in", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with pytest.warns(CryptographyDeprecationWarning):
        info = CertificateInfo.from_certificate(x509.load_der_x509_certificate(der))
    assert info.serial_number < 0
    assert info.serial_hex == "(Negative)01:fe:fe:fe:fe:fe:fe:fe:fe:fe:fe:fe:ff"
    assert info.serial_hex in text, text
