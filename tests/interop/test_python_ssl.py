"""Interop with Python's own ``ssl`` module (OpenSSL via the standard library), both directions."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import pytest

from dicomtls.net.link import SecureLink, connect, serve
from dicomtls.tls.errors import HandshakeStage, TLSHandshakeError
from dicomtls.tls.flags import VerifyFlags

from ..conftest import MatrixPKI

PEER_FAIL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT
VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def _stdlib_context(
    pki: MatrixPKI, purpose: ssl.Purpose, name: str, version: str
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose, cafile=str(pki.ca_file))
    ctx.load_cert_chain(str(pki.files[name].cert), str(pki.files[name].key))
    ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = False
    return ctx


async def _our_server_stdlib_client(pki: MatrixPKI, version: str, client: str) -> tuple[str, bytes]:
    seen: list[str] = []

    async def handler(link: SecureLink) -> None:
        assert link.session is not None
        seen.append(link.session.protocol)
        link.write(b"ours:" + await link.read())
        await link.drain()

    server = await serve(handler, "127.0.0.1", 0, pki.settings("server", PEER_FAIL))
    async with server:
        ctx = _stdlib_context(pki, ssl.Purpose.SERVER_AUTH, client, version)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=ctx)
        writer.write(b"hello")
        await writer.drain()
        answer = await reader.read(100)
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()
    return (seen[0] if seen else "none"), answer


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_stdlib_client_to_our_server(matrix_pki: MatrixPKI, version: str) -> None:
    protocol, answer = asyncio.run(_our_server_stdlib_client(matrix_pki, version, "client"))
    assert protocol == version
    assert answer == b"ours:hello"


def test_stdlib_client_with_no_purpose_certificate_is_refused(matrix_pki: MatrixPKI) -> None:
    # A TLS 1.2 stdlib client learns of the rejection during its own handshake.
    with pytest.raises(ssl.SSLError, match=r"UNSUPPORTED_CERTIFICATE|unsupported certificate"):
        asyncio.run(_our_server_stdlib_client(matrix_pki, "TLSv1.2", "no-purpose"))


async def _our_client_stdlib_server(
    pki: MatrixPKI, version: str, client_name: str | None
) -> tuple[str, bytes]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"stdlib:" + await reader.read(100))
            await writer.drain()
        except (ssl.SSLError, ConnectionError):
            pass
        writer.close()

    ctx = _stdlib_context(pki, ssl.Purpose.CLIENT_AUTH, "server", version)
    stdlib_server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=ctx)
    port = stdlib_server.sockets[0].getsockname()[1]
    async with stdlib_server:
        link = await connect("127.0.0.1", port, pki.settings(client_name, PEER_FAIL))
        assert link.session is not None
        link.write(b"hi")
        try:
            answer = await link.read()
        finally:
            await link.close()
        return link.session.protocol, answer


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_our_client_to_stdlib_server(matrix_pki: MatrixPKI, version: str) -> None:
    protocol, answer = asyncio.run(_our_client_stdlib_server(matrix_pki, version, "client"))
    assert protocol == version
    assert answer == b"stdlib:hi"


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_stdlib_server_requiring_a_certificate_rejects_us(
    matrix_pki: MatrixPKI, version: str
) -> None:
    with pytest.raises(TLSHandshakeError) as caught:
        asyncio.run(_our_client_stdlib_server(matrix_pki, version, None))
    error = caught.value
    # asyncio's TLS server hangs up without flushing its alert, so we can only see the close;
    # under TLS 1.3 it comes after our side finished, and the error says what that means.
    assert error.stage in (HandshakeStage.PEER_REJECTED, HandshakeStage.CLOSED)
    if version == "TLSv1.3" and error.stage is HandshakeStage.CLOSED:
        assert "right after the TLS 1.3 handshake" in error.reason
        assert "requires a client certificate" in (error.hint or "")
