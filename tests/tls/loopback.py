"""A real TLS handshake on loopback between our server and our client, and what each side saw."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from OpenSSL._util import lib as openssl_lib

from dicomtls.net.link import LinkEvents, SecureLink, connect, serve
from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.engine import TLSEngine
from dicomtls.tls.errors import TLSHandshakeError
from dicomtls.tls.session import SessionInfo
from dicomtls.tls.settings import TLSSettings
from dicomtls.tls.verify_error import VerifyError


@dataclass
class Recorder:
    """An on_verify callback that remembers every call and returns a fixed policy."""

    policy: str = "default"  # "default" -> ok, "accept" -> True, "reject" -> False, "raise"
    calls: list[tuple[bool, CertificateInfo, VerifyError]] = field(default_factory=list)

    def __call__(self, ok: bool, cert: CertificateInfo, error: VerifyError) -> bool:
        self.calls.append((ok, cert, error))
        if self.policy == "raise":
            raise RuntimeError("callback exploded")
        if self.policy == "accept":
            return True
        if self.policy == "reject":
            return False
        return ok

    @property
    def depths(self) -> list[int]:
        return [c[1].depth for c in self.calls]

    @property
    def codes(self) -> list[str]:
        return [c[2].name for c in self.calls]


@dataclass
class Outcome:
    server_error: TLSHandshakeError | None
    client_error: TLSHandshakeError | None
    server_session: SessionInfo | None
    client_session: SessionInfo | None
    exchanged: bool
    """Application data went both ways over the link."""
    server_openssl_verify_result: int | None = None
    client_openssl_verify_result: int | None = None
    """What OpenSSL itself recorded (``SSL_get_verify_result``), to hold our report to it."""

    @property
    def ok(self) -> bool:
        return self.exchanged and self.server_error is None and self.client_error is None


def openssl_verify_result(link: SecureLink) -> int:
    """OpenSSL's own verdict on the peer of ``link``, read from its SSL object.

    pyOpenSSL resets it to OK when the callback accepts an error, so it equals our
    ``verify_result`` only where the callback refused or OpenSSL's error stood.
    """
    engine = link._protocol.engine
    assert engine is not None
    return int(openssl_lib.SSL_get_verify_result(engine._conn._ssl))


async def _run(server_tls: TLSSettings, client_tls: TLSSettings, host: str) -> Outcome:
    loop = asyncio.get_running_loop()
    server_ready: asyncio.Future[TLSHandshakeError | None] = loop.create_future()
    server_sessions: list[SessionInfo] = []
    server_verify_results: list[int] = []

    def on_ready(peer: str, error: TLSHandshakeError | None) -> None:
        if not server_ready.done():
            server_ready.set_result(error)

    async def handler(link: SecureLink) -> None:
        assert link.session is not None
        server_sessions.append(link.session)
        server_verify_results.append(openssl_verify_result(link))
        data = await link.read()
        if data == b"ping":
            link.write(b"pong")
            await link.drain()
        await link.read()  # until the client closes

    server = await serve(
        handler, host, 0, server_tls, events=LinkEvents(on_secure_link_ready=on_ready)
    )
    client_error: TLSHandshakeError | None = None
    client_session: SessionInfo | None = None
    client_verify_result: int | None = None
    exchanged = False
    async with server:
        try:
            link = await connect(host, server.port, client_tls)
        except TLSHandshakeError as exc:
            client_error = exc
        else:
            client_session = link.session
            client_verify_result = openssl_verify_result(link)
            try:
                link.write(b"ping")
                exchanged = await link.read() == b"pong"
            except TLSHandshakeError as exc:
                client_error = exc  # TLS 1.3: the server judged our certificate after our Finished
            except (ConnectionError, OSError):
                pass
            await link.close()
        server_error = await asyncio.wait_for(server_ready, 30)
    return Outcome(
        server_error=server_error,
        client_error=client_error,
        server_session=server_sessions[0] if server_sessions else None,
        client_session=client_session,
        exchanged=exchanged,
        server_openssl_verify_result=server_verify_results[0] if server_verify_results else None,
        client_openssl_verify_result=client_verify_result,
    )


def handshake(server_tls: TLSSettings, client_tls: TLSSettings, host: str = "127.0.0.1") -> Outcome:
    """Run one server/client pair on loopback to the end and report both sides."""
    return asyncio.run(_run(server_tls, client_tls, host))


def handshake_in_memory(client: TLSEngine, server: TLSEngine) -> None:
    """Carry two engines' handshake records to each other until both are done (raises the
    TLSHandshakeError of the side that refuses)."""
    while not (client.handshake_complete and server.handshake_complete):
        client.do_handshake()
        for chunk in client.data_to_send():
            server.receive_data(chunk)
        server.do_handshake()
        for chunk in server.data_to_send():
            client.receive_data(chunk)
