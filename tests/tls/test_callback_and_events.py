"""The verify callback's power over the handshake, failures named in words, and timeouts."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from dicomtls.errors import ConnectError, DicomTLSError
from dicomtls.net.link import LinkEvents, SecureLink, connect, serve
from dicomtls.tls.errors import HandshakeStage, TLSHandshakeError
from dicomtls.tls.flags import VerifyFlags

from ..conftest import MatrixPKI
from .loopback import Recorder, handshake

PEER_FAIL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT


def test_callback_overrides_a_failure(matrix_pki: MatrixPKI) -> None:
    recorder = Recorder(policy="accept")
    server = matrix_pki.settings("server", PEER_FAIL, on_verify=recorder)
    outcome = handshake(server, matrix_pki.settings("expired", PEER_FAIL))
    assert outcome.ok, outcome
    assert "CERT_HAS_EXPIRED" in recorder.codes
    expired_call = next(c for c in recorder.calls if c[2].name == "CERT_HAS_EXPIRED")
    assert expired_call[0] is False and expired_call[1].depth == 0
    # Once the callback has ruled on the expired certificate, it is not asked about it again.
    assert recorder.depths.count(0) == 1


def test_callback_rejects_a_valid_chain(matrix_pki: MatrixPKI) -> None:
    recorder = Recorder(policy="reject")
    server = matrix_pki.settings("server", PEER_FAIL, on_verify=recorder)
    outcome = handshake(server, matrix_pki.settings("client", PEER_FAIL))
    assert not outcome.exchanged
    error = outcome.server_error
    assert error is not None
    assert error.stage is HandshakeStage.VERIFY
    assert "our verify callback" in error.reason
    # OpenSSL had no objection: it records UNSPECIFIED for the callback's refusal, as we do.
    assert error.verify_error is not None and error.verify_error.name == "UNSPECIFIED"
    assert error.verify_error.by_callback
    assert len(recorder.calls) == 1  # False stops the verification at the first certificate
    assert outcome.client_error is not None


def test_callback_exception_fails_the_handshake_and_is_reported(matrix_pki: MatrixPKI) -> None:
    server = matrix_pki.settings("server", PEER_FAIL, on_verify=Recorder(policy="raise"))
    outcome = handshake(server, matrix_pki.settings("client", PEER_FAIL))
    assert not outcome.exchanged
    error = outcome.server_error
    assert error is not None and error.stage is HandshakeStage.CALLBACK
    assert isinstance(error.__cause__, RuntimeError)
    assert "callback exploded" in str(error)


def test_callback_exception_fails_even_in_client_none_mode(matrix_pki: MatrixPKI) -> None:
    """NONE lets a failed verification pass, but never a crashed callback."""
    client = matrix_pki.settings("client", VerifyFlags.NONE, on_verify=Recorder(policy="raise"))
    outcome = handshake(matrix_pki.settings("server", VerifyFlags.NONE), client)
    assert outcome.client_error is not None
    assert outcome.client_error.stage is HandshakeStage.CALLBACK
    assert not outcome.exchanged


def test_seed_certificate_string_reaches_the_callback(matrix_pki: MatrixPKI) -> None:
    """The seed's InvalidPurpose example: a client certificate without the client purpose."""
    recorder = Recorder()
    server = matrix_pki.settings("server", PEER_FAIL, on_verify=recorder)
    handshake(server, matrix_pki.settings("no-purpose", PEER_FAIL))
    ok, cert, error = next(c for c in recorder.calls if c[2].name == "INVALID_PURPOSE")
    text = str(cert)
    assert not ok
    assert "Subject Name: CN = no-purpose" in text
    assert "Issuer Name: CN = dicomtls Matrix Intermediate CA" in text
    assert "Basic Constraints: Not a CA (Certificate Authority)" in text
    assert "SSL client : No" in text and "SSL server : No" in text
    assert "clientAuth" in error.hint


async def _silent_clients_do_not_block(matrix_pki: MatrixPKI) -> None:
    loop = asyncio.get_running_loop()
    results: list[TLSHandshakeError | None] = []
    timed_out = asyncio.Event()

    def on_ready(peer: str, error: TLSHandshakeError | None) -> None:
        results.append(error)
        if error is not None and error.stage is HandshakeStage.TIMEOUT:
            timed_out.set()

    async def handler(link: SecureLink) -> None:
        link.write(await link.read())
        await link.drain()

    server_tls = matrix_pki.settings("server", PEER_FAIL, handshake_timeout=3.0)
    server = await serve(
        handler, "127.0.0.1", 0, server_tls, events=LinkEvents(on_secure_link_ready=on_ready)
    )
    async with server:
        silent = [
            await loop.run_in_executor(None, socket.create_connection, ("127.0.0.1", server.port))
            for _ in range(20)
        ]
        try:
            # While 20 connections sit silent, a real client still gets through.
            link = await connect("127.0.0.1", server.port, matrix_pki.settings("client", PEER_FAIL))
            link.write(b"hello")
            assert await link.read() == b"hello"
            assert not timed_out.is_set()
            await link.close()
            await asyncio.wait_for(timed_out.wait(), 10)
        finally:
            for sock in silent:
                sock.close()
    timeouts = [e for e in results if e is not None and e.stage is HandshakeStage.TIMEOUT]
    assert timeouts and "within 3 s" in timeouts[0].reason


def test_silent_peers_time_out_without_blocking_others(matrix_pki: MatrixPKI) -> None:
    asyncio.run(_silent_clients_do_not_block(matrix_pki))


async def _plain_dicom_to_tls_port(matrix_pki: MatrixPKI) -> TLSHandshakeError:
    loop = asyncio.get_running_loop()
    failure: asyncio.Future[TLSHandshakeError] = loop.create_future()

    def on_ready(peer: str, error: TLSHandshakeError | None) -> None:
        if error is not None and not failure.done():
            failure.set_result(error)

    async def handler(link: SecureLink) -> None:
        raise AssertionError("a plain client must never reach the handler")

    server_tls = matrix_pki.settings("server", PEER_FAIL)
    server = await serve(
        handler, "127.0.0.1", 0, server_tls, events=LinkEvents(on_secure_link_ready=on_ready)
    )
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(struct.pack(">BBI", 1, 0, 68) + bytes(68))  # an A-ASSOCIATE-RQ header
        await writer.drain()
        error = await asyncio.wait_for(failure, 10)
        assert await reader.read() == b""  # and the server closed the connection
        writer.close()
    return error


def test_plain_dicom_client_on_tls_port_is_named(matrix_pki: MatrixPKI) -> None:
    error = asyncio.run(_plain_dicom_to_tls_port(matrix_pki))
    assert error.stage is HandshakeStage.NOT_TLS
    assert "peer sent a plain DICOM A-ASSOCIATE-RQ to a TLS port" in str(error)


async def _tls_client_on_plain_port(matrix_pki: MatrixPKI) -> TLSHandshakeError:
    async def answer_with_abort(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(struct.pack(">BBIBBBB", 7, 0, 4, 0, 0, 2, 0))  # A-ABORT, as DCMTK answers
        await writer.drain()
        writer.close()

    plain = await asyncio.start_server(answer_with_abort, "127.0.0.1", 0)
    port = plain.sockets[0].getsockname()[1]
    async with plain:
        with pytest.raises(TLSHandshakeError) as caught:
            await connect("127.0.0.1", port, matrix_pki.settings("client", PEER_FAIL))
    return caught.value


def test_tls_client_on_plain_port_is_named(matrix_pki: MatrixPKI) -> None:
    error = asyncio.run(_tls_client_on_plain_port(matrix_pki))
    assert error.stage is HandshakeStage.NOT_TLS
    assert "answered our TLS ClientHello with a plain DICOM A-ABORT" in error.reason


@pytest.mark.parametrize("tls", [True, False])
def test_connection_refused_is_a_connect_error_not_a_handshake_error(
    matrix_pki: MatrixPKI, tls: bool
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = matrix_pki.settings("client", PEER_FAIL) if tls else None
    with pytest.raises(ConnectError) as caught:
        asyncio.run(connect("127.0.0.1", port, settings))
    assert not isinstance(caught.value, TLSHandshakeError)
    assert isinstance(caught.value, DicomTLSError) and isinstance(caught.value, ConnectionError)
    assert str(caught.value) == (  # asyncio says "Connect call failed ('127.0.0.1', PORT)"
        f"cannot connect to 127.0.0.1:{port}: TCP connection refused: nothing listens on that "
        "port. Hint: check the port, and that the node is running there"
    )


def test_hostname_check_by_dns_name_and_sni(matrix_pki: MatrixPKI) -> None:
    recorder = Recorder()
    client = matrix_pki.settings("client", PEER_FAIL, on_verify=recorder, check_hostname=True)
    outcome = handshake(
        matrix_pki.settings("wrong-hostname", VerifyFlags.NONE), client, host="localhost"
    )
    assert outcome.client_error is not None
    assert outcome.client_error.verify_error is not None
    assert outcome.client_error.verify_error.name == "HOSTNAME_MISMATCH"
    assert "subjectAltName DNS" in (outcome.client_error.hint or "")
    good = handshake(matrix_pki.settings("server", VerifyFlags.NONE), client, host="localhost")
    assert good.ok, good
    assert good.server_session is not None and good.server_session.server_name == "localhost"


def test_crl_scope_chain_needs_a_crl_for_every_ca(matrix_pki: MatrixPKI) -> None:
    # Only the intermediate published a CRL: checking the whole chain then misses the root's.
    server = matrix_pki.settings("server", PEER_FAIL, crl_scope="chain")  # as users write it
    outcome = handshake(server, matrix_pki.settings("client", PEER_FAIL))
    assert outcome.server_error is not None
    assert outcome.server_error.verify_error is not None
    assert outcome.server_error.verify_error.name == "UNABLE_TO_GET_CRL"
    leaf_only = handshake(
        matrix_pki.settings("server", PEER_FAIL), matrix_pki.settings("client", PEER_FAIL)
    )
    assert leaf_only.ok


def test_a_hello_fed_one_byte_at_a_time_is_still_tls(matrix_pki: MatrixPKI) -> None:
    """Sans-I/O makes slowloris exact: the server engine gets the hello one byte per call."""
    from dicomtls.tls.engine import TLSEngine
    from dicomtls.tls.flags import Side

    client = TLSEngine(matrix_pki.settings("client", PEER_FAIL), Side.CLIENT, "client")
    server = TLSEngine(matrix_pki.settings("server", PEER_FAIL), Side.SERVER, "server")
    client.do_handshake()
    hello = b"".join(client.data_to_send())
    for i in range(len(hello)):
        server.receive_data(hello[i : i + 1])
        server.do_handshake()
    answer = b"".join(server.data_to_send())
    assert answer[:2] == b"\x16\x03"  # its ServerHello record: the hello was recognised as TLS
