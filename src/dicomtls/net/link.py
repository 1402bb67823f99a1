"""The secure link over asyncio: a socket, a TLS engine, and nothing that can block.

One :class:`_LinkProtocol` per TCP connection feeds received bytes to the
sans-I/O :class:`~dicomtls.tls.engine.TLSEngine` and writes what it produces.
The handshake runs as bytes arrive, on the event loop, so a peer that connects and
says nothing holds only a timer and an OpenSSL object: every other connection keeps
handshaking, and :mod:`dicomtls.net.pending` bounds how many may be pending. Plain
TCP (``tls=None``) uses the same path without the engine.

After the handshake, ciphertext waits in the engine until the reader asks for it:
:meth:`SecureLink.read_into` decrypts straight into the caller's buffer (the body
of the PDU being received), so application data is never copied in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import socket
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Self

from dicomtls.errors import ConnectError, ListenError
from dicomtls.logs import get_logger
from dicomtls.net.pending import HandshakeLimits, PendingHandshakes, address_key
from dicomtls.net.proxy import ProxyHeaderError, ProxyProtocol, parse_header
from dicomtls.tls.engine import TLSClosed, TLSEngine
from dicomtls.tls.errors import TLSError, TLSHandshakeError
from dicomtls.tls.flags import Side
from dicomtls.tls.session import SessionInfo
from dicomtls.tls.settings import TLSSettings

__all__ = [
    "LISTEN_BACKLOG",
    "ClosedOnExit",
    "HandshakeLimits",
    "LinkEvents",
    "ProxyProtocol",
    "SecureLink",
    "Server",
    "TLSSource",
    "connect",
    "current_settings",
    "serve",
]

log = get_logger("dicomtls.net")

_HIGH_WATER = 1 << 20  # pause reading the socket when this much data waits for the reader
_RECEIVE_BUFFER = 1 << 18  # what one read of the socket may bring (asyncio's own size)
_SMALL_READ = 4096  # a read this small is a message's head or tail, not a bulk transfer
_TAKE_CHUNK = 64 << 10  # read() decrypts into this, then copies: it is for small messages
_per_thread = threading.local()
#: Connections the kernel completes before we accept them. With asyncio's 100, a flood fills
#: the queue faster than we accept and the kernel drops SYNs (a good client then waits 1 s,
#: 3 s, ... for its retry) before we could refuse anything cheaply: 4,000 connections in a
#: row took 35 s to open, 2 s with 1,024. Linux caps it at net.core.somaxconn.
LISTEN_BACKLOG = 1024


def _receive_buffer() -> memoryview:
    """Where the socket reads land, one per event-loop thread: asyncio fills it and hands
    it back within the same call (get_buffer, recv_into, buffer_updated), and what arrived
    is copied out at once, so 500 connections need one buffer, not 500."""
    buffer: memoryview | None = getattr(_per_thread, "receive", None)
    if buffer is None:
        buffer = _per_thread.receive = memoryview(bytearray(_RECEIVE_BUFFER))
    return buffer


#: Plaintext encrypted per step: its ciphertext (16 records and their overhead) leaves the
#: memory BIO in one read and goes to the socket as it is, never joined with the next.
_ENCRYPT_SLICE = 240 << 10
#: Small messages (a C-STORE-RSP, about 200 bytes) written in one turn of the loop leave in
#: one send; above this much plaintext waiting they go at once, so memory stays bounded.
_CORK_LIMIT = 64 << 10
#: The transport's write buffer: :meth:`SecureLink.send` waits above this much ciphertext,
#: so what it encrypts next mostly goes straight to the socket instead of being copied into
#: asyncio's buffer first, and memory stays bounded.
_WRITE_HIGH_WATER = 256 << 10
#: Ciphertext the transport may hold for a peer that is not reading, once reading from that
#: peer made more: TLS records its own records ask us to answer (a TLS 1.3 KeyUpdate with
#: update_requested gets one back at once). Our own sends wait at _WRITE_HIGH_WATER, so a
#: peer that reads stays far below; one that asks hundreds of thousands of key updates and
#: reads nothing would have us queue as many bytes as it sends, without end.
_UNREAD_LIMIT = 4 * _WRITE_HIGH_WATER
#: After our A-ABORT: how long, and how much, we read and drop before closing (linger_close).
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 1 << 20


@dataclass(frozen=True)
class LinkEvents:
    """Optional callbacks, the seed's connection events in Python form."""

    on_connected: Callable[[str], None] | None = None
    """Client: the TCP connection to the peer (``host:port``) is up."""
    on_accepted: Callable[[str], None] | None = None
    """Server: a TCP connection from the peer was accepted."""
    on_secure_link_ready: Callable[[str, TLSHandshakeError | None], None] | None = None
    """The handshake finished: ``None`` on success, else the error that ended it."""
    on_refused: Callable[[str, str], None] | None = None
    """Server: a connection from the peer was closed at once, before any TLS work, because
    too many handshakes were pending (the reason is ``pending-handshakes`` in total or
    ``pending-handshakes-per-peer``) or, with the PROXY protocol, because it came from an
    untrusted address (``proxy-untrusted``), had no valid header in time (``proxy-header``)
    or was the proxy's own health check (``proxy-local``, closed quietly). Called for every
    such connection: count, don't log."""


def _peer_name(transport: asyncio.BaseTransport, which: str = "peername") -> str:
    address = transport.get_extra_info(which)
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


def _host_of(transport: asyncio.BaseTransport) -> str:
    address = transport.get_extra_info("peername")
    return str(address[0] if isinstance(address, tuple) else address)


def _forget_frames(error: BaseException) -> None:
    """Drop the tracebacks of an error that is kept (a failed handshake, in ``ready``).

    They hold the frames the error passed through, and those the connection (their callers'
    frames included): a cycle only the garbage collector frees, so a flood's OpenSSL buffers
    would outlive it. The error was logged already; its message says what happened.
    """
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__ or link.__context__


class ClosedOnExit(ABC):
    """Something with an ``async close()`` that ``async with`` closes on the way out."""

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class SecureLink(ClosedOnExit):
    """An established connection: TLS when configured, plain TCP otherwise.

    ``read`` returns decrypted bytes as they arrive (``b""`` once the peer has
    closed), ``write`` encrypts and queues, ``drain`` waits for the socket.
    """

    def __init__(self, protocol: _LinkProtocol) -> None:
        self._protocol = protocol

    @property
    def peer(self) -> str:
        return self._protocol.peer

    @property
    def local(self) -> str:
        """Our own address on this connection (``host:port``), as the peer names us."""
        return self._protocol.local

    @property
    def session(self) -> SessionInfo | None:
        """The negotiated TLS parameters, ``None`` for plain TCP."""
        return self._protocol.session

    @property
    def is_tls(self) -> bool:
        return self._protocol.engine is not None

    async def read(self) -> bytes:
        return await self._protocol.read()

    def read_nowait(self) -> bytes:
        """What has already arrived (``b""`` if nothing), without waiting: for C-CANCEL checks."""
        return self._protocol.read_nowait()

    async def read_into(self, buffer: memoryview) -> int:
        """Wait for data and write it into ``buffer``; the count, 0 once the peer has closed."""
        return await self._protocol.read_into(buffer)

    def read_into_nowait(self, buffer: memoryview) -> int:
        """What has already arrived, into ``buffer`` (0 if nothing), without waiting."""
        return self._protocol.read_into_nowait(buffer)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._protocol.write(data)

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Write a large payload, encrypting the next part only once the socket takes more."""
        await self._protocol.send(data)

    async def drain(self) -> None:
        await self._protocol.drain()

    async def close(self) -> None:
        """Send close_notify and close the socket, waiting until it is closed."""
        await self._protocol.close()

    def abort(self) -> None:
        self._protocol.abort()

    async def linger_close(
        self, seconds: float = _LINGER_SECONDS, limit: int = _LINGER_BYTES
    ) -> None:
        """Close once the peer has had the chance to read what we sent last (an A-ABORT).

        Closing a socket with the peer's data unread makes the kernel answer with a reset,
        and a reset can destroy what the peer had not read yet: our A-ABORT and its reason.
        PS3.8 has the aborting side wait for the peer to close (Sta13); we wait at most
        ``seconds`` and drop at most ``limit`` bytes meanwhile, so lingering costs a hostile
        peer's slot a moment, not the node its memory.
        """
        dropped = 0
        with contextlib.suppress(TimeoutError, ConnectionError, TLSError):
            async with asyncio.timeout(seconds):
                while dropped < limit and (data := await self.read()):
                    dropped += len(data)
        await self.close()

    def close_soon(self) -> None:
        """Close after what is queued has been sent (close_notify for TLS), without waiting."""
        self._protocol.close_soon()


class _LinkProtocol(asyncio.BufferedProtocol):
    def __init__(
        self,
        tls: TLSSettings | None,
        side: Side,
        events: LinkEvents,
        server_hostname: str | None = None,
        pending: PendingHandshakes | None = None,
        proxy: ProxyProtocol | None = None,
    ) -> None:
        self._tls = tls
        self._pending = pending
        self._proxy = proxy
        self._proxy_header: bytearray | None = None  # set while the PROXY header is awaited
        self._proxy_key: str | None = None
        self._side = side
        self._events = events
        self._server_hostname = server_hostname
        self._loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[SecureLink] = self._loop.create_future()
        self.engine: TLSEngine | None = None
        self.session: SessionInfo | None = None
        self.peer = "?"
        self.local = "?"
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._inbox: deque[bytes] = deque()  # plain TCP: what arrived, not yet read
        self._inbox_size = 0
        self._inbox_offset = 0  # how much of the first inbox chunk was read already
        self._ciphertext = 0  # TLS: roughly what waits in the engine for the reader
        self._eof = False
        self._error: BaseException | None = None
        self._reader: asyncio.Future[None] | None = None
        self._paused_reading = False
        self._write_paused = False
        self._corked = 0  # plaintext of small writes encrypted, not yet handed to the socket
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._handshake_failed = False  # reported once; the close that follows says nothing new
        self._quickack: socket.socket | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.peer = _peer_name(transport)
        if self._proxy is not None:
            self._await_proxy_header(transport, self._proxy)
            return
        self._start(transport, _host_of(transport))

    def _start(self, transport: asyncio.Transport, host: str) -> None:
        """The connection is the client's (``host``): admit it, then start TLS."""
        if self._tls is not None and self._pending is not None and not self._admit(transport, host):
            return
        self.local = _peer_name(transport, "sockname")
        self._tune(transport)
        callback = (
            self._events.on_accepted if self._side is Side.SERVER else self._events.on_connected
        )
        if callback is not None:
            callback(self.peer)
        if self._tls is None:
            self.ready.set_result(SecureLink(self))
            return
        self._timer = self._loop.call_later(self._tls.handshake_timeout, self._handshake_timed_out)
        try:
            self.engine = TLSEngine(
                self._tls, self._side, self.peer, server_hostname=self._server_hostname
            )
            self._advance_handshake()
        except TLSHandshakeError as exc:
            self._fail_handshake(exc)

    def _tune(self, transport: asyncio.Transport) -> None:
        """No Nagle delay on our small messages, quick ACKs where the kernel has them, and
        the write buffer bound that paces :meth:`send`."""
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if hasattr(socket, "TCP_QUICKACK"):
                self._quickack = sock
        transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)

    # -- PROXY protocol v2 (net/proxy.py): the client's address, from a trusted balancer ------

    def _await_proxy_header(self, transport: asyncio.Transport, proxy: ProxyProtocol) -> None:
        """Only a trusted proxy may say who the client is; it must say so at once. Until it
        has, the connection counts against the pending-handshake total (not a per-peer
        quota: one balancer carries everyone), and holds at most ``max_header`` bytes."""
        host = _host_of(transport)
        if not proxy.trusts(host):
            log.warning(
                "connection from %s refused: not a trusted proxy (trusted_proxies: %s), and "
                "every connection must come through one (proxy_protocol)",
                self.peer,
                proxy.describe(),
            )
            self._refuse("proxy-untrusted", "not a trusted proxy")
            return
        if self._pending is not None:
            key = address_key(host)
            if not self._pending.admit(key, self.peer, per_peer=False):
                transport.abort()
                self.ready.set_exception(ConnectionRefusedError(f"{self.peer}: too many pending"))
                return
            self._proxy_key = key
        self._proxy_header = bytearray()
        self._timer = self._loop.call_later(proxy.header_timeout, self._proxy_timed_out)

    def _release_proxy_slot(self) -> None:
        if self._proxy_key is not None and self._pending is not None:
            self._pending.release(self._proxy_key)
        self._proxy_key = None

    def _proxy_received(self, data: memoryview) -> None:
        buffer, proxy = self._proxy_header, self._proxy
        assert buffer is not None and proxy is not None and self._transport is not None
        taken = data[: proxy.max_header + 1 - len(buffer)]  # never more than the bound
        buffer += taken
        try:
            header = parse_header(buffer, proxy.max_header)
        except ProxyHeaderError as exc:
            log.warning("connection from proxy %s refused: %s", self.peer, exc)
            self._refuse("proxy-header", str(exc))
            return
        if header is None:
            return
        self._proxy_header = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._release_proxy_slot()
        if header.local:  # the balancer's own health check: nothing to say about it
            self._refuse("proxy-local", "PROXY LOCAL", quietly=True)
            return
        rest = bytes(buffer[header.length :]) + bytes(data[len(taken) :])  # the client's own
        via = self.peer
        self.peer = header.peer
        log.debug("connection from %s via proxy %s", self.peer, via)
        assert header.source is not None
        self._start(self._transport, header.source[0])
        if rest and not self._transport.is_closing():
            self._received(memoryview(rest))

    def _proxy_timed_out(self) -> None:
        if self._proxy_header is None or self._proxy is None:
            return
        log.warning(
            "connection from proxy %s refused: no complete PROXY v2 header within %s s",
            self.peer,
            self._proxy.header_timeout,
        )
        self._refuse("proxy-header", "no PROXY header in time")

    def _refuse(self, reason: str, why: str, *, quietly: bool = False) -> None:
        """Close before any TLS work; counted through ``on_refused`` (never audited)."""
        self._proxy_header = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._release_proxy_slot()
        if self._transport is not None:
            if quietly:
                self._transport.close()
            else:
                self._transport.abort()
        if not self.ready.done():
            self.ready.set_exception(ConnectionRefusedError(f"{self.peer}: {why}"))
        if self._events.on_refused is not None:
            self._events.on_refused(self.peer, reason)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _receive_buffer()  # shared: the engine copies it in, plain TCP copies it out

    def buffer_updated(self, nbytes: int) -> None:
        if self._quickack is not None and nbytes < _SMALL_READ:
            self._acknowledge_at_once(self._quickack)
        data = _receive_buffer()[:nbytes]
        if self._proxy_header is not None:
            self._proxy_received(data)
            return
        self._received(data)

    def _received(self, data: memoryview) -> None:
        engine = self.engine
        if engine is None:
            self._deliver(bytes(data))
            return
        try:
            engine.receive_data(data)
            if not engine.handshake_complete:
                self._advance_handshake()
                if not engine.handshake_complete:
                    return
            # Application data stays encrypted until the reader asks (read_into).
            self._ciphertext += len(data)
            self._pause_if_full(self._ciphertext)
            self._wake_reader()
        except TLSHandshakeError as exc:
            self._fail_handshake(exc)
        except TLSError as exc:
            self._fail(exc)

    @staticmethod
    def _acknowledge_at_once(sock: socket.socket) -> None:
        """Acknowledge what arrived now, not after the kernel's delayed-ACK timer (Linux).

        A peer that leaves Nagle's algorithm on (DCMTK as shipped) holds the last small
        segment of a message until the one before it is acknowledged; with delayed ACKs
        on our side that costs 40 ms per message. Only small reads ask for it: in a bulk
        transfer an ACK per segment would cost more than it saves. The kernel turns quick
        ACKs off again by itself, so this is renewed on each such read.
        """
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def eof_received(self) -> bool | None:
        engine = self.engine
        if engine is not None:
            engine.receive_eof()
            if not engine.handshake_complete:
                try:
                    self._advance_handshake()
                except TLSHandshakeError as exc:
                    self._fail_handshake(exc)
                    return None
        self._eof = True  # a TLS reader still decrypts what is left before it sees the end
        self._wake_reader()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._proxy_header = None
        self._release_proxy_slot()
        self._record_loss(exc)
        self._eof = True
        self._wake_reader()
        self._wake_writers()
        if not self._closed.done():
            self._closed.set_result(None)

    def _record_loss(self, exc: Exception | None) -> None:
        """Why the connection ended, for whoever awaits ``ready`` or reads next: the TLS
        engine's explanation if it has one (reported once), else the socket's."""
        if self.ready.done() and (self._error is not None or self._eof):
            return  # the reader knows already how it ends
        explained = self._explained_close()
        if explained is not None:
            self._report_failure(explained)
        lost = f"connection to {self.peer} lost"
        if not self.ready.done():
            self.ready.set_exception(explained or ConnectionError(lost))
        elif explained is not None or exc is not None:
            self._error = explained or ConnectionResetError(f"{lost}: {exc}")

    def _explained_close(self) -> TLSHandshakeError | None:
        """The TLS engine's explanation of a dropped connection: during the handshake, or
        after it e.g. a TLS 1.3 server that judged our certificate and reset."""
        if self.engine is None or self._handshake_failed:
            return None  # plain TCP, or reported already
        return self.engine.close_error()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

    def _wake_writers(self) -> None:
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # -- handshake ------------------------------------------------------------------------

    def _admit(self, transport: asyncio.Transport, host: str) -> bool:
        """Count this connection's handshake against the server's bounds, or close it now,
        before OpenSSL is asked for anything: a refusal costs an accept and a close."""
        pending = self._pending
        assert pending is not None
        key = address_key(host)
        if not pending.admit(key, self.peer):
            transport.abort()
            self.ready.set_exception(
                ConnectionRefusedError(f"{self.peer}: too many TLS handshakes pending")
            )
            return False
        self.ready.add_done_callback(lambda _: pending.release(key))
        return True

    def _advance_handshake(self) -> None:
        engine = self.engine
        assert engine is not None and self._transport is not None
        done = engine.do_handshake()
        self._flush()
        if done:
            if self._timer is not None:
                self._timer.cancel()
            self.session = engine.session()
            if self._events.on_secure_link_ready is not None:
                self._events.on_secure_link_ready(self.peer, None)
            if not self.ready.done():
                self.ready.set_result(SecureLink(self))

    def _handshake_timed_out(self) -> None:
        if self.engine is not None and not self.engine.handshake_complete:
            self._fail_handshake(self.engine.timeout_error())

    def _report_failure(self, error: TLSHandshakeError) -> None:
        log.warning("%s", error)
        if self._events.on_secure_link_ready is not None:
            self._events.on_secure_link_ready(self.peer, error)

    def _fail_handshake(self, error: TLSHandshakeError) -> None:
        """End a connection whose handshake failed: one log line, the alert sent, socket closed."""
        if self._timer is not None:
            self._timer.cancel()
        self._handshake_failed = True
        _forget_frames(error)
        already_ready = self.ready.done()
        if not already_ready:
            self._report_failure(error)
            self.ready.set_exception(error)
        else:
            # TLS 1.3 client: the server refused our certificate after our handshake was done.
            self._report_failure(error)
            self._error = error
            self._wake_reader()
        with contextlib.suppress(Exception):
            self._flush()  # carries our alert, if OpenSSL produced one
        if self._transport is not None:
            self._transport.close()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._wake_reader()
        if self._transport is not None:
            self._transport.abort()

    # -- data path ------------------------------------------------------------------------

    def _deliver(self, data: bytes) -> None:
        self._inbox.append(data)
        self._inbox_size += len(data)
        self._pause_if_full(self._inbox_size)
        self._wake_reader()

    def _pause_if_full(self, waiting: int) -> None:
        if waiting > _HIGH_WATER and not self._paused_reading and self._transport:
            self._paused_reading = True
            self._transport.pause_reading()

    def _consumed(self, count: int) -> None:
        """The reader took ``count`` bytes: read the socket again once little is left."""
        if self.engine is not None:
            self._ciphertext = max(0, self._ciphertext - count) if count else 0
            waiting = self._ciphertext
        else:
            waiting = self._inbox_size
        if self._paused_reading and waiting < _HIGH_WATER // 4 and self._transport is not None:
            self._paused_reading = False
            self._transport.resume_reading()

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def _take_into(self, buffer: memoryview) -> int:
        """What has arrived, written into ``buffer``: decrypted (TLS) or copied (plain)."""
        engine = self.engine
        if engine is None:
            count = self._copy_from_inbox(buffer)
        elif not engine.handshake_complete:
            return 0
        else:
            try:
                count = engine.read_into(buffer)
            except TLSClosed:
                self._eof = True
                count = 0
            except TLSHandshakeError as exc:  # TLS 1.3: the server refused us after all
                self._fail_handshake(exc)
                raise
            except TLSError as exc:
                self._fail(exc)
                raise
            finally:
                self._flush()  # reading may have produced protocol records (key updates, alerts)
            self._check_unread()
        self._consumed(count)
        return count

    def _check_unread(self) -> None:
        """End the link of a peer that reads none of the answers its records asked for."""
        waiting = self._transport.get_write_buffer_size() if self._transport else 0
        if waiting <= _UNREAD_LIMIT:
            return
        error = TLSError(
            f"TLS link to {self.peer} ended: the peer reads nothing we send, and {waiting:,} "
            f"bytes wait for it, more than {_UNREAD_LIMIT:,} (answers to the TLS records it "
            "sends, a key update requested in each, say)"
        )
        self._fail(error)
        raise error

    def _copy_from_inbox(self, buffer: memoryview) -> int:
        count = 0
        while self._inbox and count < len(buffer):
            chunk = self._inbox[0]
            take = min(len(chunk) - self._inbox_offset, len(buffer) - count)
            buffer[count : count + take] = chunk[self._inbox_offset : self._inbox_offset + take]
            count += take
            self._inbox_offset += take
            if self._inbox_offset == len(chunk):
                self._inbox.popleft()
                self._inbox_offset = 0
        self._inbox_size -= count
        return count

    def _take_all(self) -> bytes:
        """Everything that has arrived, as bytes."""
        if self.engine is None:
            data = b"".join(self._inbox)[self._inbox_offset :]
            self._inbox.clear()
            self._inbox_size = self._inbox_offset = 0
            self._consumed(len(data))
            return data
        out = bytearray()
        chunk = memoryview(bytearray(_TAKE_CHUNK))
        try:
            while count := self._take_into(chunk):
                out += chunk[:count]
        except TLSError:
            if not out:
                raise  # else: hand over what came first; the next read reports the failure
        return bytes(out)

    async def _wait(self) -> bool:
        """Wait for more to arrive; False when nothing more will (an error is raised)."""
        if self._error is not None:
            raise self._error
        if self._eof:
            return False
        self._reader = self._loop.create_future()
        await self._reader
        return True

    async def read(self) -> bytes:
        while not (data := self._take_all()):
            if not await self._wait():
                return b""
        return data

    def read_nowait(self) -> bytes:
        try:
            return self._take_all()
        except TLSError:
            return b""  # recorded: the next read raises it

    async def read_into(self, buffer: memoryview) -> int:
        while not (count := self._take_into(buffer)):
            if not await self._wait():
                return 0
        return count

    def read_into_nowait(self, buffer: memoryview) -> int:
        try:
            return self._take_into(buffer)
        except TLSError:
            return 0  # recorded: the next read raises it

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionError(f"connection to {self.peer} is closed")
        engine = self.engine
        if engine is None:
            self._transport.write(data)
            return
        if len(data) <= _ENCRYPT_SLICE:
            engine.send(bytes(data) if isinstance(data, bytearray) else data)
            self._flush_soon(len(data))
            return
        view = memoryview(data).cast("B")
        for start in range(0, len(view), _ENCRYPT_SLICE):
            engine.send(view[start : start + _ENCRYPT_SLICE])
            self._flush()

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), _ENCRYPT_SLICE):
            self.write(view[start : start + _ENCRYPT_SLICE])
            await self.drain()

    def _flush_soon(self, size: int) -> None:
        """Send at the end of this turn of the loop: the answers to several C-STOREs committed
        together leave in one send, where a send each cost the SCP about as much CPU as
        writing the object (a loopback send runs the peer's receive path too). Nothing holds
        the caller's buffer meanwhile: the engine has already encrypted it into its own."""
        if self._corked == 0 and size < _CORK_LIMIT:
            self._loop.call_soon(self._flush)
        self._corked += size
        if self._corked >= _CORK_LIMIT:
            self._flush()

    def _flush(self) -> None:
        self._corked = 0
        if self.engine is None or self._transport is None:
            return
        for chunk in self.engine.data_to_send():
            if self._transport.is_closing():
                return
            self._transport.write(chunk)

    async def drain(self) -> None:
        if self._error is not None:
            raise self._error
        if not self._write_paused:
            return
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def close_soon(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        if self.engine is not None and self.engine.handshake_complete:
            self.engine.close()
            self._flush()
        self._transport.close()

    async def close(self) -> None:
        if self._transport is None:
            return
        self.close_soon()
        await self._closed

    def abort(self) -> None:
        if self._transport is not None:
            if self._corked:  # what was written goes first, as if it had been sent at once
                self._flush()
            self._transport.abort()


async def connect(
    host: str,
    port: int,
    tls: TLSSettings | None,
    *,
    events: LinkEvents | None = None,
    connect_timeout: float = 30.0,
) -> SecureLink:
    """Open a connection and, with ``tls``, complete the handshake.

    Raises :class:`~dicomtls.errors.ConnectError` when no TCP connection can be made, and
    :class:`~dicomtls.tls.errors.TLSHandshakeError` when the handshake fails.
    """
    loop = asyncio.get_running_loop()
    events = events or LinkEvents()
    side = Side.CLIENT

    def factory() -> _LinkProtocol:
        return _LinkProtocol(tls, side, events, server_hostname=host)

    try:
        async with asyncio.timeout(connect_timeout):
            _, protocol = await loop.create_connection(factory, host, port)
    except TimeoutError as exc:
        raise ConnectError(f"{host}:{port}", "TCP connection failed: timed out") from exc
    except OSError as exc:
        raise _connect_error(f"{host}:{port}", exc) from exc
    return await protocol.ready


def _connect_error(peer: str, exc: OSError) -> ConnectError:
    """Why no TCP connection was made, in a person's words: asyncio says a refusal as
    "Connect call failed ('127.0.0.1', 2763)", and a name that does not resolve only
    with the resolver's own phrase."""
    if isinstance(exc, socket.gaierror):
        return ConnectError(
            peer,
            f"the host name does not resolve ({exc.strerror})",
            "check the host name's spelling, or give the node's IP address",
        )
    codes = {int(code) for code in re.findall(r"\[Errno (\d+)\]", str(exc))} | {exc.errno}
    if codes - {None} == {errno.ECONNREFUSED}:  # refused on every address tried
        return ConnectError(
            peer,
            "TCP connection refused: nothing listens on that port",
            "check the port, and that the node is running there",
        )
    return ConnectError(peer, f"TCP connection failed: {exc.strerror or exc}")


HandlerType = Callable[[SecureLink], Awaitable[Any]]

TLSSource = TLSSettings | Callable[[], TLSSettings]
"""Fixed settings, or a callable asked per new connection (e.g. a ReloadingSettings)."""


def current_settings(tls: TLSSource | None) -> TLSSettings | None:
    """The settings a new connection uses now."""
    if tls is None or isinstance(tls, TLSSettings):
        return tls
    return tls()


class Server(ClosedOnExit):
    """A listening secure-link server; each accepted link runs ``handler`` in its own task."""

    def __init__(
        self, server: asyncio.Server, tasks: set[asyncio.Task[Any]], pending: PendingHandshakes
    ) -> None:
        self._server = server
        self._tasks = tasks
        self._pending = pending

    @property
    def pending_handshakes(self) -> int:
        """TLS handshakes in progress now (each counted until it succeeds, fails or times out)."""
        return self._pending.total

    @property
    def port(self) -> int:
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._server.sockets)

    async def close(self, grace: float | None = None) -> None:
        """Stop accepting, let running handlers finish (within ``grace`` s), then cancel the rest."""
        self._server.close()
        await self._server.wait_closed()
        if not self._tasks:
            return
        _, unfinished = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in unfinished:
            task.cancel()
        if unfinished:
            log.warning(
                "shutdown: %d connection(s) still busy after %s s, cancelled",
                len(unfinished),
                grace,
            )
            await asyncio.gather(*unfinished, return_exceptions=True)


async def serve(
    handler: HandlerType,
    host: str,
    port: int,
    tls: TLSSource | None,
    *,
    events: LinkEvents | None = None,
    handshakes: HandshakeLimits | None = None,
    proxy: ProxyProtocol | None = None,
) -> Server:
    """Listen on ``host:port``; every link whose handshake succeeds goes to ``handler``.

    A failed handshake never reaches ``handler``: it is logged in one line with the
    peer, stage, certificate and hint, and reported through ``events``. With a
    callable ``tls``, each new connection uses what it returns at that moment.
    TLS handshakes in progress are bounded per peer address and in total by
    ``handshakes`` (default :class:`HandshakeLimits`): a connection over a bound is
    closed at once (see :mod:`dicomtls.net.pending`). With ``proxy``, every connection must
    come from a trusted proxy and start with a PROXY v2 header, read before the TLS
    ClientHello; the client it names is the link's ``peer`` (see :mod:`dicomtls.net.proxy`).
    """
    loop = asyncio.get_running_loop()
    events = events or LinkEvents()
    first = current_settings(tls)
    if first is not None:
        first.context(Side.SERVER)  # a server without a certificate fails now, not per connection
    tasks: set[asyncio.Task[Any]] = set()
    pending = PendingHandshakes(handshakes or HandshakeLimits(), events.on_refused)

    async def run(protocol: _LinkProtocol) -> None:
        try:
            link = await protocol.ready
        except (TLSHandshakeError, ConnectionError) as exc:
            _forget_frames(exc)  # its traceback now holds this frame
            return  # already logged and reported
        try:
            await handler(link)
        except Exception:
            log.exception("handler for %s failed", link.peer)
        finally:
            await link.close()

    def factory() -> _LinkProtocol:
        protocol = _LinkProtocol(
            current_settings(tls), Side.SERVER, events, pending=pending, proxy=proxy
        )
        task = loop.create_task(run(protocol))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return protocol

    try:
        server = await loop.create_server(
            factory, host, port, reuse_address=True, backlog=LISTEN_BACKLOG
        )
    except OSError as exc:
        raise ListenError(f"{host}:{port}", exc) from exc
    return Server(server, tasks, pending)
