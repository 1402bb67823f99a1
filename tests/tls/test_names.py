"""Subject and issuer byte for byte as OpenSSL prints them, and their readable twin.

The reference is the ``openssl`` command itself: ``-nameopt oneline`` (the seed's form)
for ``CertificateInfo.subject``/``issuer`` and ``str(info)``, and ``-nameopt
oneline,-esc_msb`` (the same without escaping bytes above 0x7F) for the readable form,
which differs from it only where :func:`dicomtls.text.printable` finds a character unsafe.
Certificates are made with cryptography, in every string type it writes; two that
cryptography cannot write (or read) are made by patching a certificate's DER.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from dicomtls.cli.render import session_table, verify_printer
from dicomtls.pki import CertificateAuthority, KeySpec
from dicomtls.text import printable
from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.errors import HandshakeStage
from dicomtls.tls.flags import VerifyFlags
from dicomtls.tls.names import subject_values
from dicomtls.tls.settings import TLSSettings

from ..conftest import MatrixPKI
from .loopback import Recorder, handshake

_KEY = ec.generate_private_key(ec.SECP256R1())
A = x509.NameAttribute
CN, ORG, OU, L = (
    NameOID.COMMON_NAME,
    NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.LOCALITY_NAME,
)


def _certificate(subject: x509.Name, issuer: x509.Name | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer if issuer is not None else subject)
        .public_key(_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    return builder.sign(_KEY, hashes.SHA256())


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _openssl(der: bytes, nameopt: str = "oneline") -> tuple[bytes, bytes]:
    """(subject, issuer) exactly as ``openssl x509 -nameopt NAMEOPT`` prints them."""
    out = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-noout", "-subject", "-issuer", "-nameopt", nameopt],
        input=der,
        check=True,
        capture_output=True,
    ).stdout
    subject, issuer = out.split(b"\n")[:2]
    return subject.removeprefix(b"subject="), issuer.removeprefix(b"issuer=")


def _readable_from_openssl(unescaped: bytes) -> str:
    """OpenSSL's output without ESC_MSB, with the characters printable() finds unsafe
    written back as OpenSSL escapes them (each UTF-8 byte as ``\\XX``)."""
    return "".join(
        c if ord(c) < 0x80 or printable(c) == c else "".join(f"\\{b:02X}" for b in c.encode())
        for c in unescaped.decode("utf-8")
    )


def _assert_like_openssl(cert: x509.Certificate | bytes) -> CertificateInfo:
    der = cert if isinstance(cert, bytes) else _der(cert)
    info = CertificateInfo.from_certificate(x509.load_der_x509_certificate(der))
    subject, issuer = _openssl(der)
    assert info.subject.encode() == subject
    assert info.issuer.encode() == issuer
    readable_subject, readable_issuer = _openssl(der, "oneline,-esc_msb")
    assert info.readable_subject == _readable_from_openssl(readable_subject)
    assert info.readable_issuer == _readable_from_openssl(readable_issuer)
    lines = str(info).splitlines()
    assert lines[0].encode() == b"Subject Name: " + subject
    assert lines[1].encode() == b"Issuer Name: " + issuer
    return info


# -- the acceptance case, and the seed's own example ---------------------------------------------


def test_non_ascii_is_escaped_as_openssl_does() -> None:
    info = _assert_like_openssl(_certificate(x509.Name([A(CN, "Zürich")])))
    assert info.subject == "CN = Z\\C3\\BCrich"
    assert info.readable_subject == "CN = Zürich"
    assert "Subject Name: CN = Z\\C3\\BCrich" in str(info).splitlines()
    assert "Subject Name: CN = Zürich" in info.text(readable=True).splitlines()
    assert info.to_dict()["subject"] == "CN = Z\\C3\\BCrich"
    assert info.to_dict()["readable_subject"] == "CN = Zürich"


def test_the_seed_example_issuer() -> None:
    """The seed's sample string: OpenSSL quotes a value holding a comma."""
    issuer = x509.Name(
        [
            A(CN, "LEAD CA"),
            A(L, "Charlotte"),
            A(NameOID.STATE_OR_PROVINCE_NAME, "North Carolina"),
            A(NameOID.COUNTRY_NAME, "US"),
            A(NameOID.EMAIL_ADDRESS, "ca@example.com"),
            A(ORG, "LEAD Technologies, Inc."),
        ]
    )
    subject = x509.Name([A(CN, "Test Client"), A(NameOID.COUNTRY_NAME, "US")])
    info = _assert_like_openssl(_certificate(subject, issuer))
    assert info.issuer == (
        "CN = LEAD CA, L = Charlotte, ST = North Carolina, C = US, "
        'emailAddress = ca@example.com, O = "LEAD Technologies, Inc."'
    )


# -- every kind of value, against the openssl command ----------------------------------------------

_CASES: dict[str, list[x509.NameAttribute[str | bytes]]] = {
    "utf8-cjk": [A(CN, "山田^太郎")],
    "utf8-astral": [A(CN, "PACS 😀")],
    "bmp": [A(CN, "Zürich 山田", _ASN1Type.BMPString)],
    # cryptography writes a T61String as UTF-8; OpenSSL reads it as Latin-1, byte by byte.
    "t61": [A(CN, "Zürich", _ASN1Type.T61String)],
    "universal": [A(CN, "a😀b", _ASN1Type.UniversalString)],
    "printable": [A(CN, "Test Client", _ASN1Type.PrintableString)],
    "ia5": [A(NameOID.EMAIL_ADDRESS, "pacs@example.org")],
    "controls": [A(CN, "a\x00b\x01c\nd\re\tf\x1bg\x7fh")],
    "c1-bidi-separator": [A(CN, "a\x85b\u202ec\u2028d\u200fe")],
    "nbsp-latin1": [A(CN, "a\xa0b\xffc")],
    "comma": [A(ORG, "Acme, Inc.")],
    "plus": [A(CN, "a+b")],
    "quotes-only": [A(ORG, 'LEAD "Technologies"')],
    "quotes-and-comma": [A(ORG, '"Root", Inc.')],
    "backslash": [A(CN, "ORIGINAL\\PRIMARY")],
    "lt-gt-semicolon": [A(CN, "<a>;b")],
    "equals-and-inner-hash": [A(CN, "a=b#c")],
    "leading-space": [A(CN, " lead")],
    "trailing-space": [A(CN, "trail ")],
    "single-space": [A(CN, " ")],
    "inner-spaces": [A(CN, "a  b")],
    "leading-hash": [A(CN, "#1")],
    "single-hash": [A(CN, "#")],
    "trailing-hash": [A(CN, "1#")],
    "unknown-oid": [A(x509.ObjectIdentifier("1.2.3.4.5"), "value")],
    "oid-longer-than-openssls-buffer": [
        A(x509.ObjectIdentifier("1.2." + ".".join(["123456789"] * 12)), "v")
    ],
    "bit-string": [A(NameOID.X500_UNIQUE_IDENTIFIER, b"\x00\xa5", _ASN1Type.BitString)],
    "known-names": [
        A(NameOID.DOMAIN_COMPONENT, "example"),
        A(NameOID.ORGANIZATION_IDENTIFIER, "VATDE-123"),
        A(NameOID.JURISDICTION_COUNTRY_NAME, "DE"),
        A(NameOID.SERIAL_NUMBER, "42"),
        A(NameOID.GIVEN_NAME, "Ada"),
        A(NameOID.SURNAME, "Lovelace"),
        A(NameOID.TITLE, "Dr"),
        A(NameOID.STREET_ADDRESS, "1 Main St"),
        A(NameOID.POSTAL_CODE, "8001"),
        A(NameOID.BUSINESS_CATEGORY, "Private Organization"),
        A(NameOID.USER_ID, "u1"),
    ],
}


@pytest.mark.parametrize("attributes", list(_CASES.values()), ids=list(_CASES))
def test_value_printed_as_openssl_prints_it(
    attributes: list[x509.NameAttribute[str | bytes]],
) -> None:
    issuer = x509.Name([A(CN, "Issuer, é")])
    _assert_like_openssl(_certificate(x509.Name(attributes), issuer))


def test_multi_valued_rdn_and_an_empty_subject() -> None:
    subject = x509.Name(
        [
            x509.RelativeDistinguishedName([A(CN, "a"), A(NameOID.USER_ID, "b")]),
            x509.RelativeDistinguishedName([A(NameOID.COUNTRY_NAME, "DE")]),
        ]
    )
    info = _assert_like_openssl(_certificate(subject))
    assert info.subject == "CN = a + UID = b, C = DE"
    empty = _assert_like_openssl(_certificate(x509.Name([]), x509.Name([A(CN, "i")])))
    assert empty.subject == ""


def test_special_characters_in_their_exact_form() -> None:
    """What each rule of the one-line form gives, spelled out."""
    expected = {
        "controls": "CN = a\\00b\\01c\\0Ad\\0De\\09f\\1Bg\\7Fh",
        "quotes-only": 'O = LEAD \\"Technologies\\"',  # escaped, not quoted
        "quotes-and-comma": 'O = "\\"Root\\", Inc."',
        "single-space": 'CN = " "',
        "single-hash": "CN = #",  # the only character counts as last, not first
        "leading-hash": 'CN = "#1"',
        "backslash": "CN = ORIGINAL\\\\PRIMARY",
        "c1-bidi-separator": "CN = a\\C2\\85b\\E2\\80\\AEc\\E2\\80\\A8d\\E2\\80\\8Fe",
        "bit-string": "x500UniqueIdentifier = #030200A5",
    }
    for case, subject in expected.items():
        info = CertificateInfo.from_certificate(_certificate(x509.Name(_CASES[case])))
        assert info.subject == subject, case
    hostile = CertificateInfo.from_certificate(_certificate(x509.Name(_CASES["c1-bidi-separator"])))
    # Readable: the invisible mark may show, the C1 control, override and separator may not.
    assert hostile.readable_subject == "CN = a\\C2\\85b\\E2\\80\\AEc\\E2\\80\\A8d\u200fe"


# -- names cryptography cannot write: patched into a certificate's DER ------------------------------


def _patched(tag: int, content: bytes) -> bytes:
    """A certificate whose subject CN has the given raw string type and bytes."""
    placeholder = "P" * len(content)
    der = _der(_certificate(x509.Name([A(CN, placeholder)]), x509.Name([A(CN, "issuer")])))
    utf8 = bytes([0x0C, len(content)]) + placeholder.encode()
    assert der.count(utf8) == 1
    return der.replace(utf8, bytes([tag, len(content)]) + content)


def test_t61_string_in_latin1_which_cryptography_refuses() -> None:
    """Old European CAs wrote T61String as Latin-1: OpenSSL reads it, and so must we."""
    der = _patched(0x14, b"Z\xfcrich")
    with pytest.raises(ValueError):
        _ = x509.load_der_x509_certificate(der).subject  # cryptography cannot decode it
    info = _assert_like_openssl(der)
    assert info.subject == "CN = Z\\C3\\BCrich" and info.readable_subject == "CN = Zürich"
    assert not info.self_signed


def test_ia5_string_with_an_eight_bit_byte() -> None:
    info = _assert_like_openssl(_patched(0x16, b"caf\xe9"))
    assert info.readable_subject == "CN = café"


# -- arbitrary names ---------------------------------------------------------------------------

_CHARACTERS = list(' #",+;<>\\=\x00\x01\n\x1b\x7faZ09éü\x85\xa0山\u202e\u2028\u200f😀')
_TYPES = [
    _ASN1Type.UTF8String,
    _ASN1Type.BMPString,
    _ASN1Type.UniversalString,
    _ASN1Type.T61String,
]
_OIDS = [CN, ORG, OU, L, NameOID.TITLE, x509.ObjectIdentifier("1.2.3.4")]


@st.composite
def _attributes(draw: st.DrawFn) -> x509.NameAttribute[str]:
    kind = draw(st.sampled_from(_TYPES))
    alphabet = [c for c in _CHARACTERS if kind != _ASN1Type.BMPString or ord(c) <= 0xFFFF]
    value = draw(st.text(st.sampled_from(alphabet), min_size=1, max_size=10))
    return A(draw(st.sampled_from(_OIDS)), value, kind)


_NAMES = st.lists(
    st.lists(_attributes(), min_size=1, max_size=2, unique=True).map(
        x509.RelativeDistinguishedName
    ),
    min_size=1,
    max_size=3,
).map(x509.Name)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=_NAMES, issuer=_NAMES)
def test_any_name_is_printed_as_openssl_prints_it(subject: x509.Name, issuer: x509.Name) -> None:
    _assert_like_openssl(_certificate(subject, issuer))


# -- through a real handshake: the callback gets OpenSSL's string, people read the names ----------


def test_non_ascii_names_in_a_handshake(matrix_pki: MatrixPKI, tmp_path: Path) -> None:
    ca = CertificateAuthority.create("Zürich Root, Inc.", key=KeySpec.ec())
    written = ca.issue("Zürich PACS", dns=["localhost"], ips=["127.0.0.1"]).write(tmp_path, "z")
    ca_file = ca.write_cert(tmp_path / "zca.pem")
    server = TLSSettings(
        certificate=written.chain,
        private_key=written.key,
        ca_files=matrix_pki.ca_file,
        verify=VerifyFlags.NONE,
    )
    recorder = Recorder(policy="reject")
    client = TLSSettings(ca_files=ca_file, verify=VerifyFlags.PEER, on_verify=recorder)
    outcome = handshake(server, client)
    _, root, _ = recorder.calls[0]
    assert root.subject == 'CN = "Z\\C3\\BCrich Root, Inc.", O = dicomtls test PKI'
    assert "Subject Name: " + root.subject in str(root).splitlines()
    assert root.readable_subject == 'CN = "Zürich Root, Inc.", O = dicomtls test PKI'
    error = outcome.client_error
    assert error is not None and error.stage is HandshakeStage.VERIFY
    assert f"certificate '{root.readable_subject}' at depth 1" in str(error)
    assert error.to_dict()["certificate"]["subject"] == root.subject


def test_people_read_the_names_readable(
    matrix_pki: MatrixPKI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``echo -v`` (the CLI's verify printer), the session table and the NONE-mode warning."""
    ca = CertificateAuthority.create("Zürich Root", key=KeySpec.ec())
    written = ca.issue("Zürich PACS", ips=["127.0.0.1"]).write(tmp_path, "z")
    server = TLSSettings(
        certificate=written.chain,
        private_key=written.key,
        ca_files=matrix_pki.ca_file,
        verify=VerifyFlags.NONE,
    )
    screen = io.StringIO()
    console = Console(file=screen, width=200)
    client = TLSSettings(
        ca_files=matrix_pki.ca_file, verify=VerifyFlags.NONE, on_verify=verify_printer(console)
    )
    with caplog.at_level(logging.WARNING, logger="dicomtls.tls"):
        outcome = handshake(server, client)  # nobody trusts the Zürich root: NONE goes on
    assert outcome.ok and outcome.client_session is not None
    console.print(session_table(outcome.client_session))
    shown = screen.getvalue()
    assert "Subject Name: CN = Zürich PACS, O = dicomtls test PKI" in shown.splitlines()
    assert any(
        "Peer certificate" in line and "CN = Zürich PACS" in line for line in shown.splitlines()
    )
    assert "\\C3\\BC" not in shown
    warning = next(r.getMessage() for r in caplog.records if "continues although" in r.getMessage())
    assert "'CN = Zürich" in warning and "\\C3\\BC" not in warning
    # What a program reads stays OpenSSL's exact string.
    peer = outcome.client_session.to_dict()["peer_chain"][0]
    assert peer["subject"] == "CN = Z\\C3\\BCrich PACS, O = dicomtls test PKI"
    assert peer["readable_subject"] == "CN = Zürich PACS, O = dicomtls test PKI"


def test_the_readme_shows_both_forms() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text().splitlines()
    ca = CertificateAuthority.create("README Root", key=KeySpec.ec())
    info = CertificateInfo.from_certificate(ca.issue("Zürich PACS, Inc.").certificate)
    exact, readable = str(info).splitlines()[0], info.text(readable=True).splitlines()[0]
    assert exact == 'Subject Name: CN = "Z\\C3\\BCrich PACS, Inc.", O = dicomtls test PKI'
    assert any(line.startswith(exact + "  ") for line in readme)
    assert any(line.startswith(readable + "  ") for line in readme)


def test_an_access_rule_matches_a_latin1_t61_common_name() -> None:
    """The access policy reads CNs as OpenSSL does: a certificate cryptography cannot parse
    the subject of is matched (or not) by its CN, not a traceback in the gatekeeper."""
    from dicomtls.node.policy import AccessPolicy

    der = _patched(0x14, b"Z\xfcrich")
    info = CertificateInfo.from_certificate(x509.load_der_x509_certificate(der))
    assert subject_values(x509.load_der_x509_certificate(der), "2.5.4.3") == ["Zürich"]
    policy = AccessPolicy.from_config(
        {"rule": [{"name": "old-ca", "ae_title": "OLD", "certificate": {"cn": "zürich"}}]}
    )
    assert policy.admit("OLD", info).refusal is None
    assert (
        policy.admit(
            "OLD",
            CertificateInfo.from_certificate(
                x509.load_der_x509_certificate(_patched(0x14, b"Basel"))
            ),
        ).refusal
        is not None
    )
