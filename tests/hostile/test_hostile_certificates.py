"""Hostile certificates: what a peer writes into its certificate must not crash the handshake.

cryptography refuses extensions that OpenSSL reads and verifies (an IP address of five
bytes, a DNS name beyond ASCII, bytes after a value). Describing such a certificate used
to raise: a node refusing an untrusted one crashed in the middle of the refusal and
logged that the peer had closed the connection; a CA-issued one made the access check
and the audit record fail. Now the certificate is described with its extensions marked
unreadable, and refused or judged like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from dicomtls.net.association import associate
from dicomtls.tls.errors import TLSHandshakeError
from dicomtls.tls.flags import VerifyFlags
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.acse import Proposal, build_request
from dicomtls.ul.codes import RejectReasonServiceUser
from dicomtls.ul.pdu import AssociateAC, AssociateRJ

from ..cli.test_node_cli import run
from ..conftest import Files, MatrixPKI
from ..forged import with_replaced, with_version
from .conftest import AE, MUTUAL, PATIENT, LiveNode, _timeouts, _tls_args, peer_name, start
from .peers import IMPLICIT, VERIFICATION, DicomPeer, tcp
from .scp import HostileSCP, SCPLink

Oddity = Literal["san", "dirname", "version", "none"]

#: A subjectAltName holding a five-byte IP address: OpenSSL reads it, cryptography cannot.
FIVE_BYTE_IP = x509.UnrecognizedExtension(
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME, bytes.fromhex("300787050102030405")
)
#: A subjectAltName directoryName whose CN is a BIT STRING: cryptography raises TypeError.
BIT_STRING_DIRECTORY_NAME = x509.UnrecognizedExtension(
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    bytes.fromhex("3011a40f300d310b3009060355040303020041"),
)


def _write(
    directory: Path, name: str, chain: list[bytes], key: ec.EllipticCurvePrivateKey
) -> Files:
    cert = directory / f"{name}.pem"
    cert.write_text("".join(ssl.DER_cert_to_PEM_cert(der) for der in chain))
    key_file = directory / f"{name}.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Files(cert, key_file)


def forge(
    directory: Path,
    common_name: str,
    *,
    issuer: MatrixPKI | None = None,
    oddity: Oddity = "san",
    more_names: tuple[str, ...] = (),
) -> Files:
    """A certificate for ``common_name`` that OpenSSL reads and cryptography cannot, issued
    by the matrix intermediate CA, or self-signed when no ``issuer`` is given: its
    subjectAltName is :data:`FIVE_BYTE_IP`, or its version is 4 (or it has neither).
    ``more_names`` are further CNs of its subject, each an RDN of its own."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in (common_name, *more_names)]
    )
    authority = None if issuer is None else issuer.intermediate
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if authority is None else authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
    )
    if oddity in ("san", "dirname"):
        san = FIVE_BYTE_IP if oddity == "san" else BIT_STRING_DIRECTORY_NAME
        builder = builder.add_extension(san, critical=False)
    signer = key if authority is None else authority.identity.private_key
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    cert = builder.sign(signer, hashes.SHA256())
    leaf = (
        with_version(cert, 3, signer)
        if oddity == "version"
        else cert.public_bytes(serialization.Encoding.DER)
    )
    above = [] if authority is None else [authority.certificate]
    return _write(
        directory,
        common_name.encode().hex(),  # a file name whatever the name holds
        [leaf, *(c.public_bytes(serialization.Encoding.DER) for c in above)],
        key,
    )


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("certs-audit") / "audit.log"


@pytest.fixture(scope="module")
def node(
    matrix_pki: MatrixPKI, tmp_path_factory: pytest.TempPathFactory, audit: Path
) -> Iterator[LiveNode]:
    """A mutual-TLS node whose title MODALITY is bound to the certificate CN=client,
    and KIOSK to CN=kiosk."""
    tmp = tmp_path_factory.mktemp("certs")
    config = tmp / "node.toml"
    config.write_text("""
[[access.rule]]
name = "modality"
ae_title = "MODALITY"
certificate = { cn = "client" }

[[access.rule]]
name = "kiosk"
ae_title = "KIOSK"
certificate = { cn = "kiosk" }
""")
    live = start(
        tmp,
        *_tls_args(matrix_pki, crl=False),
        "--config",
        str(config),
        "--audit",
        f"file:{audit}",
        *_timeouts(PATIENT, PATIENT, PATIENT),
    )
    try:
        yield live
    finally:
        live.stop()
    live.check_one_line_each()


def _handshake_refused(port: int, files: Files) -> str:
    """Our end of a handshake the node must refuse; returns our peer name."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(files.cert, files.key)
    sock = tcp(port, timeout=PATIENT)
    name = peer_name(sock)
    with context.wrap_socket(sock) as tls, pytest.raises((ssl.SSLError, ConnectionError)):
        # TLS 1.3: the client finishes first and learns of the refusal on its first read.
        assert tls.recv(1) == b"", "the node closed without refusing"
        raise ConnectionError("closed")
    return name


@pytest.mark.parametrize("oddity", ["san", "dirname"])
def test_untrusted_certificate_with_an_unreadable_extension_is_refused_as_untrusted(
    node: LiveNode, tmp_path: Path, oddity: Oddity
) -> None:
    peer = _handshake_refused(node.port, forge(tmp_path, "evil", oddity=oddity))
    line = node.wait_for(peer)
    assert "stage verify" in line and "SELF_SIGNED" in line and "CN = evil" in line, line


def test_ca_issued_certificate_with_an_unreadable_extension_claiming_a_bound_title(
    node: LiveNode, matrix_pki: MatrixPKI, tmp_path: Path, audit: Path
) -> None:
    files = forge(tmp_path, "odd", issuer=matrix_pki)
    peer = DicomPeer.tls(node.port, files.cert, files.key, matrix_pki.ca_file)
    peer.send(build_request("MODALITY", AE, [Proposal(VERIFICATION, (IMPLICIT,))]).encode())
    answer = peer.next_pdu()
    assert isinstance(answer, AssociateRJ), answer
    assert answer.reason == RejectReasonServiceUser.CALLING_AE_NOT_RECOGNIZED
    line = node.wait_for(peer.name)
    peer.close()
    assert "rule 'modality' requires CN 'client'" in line and "'CN = odd'" in line, line
    assert any(
        "CN = odd" in record and "MODALITY" in record for record in audit.read_text().splitlines()
    )


def test_ca_issued_certificate_with_an_unreadable_extension_is_served_by_the_default_policy(
    node: LiveNode, matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    files = forge(tmp_path, "odd", issuer=matrix_pki)
    peer = DicomPeer.tls(node.port, files.cert, files.key, matrix_pki.ca_file)
    peer.send(build_request("ODD", AE, [Proposal(VERIFICATION, (IMPLICIT,))]).encode())
    assert isinstance(peer.next_pdu(), AssociateAC)
    peer.close()


def _dial_hostile_server(hostile: Files, client: TLSSettings) -> TLSHandshakeError:
    """Our handshake with a TLS server presenting ``hostile``; the error it must end in."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(hostile.cert, hostile.key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(ssl.SSLError, ConnectionError):
            context.wrap_socket(conn, server_side=True).recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def dial() -> None:
        await associate("127.0.0.1", listener.getsockname()[1], client, called_ae=AE)

    try:
        with pytest.raises(TLSHandshakeError) as refused:
            asyncio.run(dial())
    finally:
        thread.join(PATIENT)
        listener.close()
    return refused.value


def test_our_client_refuses_a_server_certificate_with_an_unreadable_extension(
    matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    refused = _dial_hostile_server(forge(tmp_path, "evil"), matrix_pki.settings("client", MUTUAL))
    assert "CN = evil" in str(refused) and "SELF_SIGNED" in str(refused), refused


def test_untrusted_version_4_certificate_is_refused_as_untrusted(
    node: LiveNode, tmp_path: Path
) -> None:
    peer = _handshake_refused(node.port, forge(tmp_path, "evil4", oddity="version"))
    line = node.wait_for(peer)
    assert "stage verify" in line and "'CN = evil4' at depth 0 cannot be read" in line, line
    assert "DEPTH_ZERO_SELF_SIGNED_CERT" in line, line  # OpenSSL's own reason kept


def test_ca_issued_version_4_certificate_is_refused_at_the_handshake(
    node: LiveNode, matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    files = forge(tmp_path, "odd4", issuer=matrix_pki, oddity="version")
    peer = _handshake_refused(node.port, files)
    line = node.wait_for(peer)
    assert "'CN = odd4' at depth 0 cannot be read" in line and "CERT_REJECTED" in line, line


def test_our_client_refuses_a_version_4_server_certificate_even_verifying_nothing(
    matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    refused = _dial_hostile_server(
        forge(tmp_path, "evil4", oddity="version"), matrix_pki.settings("client", VerifyFlags.NONE)
    )
    assert "'CN = evil4' at depth 0 cannot be read" in str(refused), refused


def _answer(node: LiveNode, pki: MatrixPKI, files: Files, calling: str) -> object:
    peer = DicomPeer.tls(node.port, files.cert, files.key, pki.ca_file)
    peer.send(build_request(calling, AE, [Proposal(VERIFICATION, (IMPLICIT,))]).encode())
    answer = peer.next_pdu()
    if isinstance(answer, AssociateRJ):
        line = node.wait_for(peer.name)
        assert "rule 'kiosk'" in line, line
    peer.close()
    return answer


@pytest.mark.parametrize(
    "look_alike",
    [
        "\u212aiosk",  # KELVIN SIGN, which casefold() makes a "k"
        "kio\u017fk",  # LATIN SMALL LETTER LONG S: "s"
        "kio\u017fk\u0307",  # and a dot above it (NFC would not join them): still not "kiosk"
    ],
)
def test_a_unicode_look_alike_cn_is_not_the_bound_certificate(
    node: LiveNode, matrix_pki: MatrixPKI, tmp_path: Path, look_alike: str
) -> None:
    """Our CA issued a certificate for another name; it must not pass for CN=kiosk."""
    files = forge(tmp_path, look_alike, issuer=matrix_pki, oddity="none")
    assert isinstance(_answer(node, matrix_pki, files, "KIOSK"), AssociateRJ)


def test_the_bound_cn_in_other_ascii_case_is_the_bound_certificate(
    node: LiveNode, matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    files = forge(tmp_path, "KIOSK", issuer=matrix_pki, oddity="none")
    assert isinstance(_answer(node, matrix_pki, files, "KIOSK"), AssociateAC)


@pytest.mark.parametrize(
    ("common_name", "more_names"),
    [
        ("intruder", ("kiosk",)),  # the bound name second: RFC 6125 would even take this one
        ("kiosk", ("client",)),  # two bound names: it would be both KIOSK and MODALITY
        ("kiosk\x00.intruder.example", ()),  # a NUL: not the bound name followed by junk
    ],
)
def test_a_subject_with_more_than_the_bound_cn_is_not_the_bound_certificate(
    node: LiveNode,
    matrix_pki: MatrixPKI,
    tmp_path: Path,
    common_name: str,
    more_names: tuple[str, ...],
) -> None:
    files = forge(tmp_path, common_name, issuer=matrix_pki, oddity="none", more_names=more_names)
    assert isinstance(_answer(node, matrix_pki, files, "KIOSK"), AssociateRJ)


def test_a_certificate_no_one_can_read_sent_beside_a_good_chain(
    matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    """A server may send certificates its chain does not need; OpenSSL never verifies them,
    and our view of the chain as sent (``--json``) must not choke on one."""
    server = matrix_pki.files["server"]
    junk = forge(tmp_path, "junk", oddity="version")
    chain = tmp_path / "server-and-junk.pem"
    chain.write_text(server.cert.read_text() + junk.cert.read_text())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, server.key)
    context.load_verify_locations(matrix_pki.ca_file)
    context.verify_mode = ssl.CERT_REQUIRED
    scp = HostileSCP(context, script=SCPLink.answer_release).start()

    async def chain_as_sent() -> list[dict[str, object]]:
        client = matrix_pki.settings("client", MUTUAL)
        async with await associate("127.0.0.1", scp.port, client, called_ae=AE) as assoc:
            assert assoc.link.session is not None
            chain: list[dict[str, object]] = assoc.link.session.to_dict()["peer_chain"]
            return chain

    sent = asyncio.run(chain_as_sent())
    scp.join()
    assert [c["subject"] for c in sent] == [
        "CN = server, O = dicomtls test PKI",
        "CN = dicomtls Matrix Intermediate CA, O = dicomtls test PKI",
        "CN = junk",
    ], sent
    assert str(sent[-1]["unreadable"]).startswith("cannot be read: "), sent[-1]
    assert sent[-1]["sha256_fingerprint"] == ":".join(
        f"{b:02X}" for b in hashlib.sha256(junk_der(junk)).digest()
    )


def junk_der(files: Files) -> bytes:
    """The DER of the (single) certificate in ``files``."""
    return ssl.PEM_cert_to_DER_cert(files.cert.read_text())


def huge_subject(directory: Path) -> Files:
    """A self-signed certificate whose subject is CN=huge and 15,000 control characters
    (each shown as three); the node's TLS refuses much larger certificate messages."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "huge"),
            x509.NameAttribute(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), "\x01" * 15_000),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return _write(directory, "huge", [cert.public_bytes(serialization.Encoding.DER)], key)


def test_a_huge_subject_costs_one_short_log_line(node: LiveNode, tmp_path: Path) -> None:
    """The refusal's line quotes the first thousand characters or so, not 45 kB of escapes."""
    line = node.wait_for(_handshake_refused(node.port, huge_subject(tmp_path)))
    assert "stage verify" in line and "CN = huge" in line, line[:300]
    assert len(line) < 4096 and "more characters)" in line, len(line)


def test_a_huge_subject_does_not_lose_its_audit_record_over_udp(
    matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    """RFC 5426 puts each audit message in one UDP datagram (65,507 bytes at most): the
    Security Alert for a peer with a huge subject must still fit, and reach the collector."""
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(PATIENT)
    live = start(
        tmp_path,
        *_tls_args(matrix_pki, crl=False),
        "--audit",
        f"udp://127.0.0.1:{collector.getsockname()[1]}",
        *_timeouts(PATIENT, PATIENT, PATIENT),
    )
    try:
        live.wait_for(_handshake_refused(live.port, huge_subject(tmp_path)))
        while b'csd-code="110126"' not in (datagram := collector.recv(65_536)):
            pass  # the node's start (Application Activity) comes first
    finally:
        live.stop()
        collector.close()
    assert len(datagram) < 8192 and b"CN = huge" in datagram, len(datagram)
    live.check_one_line_each()


def test_inspect_shows_a_hostile_certificate_file_or_says_why_it_cannot(tmp_path: Path) -> None:
    """``dicomtls inspect`` of a certificate a peer handed over: one with extensions
    cryptography refuses is shown with them marked unreadable; a version 4 one is one
    error line (it was a traceback)."""
    odd = forge(tmp_path, "odd")
    shown = run("inspect", str(odd.cert), cwd=tmp_path)
    assert shown.returncode == 0 and "Extensions: unreadable (" in shown.stdout, shown
    v4 = forge(tmp_path, "odd4", oddity="version")
    refused = run("inspect", str(v4.cert), cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "holds no readable certificate: 3 is not a valid X509 version" in refused.stderr


def test_a_second_cn_that_is_not_a_string_still_makes_two(
    node: LiveNode, matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    """``CN=kiosk, CN=<BIT STRING>``: OpenSSL shows both CNs (the second as ``#0305...``),
    so the subject names two holders even though only one of its CNs is text."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    authority = matrix_pki.intermediate
    placeholder = x509.ObjectIdentifier("1.2.3.4")  # 06 03 2A 03 04, as long as CN's 55 04 03
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "kiosk"),
                    x509.NameAttribute(placeholder, "other"),
                ]
            )
        )
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(authority.identity.private_key, hashes.SHA256())
    )
    signer = authority.identity.private_key
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    der = with_replaced(
        cert,
        bytes.fromhex("06032a0304") + b"\x0c\x05other",
        bytes.fromhex("0603550403") + b"\x03\x05\x00ther",
        signer,
    )
    chain = [der, authority.certificate.public_bytes(serialization.Encoding.DER)]
    files = _write(tmp_path, "two-cns", chain, key)
    assert isinstance(_answer(node, matrix_pki, files, "KIOSK"), AssociateRJ)
