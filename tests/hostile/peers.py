"""Hostile peers, each in full control of its bytes: raw TCP, stdlib TLS, and a pyOpenSSL
client driven flight by flight over memory BIOs (so a test can stop it mid-handshake)."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import select
import socket
import ssl
import struct
import time
from collections.abc import Sequence
from pathlib import Path

from OpenSSL import SSL

from dicomtls.ul import PDUReader
from dicomtls.ul.acse import Proposal, build_request
from dicomtls.ul.pdu import AssociateAC

from .conftest import AE, peer_name

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
READ_TIMEOUT = 20.0


#: Source ports for test connections, below the kernel's ephemeral range and never one
#: twice in a run: a node names a peer by address and port, and a port the kernel handed
#: out again made a late line about an earlier connection look like this one's.
_SOURCE_PORTS = itertools.cycle(range(10_000, 32_768))


def tcp(port: int, timeout: float = READ_TIMEOUT, receive_buffer: int = 0) -> socket.socket:
    """A connection to the node on loopback, from a source port no earlier one used;
    ``receive_buffer`` (bytes) keeps the kernel from holding much of what the node sends."""
    for source in _SOURCE_PORTS:
        sock = socket.socket()
        try:
            if receive_buffer:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.settimeout(timeout)
            sock.bind(("127.0.0.1", source))
            sock.connect(("127.0.0.1", port))
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue  # some other program holds it: the next one
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise AssertionError("unreachable: the cycle never ends")


def read_to_eof(sock: socket.socket | ssl.SSLSocket, timeout: float = READ_TIMEOUT) -> bytes:
    """Everything the server sends until it closes (a reset counts as a close)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, ssl.SSLError, ssl.SSLEOFError):
        pass
    return data


def is_open(sock: socket.socket) -> bool:
    """The server has neither closed nor written to this connection (checked without waiting)."""
    if sock.fileno() < 0:
        return False
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def alerts(data: bytes) -> list[tuple[int, int]]:
    """(level, description) of each plaintext TLS alert record in ``data``."""
    found, pos = [], 0
    while pos + 5 <= len(data):
        kind, _, length = struct.unpack_from(">BHH", data, pos)
        if kind == 0x15 and length == 2 and pos + 7 <= len(data):
            found.append((data[pos + 5], data[pos + 6]))
        pos += 5 + length
    return found


PROTOCOL_VERSION, HANDSHAKE_FAILURE = 70, 40


def client_hello(
    version: int, suites: Sequence[int], *, record_version: int | None = None
) -> bytes:
    """A ClientHello record offering ``version`` (no supported_versions extension) and ``suites``."""
    groups = struct.pack(">H", 6) + struct.pack(">HHH", 0x001D, 0x0017, 0x0018)
    sigalgs = struct.pack(">H", 6) + struct.pack(">HHH", 0x0403, 0x0804, 0x0401)
    extensions = b"".join(
        struct.pack(">HH", kind, len(value)) + value
        for kind, value in ((0x000A, groups), (0x000B, b"\x01\x00"), (0x000D, sigalgs))
    )
    body = (
        struct.pack(">H", version)
        + os.urandom(32)
        + b"\x00"
        + struct.pack(">H", 2 * len(suites))
        + b"".join(struct.pack(">H", s) for s in suites)
        + b"\x01\x00"
        + struct.pack(">H", len(extensions))
        + extensions
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16" + struct.pack(">HH", record_version or version, len(handshake)) + handshake


def echo_request(calling: str = "RAW") -> bytes:
    return build_request(calling, AE, [Proposal(VERIFICATION, (IMPLICIT,))]).encode()


class DicomPeer:
    """Speaks hand-built PDUs over a socket (plain, or TLS from Python's ``ssl``)."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket, name: str) -> None:
        self.sock = sock
        self.name = name
        self.pdus = PDUReader()

    @classmethod
    def plain(cls, port: int) -> DicomPeer:
        sock = tcp(port)
        return cls(sock, peer_name(sock))

    @classmethod
    def tls(cls, port: int, cert: Path, key: Path, ca: Path) -> DicomPeer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(ca)
        context.load_cert_chain(cert, key)
        sock = tcp(port)
        name = peer_name(sock)
        return cls(context.wrap_socket(sock), name)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next_pdu(self) -> object | None:
        self.sock.settimeout(READ_TIMEOUT)
        while (pdu := self.pdus.next_pdu()) is None:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                return None
            if not data:
                return None
            self.pdus.feed(data)
        return pdu

    def associate(self) -> AssociateAC:
        self.send(echo_request())
        ac = self.next_pdu()
        assert isinstance(ac, AssociateAC), ac
        return ac

    def close(self) -> None:
        self.sock.close()


class SteppedTLS:
    """A pyOpenSSL client over memory BIOs on a blocking socket, advanced one flight at a time."""

    def __init__(self, port: int, context: SSL.Context) -> None:
        self.sock = tcp(port)
        self.name = peer_name(self.sock)
        self.conn = SSL.Connection(context, None)
        self.conn.set_connect_state()
        self.received = b""  # every byte the server sent, for alerts()
        self.pdus = PDUReader()

    @staticmethod
    def context(
        cert: Path | None = None,
        key: Path | None = None,
        *,
        max_version: int = SSL.TLS1_3_VERSION,
        ciphers: bytes | None = None,
    ) -> SSL.Context:
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_max_proto_version(max_version)
        context.set_verify(SSL.VERIFY_NONE, lambda *_: True)
        if ciphers is not None:
            context.set_cipher_list(ciphers)
        if cert is not None and key is not None:
            context.use_certificate_chain_file(str(cert))
            context.use_privatekey_file(str(key))
        return context

    def _advance(self) -> bool:
        """Run the handshake as far as it goes; True when complete. Raises SSL.Error."""
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            return False
        return True

    def pending(self) -> bytes:
        out = b""
        while True:
            try:
                out += self.conn.bio_read(65536)
            except SSL.WantReadError:
                return out

    def first_flight(self) -> bytes:
        """The ClientHello, not sent."""
        self._advance()
        return self.pending()

    def receive(self) -> bool:
        """Read one chunk from the server into the engine; False at EOF."""
        self.sock.settimeout(READ_TIMEOUT)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            return False
        self.received += data
        self.conn.bio_write(data)
        return True

    def until_our_turn(self) -> bytes:
        """Feed the server's flight until we have something to say (e.g. our certificate)."""
        while True:
            if not self.receive():
                raise ConnectionError("server closed before our second flight")
            with contextlib.suppress(SSL.Error):  # an alert: its bytes stay in self.received
                self._advance()
            out = self.pending()
            if out:
                return out

    def handshake(self) -> None:
        """A complete handshake (the server must accept us)."""
        self.sock.sendall(self.first_flight())
        while not self._advance():
            self.sock.sendall(self.pending())
            if not self.receive():
                raise ConnectionError("server closed during the handshake")
        self.sock.sendall(self.pending())

    def send_plaintext(self, data: bytes) -> None:
        self.conn.sendall(data)
        self.sock.sendall(self.pending())

    def next_pdu(self) -> object | None:
        """The next PDU the server sends over this TLS link (None if it closes first)."""
        while (pdu := self.pdus.next_pdu()) is None:
            try:
                self.pdus.feed(self.conn.recv(65536))
                continue
            except SSL.WantReadError:
                pass
            if not self.receive():
                return None
        return pdu

    def rest(self, timeout: float = READ_TIMEOUT) -> bytes:
        """What the server still sends until it closes."""
        more = read_to_eof(self.sock, timeout)
        self.received += more
        if more:
            self.conn.bio_write(more)
        return more


def trickle(sock: socket.socket, data: bytes, interval: float, stop_at: float) -> int:
    """Send ``data`` one byte at a time, ``interval`` s apart, until sent, the server closes,
    or ``stop_at`` (monotonic); returns the bytes sent. The pacing is the test input."""
    sent = 0
    for byte in data:
        if time.monotonic() > stop_at:
            break
        try:
            sock.sendall(bytes((byte,)))
        except OSError:
            break
        sent += 1
        time.sleep(interval)
    return sent


def openssl_verdict(stepped: SteppedTLS) -> str:
    """After ``rest()``: what our OpenSSL makes of the server's last words (an alert's reason)."""
    try:
        if stepped._advance():
            stepped.conn.recv(1)
    except SSL.Error as exc:
        return str(exc)
    return ""
