"""Hostile TLS peers against a real ``dicomtls serve``: silent, slow, not TLS at all, obsolete
versions and suites, renegotiation, and client certificates the node must refuse.

Every test keeps the hostile connection open while a good client completes a C-ECHO over
mutual TLS, then lets the attack finish, checks the node's one log line naming that peer
and what the peer received, and has a good client served again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
from OpenSSL import SSL

from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.pdu import AssociateAC

from ..conftest import MatrixPKI
from .conftest import HANDSHAKE_TIMEOUT, LiveNode, echo_now, peer_name
from .peers import (
    HANDSHAKE_FAILURE,
    PROTOCOL_VERSION,
    SteppedTLS,
    alerts,
    client_hello,
    echo_request,
    is_open,
    openssl_verdict,
    read_to_eof,
    tcp,
    trickle,
)


def _split_attack(
    node: LiveNode, tls: TLSSettings, payload: bytes, split: int = -1
) -> tuple[str, bytes, str]:
    """Send ``payload[:split]`` (not enough for the node to judge), have a good client served,
    send the rest; returns (the node's line for us, what the node sent us, our name)."""
    sock = tcp(node.port)
    try:
        name = f"127.0.0.1:{sock.getsockname()[1]}"
        sock.sendall(payload[:split])
        assert echo_now(node.port, tls) == 0
        assert is_open(sock) and node.naming(name) == []  # the attack was still in progress
        sock.sendall(payload[split:])
        reply = read_to_eof(sock)
        line = node.wait_for(name)
    finally:
        sock.close()
    assert echo_now(node.port, tls) == 0
    return line, reply, name


def test_silent_client_waits_out_the_handshake_timeout_alone(
    slow_tls_node: LiveNode, client_tls: TLSSettings
) -> None:
    node = slow_tls_node
    sock = tcp(node.port)
    name = f"127.0.0.1:{sock.getsockname()[1]}"
    try:
        assert echo_now(node.port, client_tls) == 0  # a handshake goes past the silent one
        assert is_open(sock) and node.naming(name) == []
        line = node.wait_for(name)
        assert read_to_eof(sock) == b""  # closed without a word: it never said hello
    finally:
        sock.close()
    assert f"TLS handshake with {name} failed (server side, stage timeout)" in line
    assert f"no complete TLS handshake within {HANDSHAKE_TIMEOUT:g} s" in line
    assert echo_now(node.port, client_tls) == 0


def test_200_silent_clients_at_once(slow_tls_node: LiveNode, client_tls: TLSSettings) -> None:
    node = slow_tls_node
    # From 10 addresses, 20 each: one address may hold only 32 pending handshakes (see
    # test_handshake_flood.py); the good client's 127.0.0.1 is not among them.
    socks = [
        socket.create_connection(("127.0.0.1", node.port), source_address=(f"127.0.0.{2 + i}", 0))
        for i in range(10)
        for _ in range(20)
    ]
    names = [peer_name(s) for s in socks]
    try:
        assert echo_now(node.port, client_tls) == 0
        assert all(is_open(s) for s in socks)
        assert not any(node.naming(n) for n in names)  # all 200 still waiting on the node
        lines = [node.wait_for(n) for n in names]
        assert all(read_to_eof(s) == b"" for s in socks)
    finally:
        for sock in socks:
            sock.close()
    assert all("stage timeout" in line for line in lines)
    assert echo_now(node.port, client_tls) == 0


def test_slowloris_handshake_is_ended_by_the_handshake_timeout(
    slow_tls_node: LiveNode, client_tls: TLSSettings, matrix_pki: MatrixPKI
) -> None:
    node = slow_tls_node
    client = matrix_pki.files["client"]
    stepped = SteppedTLS(node.port, SteppedTLS.context(client.cert, client.key))
    hello = stepped.first_flight()
    sent: list[int] = []
    sender = threading.Thread(
        target=lambda: sent.append(trickle(stepped.sock, hello, 0.02, time.monotonic() + 60))
    )
    sender.start()
    try:
        assert echo_now(node.port, client_tls) == 0
        assert sender.is_alive() and node.naming(stepped.name) == []  # still trickling
        line = node.wait_for(stepped.name)
        sender.join(timeout=30)
        assert not sender.is_alive()
    finally:
        stepped.sock.close()
    assert "stage timeout" in line
    assert 0 < sent[0] < len(hello)  # the node hung up before the hello was complete
    assert echo_now(node.port, client_tls) == 0


def test_plain_dicom_on_the_tls_port(tls_node: LiveNode, client_tls: TLSSettings) -> None:
    line, reply, name = _split_attack(tls_node, client_tls, echo_request(), 2)
    assert f"TLS handshake with {name} failed (server side, stage not-tls)" in line
    assert "peer sent a plain DICOM A-ASSOCIATE-RQ to a TLS port" in line
    assert reply == b""


def test_http_on_the_tls_port(tls_node: LiveNode, client_tls: TLSSettings) -> None:
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    line, reply, name = _split_attack(tls_node, client_tls, request, 2)
    assert f"TLS handshake with {name} failed (server side, stage not-tls)" in line
    assert "peer speaks HTTP, not TLS" in line
    assert reply == b""


@pytest.mark.parametrize("version", [0x0300, 0x0301, 0x0302], ids=["SSLv3", "TLS1.0", "TLS1.1"])
def test_obsolete_protocol_versions(
    tls_node: LiveNode, client_tls: TLSSettings, version: int
) -> None:
    suites = [0xC009, 0xC013, 0x002F, 0x0035, 0x000A]  # what such clients offered
    hello = client_hello(version, suites)
    line, reply, name = _split_attack(tls_node, client_tls, hello)
    assert alerts(reply) == [(2, PROTOCOL_VERSION)], reply.hex()
    assert f"TLS handshake with {name} failed (server side, stage handshake)" in line
    assert "no TLS version is allowed by both sides" in line


def test_only_forbidden_cipher_suites(tls_node: LiveNode, client_tls: TLSSettings) -> None:
    # TLS_RSA_WITH_AES_128_CBC_SHA, TLS_RSA_WITH_3DES_EDE_CBC_SHA, TLS_RSA_WITH_NULL_SHA(256)
    hello = client_hello(0x0303, [0x002F, 0x000A, 0x0002, 0x003B])
    line, reply, name = _split_attack(tls_node, client_tls, hello)
    assert alerts(reply) == [(2, HANDSHAKE_FAILURE)], reply.hex()
    assert f"TLS handshake with {name} failed (server side, stage handshake)" in line
    assert "no shared cipher" in line


@pytest.mark.parametrize(
    ("kind", "code", "alert"),
    [
        ("untrusted", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "unknown ca"),
        ("expired", "CERT_HAS_EXPIRED", "certificate expired"),
        ("revoked", "CERT_REVOKED", "certificate revoked"),
    ],
)
def test_refused_client_certificates(
    tls_node: LiveNode,
    client_tls: TLSSettings,
    matrix_pki: MatrixPKI,
    kind: str,
    code: str,
    alert: str,
) -> None:
    """Another CA's certificate, an expired one, one on the node's CRL (serve --crl)."""
    node = tls_node
    files = matrix_pki.files[kind]
    stepped = SteppedTLS(node.port, SteppedTLS.context(files.cert, files.key))
    try:
        stepped.sock.sendall(stepped.first_flight())
        our_certificate = stepped.until_our_turn()  # the node asked for it; we hold it back
        assert echo_now(node.port, client_tls) == 0
        assert is_open(stepped.sock) and node.naming(stepped.name) == []
        stepped.sock.sendall(our_certificate)
        stepped.rest()
        verdict = openssl_verdict(stepped)
        line = node.wait_for(stepped.name)
    finally:
        stepped.sock.close()
    assert alert in verdict, verdict
    assert f"TLS handshake with {stepped.name} failed (server side, stage verify)" in line
    assert f"CN = {kind}" in line and code in line
    assert echo_now(node.port, client_tls) == 0


def test_renegotiation_is_refused(
    tls_node: LiveNode, client_tls: TLSSettings, matrix_pki: MatrixPKI
) -> None:
    """An associated TLS 1.2 client asks to renegotiate (the node sets OP_NO_RENEGOTIATION):
    the node answers no_renegotiation, our OpenSSL gives up with a fatal alert, the link ends."""
    node = tls_node
    client = matrix_pki.files["client"]
    context = SteppedTLS.context(client.cert, client.key, max_version=SSL.TLS1_2_VERSION)
    stepped = SteppedTLS(node.port, context)
    try:
        stepped.handshake()
        assert stepped.conn.get_protocol_version_name() == "TLSv1.2"
        stepped.send_plaintext(echo_request())
        assert isinstance(stepped.next_pdu(), AssociateAC)
        assert stepped.conn.renegotiate()
        with contextlib.suppress(SSL.WantReadError):
            stepped.conn.do_handshake()
        hello_again = stepped.pending()
        assert hello_again  # the renegotiation ClientHello (encrypted)
        assert echo_now(node.port, client_tls) == 0
        assert is_open(stepped.sock) and node.naming(stepped.name) == []
        stepped.sock.sendall(hello_again)
        assert stepped.receive()  # the node's answer
        with pytest.raises(SSL.Error, match="no renegotiation"):
            stepped.conn.do_handshake()
        stepped.sock.sendall(stepped.pending())  # our fatal alert
        stepped.rest()
        line = node.wait_for(stepped.name)
    finally:
        stepped.sock.close()
    assert f"TLS read from {stepped.name} failed: tls alert handshake failure" in line
    assert echo_now(node.port, client_tls) == 0
