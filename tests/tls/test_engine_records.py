"""The engine's record path: decrypting straight into the caller's buffer gives exactly what
was sent, in any cutting, and ends the same way pyOpenSSL's own recv_into does."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomtls.tls.engine import TLSClosed, TLSEngine
from dicomtls.tls.flags import Side, VerifyFlags

from ..conftest import MatrixPKI
from .loopback import handshake_in_memory

MUTUAL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT


def _pair(pki: MatrixPKI) -> tuple[TLSEngine, TLSEngine]:
    client = TLSEngine(pki.settings("client", MUTUAL), Side.CLIENT, "server")
    server = TLSEngine(pki.settings("server", MUTUAL), Side.SERVER, "client")
    handshake_in_memory(client, server)
    return client, server


def _drain(server: TLSEngine, size: int, cut: int) -> bytes:
    out = bytearray()
    buffer = memoryview(bytearray(cut))
    while count := server.read_into(buffer):
        out += buffer[:count]
    assert len(out) <= size
    return bytes(out)


@pytest.fixture(scope="module")
def engines(matrix_pki: MatrixPKI) -> tuple[TLSEngine, TLSEngine]:
    return _pair(matrix_pki)


def test_the_fast_record_path_is_the_one_in_use(engines: tuple[TLSEngine, TLSEngine]) -> None:
    _, server = engines
    assert server._ssl is not None  # pyOpenSSL as installed exposes its SSL*: no per-record copy


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 200_000), min_size=1, max_size=6),
    cut=st.integers(1, 300_000),
    slow=st.booleans(),
)
def test_what_is_decrypted_is_what_was_sent(
    engines: tuple[TLSEngine, TLSEngine], sizes: list[int], cut: int, slow: bool
) -> None:
    client, server = engines
    fast_ssl = server._ssl
    if slow:
        server._ssl = None  # pyOpenSSL's recv_into: the reference
    try:
        pieces = [os.urandom(size) for size in sizes]  # records of every size, in several sends
        for piece in pieces:
            client.send(piece)
        sent = b"".join(pieces)
        for chunk in client.data_to_send():
            server.receive_data(chunk)
        assert _drain(server, len(sent), cut) == sent
    finally:
        server._ssl = fast_ssl


@pytest.mark.parametrize("slow", [False, True])
def test_close_notify_ends_reading_the_same_way(matrix_pki: MatrixPKI, slow: bool) -> None:
    client, server = _pair(matrix_pki)
    if slow:
        server._ssl = None
    client.send(b"last words")
    client.close()
    for chunk in client.data_to_send():
        server.receive_data(chunk)
    buffer = memoryview(bytearray(100))
    assert bytes(buffer[: server.read_into(buffer)]) == b"last words"
    with pytest.raises(TLSClosed):
        server.read_into(buffer)


@pytest.mark.parametrize("fast", [True, False])
def test_ciphertext_held_back_survives_more_ciphertext(matrix_pki: MatrixPKI, fast: bool) -> None:
    """A transport may queue the ciphertext it was given (a view of a pooled buffer) while
    the engine produces more: what was queued must still be what OpenSSL wrote."""
    client, server = _pair(matrix_pki)
    if not fast:
        client._outgoing = None  # pyOpenSSL's bio_read: the reference
    pieces = [os.urandom(700_000) for _ in range(4)]
    held = []
    for piece in pieces:
        client.send(piece)
        held.append(client.data_to_send())  # none sent yet: all of it queued
    for chunks in held:
        for chunk in chunks:
            server.receive_data(chunk)
    assert _drain(server, 4 * 700_000, 1 << 20) == b"".join(pieces)
