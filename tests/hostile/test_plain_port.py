"""The wrong protocol on a plain (``--no-tls``) ``dicomtls serve`` port: a TLS ClientHello and
an HTTP request, each sent in two parts with a good (plain) client served in between."""

from __future__ import annotations

import contextlib

from OpenSSL import SSL

from ..conftest import MatrixPKI
from .conftest import LiveNode, echo_now
from .peers import SteppedTLS, is_open, read_to_eof, tcp


def _split_attack(node: LiveNode, payload: bytes, split: int) -> tuple[str, bytes, str]:
    sock = tcp(node.port)
    try:
        name = f"127.0.0.1:{sock.getsockname()[1]}"
        sock.sendall(payload[:split])  # too little to tell what it is
        assert echo_now(node.port, None) == 0
        assert is_open(sock) and node.naming(name) == []
        sock.sendall(payload[split:])
        reply = read_to_eof(sock)
        line = node.wait_for(name)
    finally:
        sock.close()
    assert echo_now(node.port, None) == 0
    return line, reply, name


def test_tls_client_hello_on_a_plain_port(plain_node: LiveNode, matrix_pki: MatrixPKI) -> None:
    client = matrix_pki.files["client"]
    tls = SSL.Connection(SteppedTLS.context(client.cert, client.key), None)
    tls.set_connect_state()
    with contextlib.suppress(SSL.WantReadError):
        tls.do_handshake()
    first_flight = tls.bio_read(65536)
    line, reply, name = _split_attack(plain_node, first_flight, 2)
    assert f"association from {name}: peer sent a TLS ClientHello to a non-TLS port" in line
    assert reply == b""  # no A-ABORT in plain bytes to a TLS client: just the end


def test_http_request_on_a_plain_port(plain_node: LiveNode) -> None:
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    line, reply, name = _split_attack(plain_node, request, 2)
    assert f"association from {name}: peer sent an HTTP request to a DICOM port" in line
    assert reply == b""
