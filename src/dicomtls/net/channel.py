"""The channel: drives a sans-I/O UpperLayer from a secure link, with PS3.8's timers.

It reads the link into the upper layer's receive buffer, writes what the upper layer
produces, and hands out the upper layer's events one at a time, adding the ones time
makes: ARTIM expiry, and an idle timeout so an association that completes no PDU for too
long is aborted instead of holding its slot. On a plain link it first sniffs the peer's
opening bytes, so a TLS or HTTP client on a DICOM port is named as such.
"""

from __future__ import annotations

import asyncio
from collections import deque

from dicomtls.logs import get_logger
from dicomtls.net.link import SecureLink
from dicomtls.tls.errors import TLSError
from dicomtls.tls.flags import Side
from dicomtls.tls.sniff import SNIFF_MAX, describe_non_tls, looks_like_tls_client_hello, undecided
from dicomtls.ul.codes import AbortReason, AbortSource
from dicomtls.ul.connection import Aborted, Closed, Role, ULEvent, UpperLayer

__all__ = ["ARTIM_TIMEOUT", "Channel"]

log = get_logger("dicomtls.net")

ARTIM_TIMEOUT = 30.0


class Channel:
    """Reads the link, drives the UpperLayer, and hands out its events one by one."""

    def __init__(
        self,
        link: SecureLink,
        ul: UpperLayer,
        artim_timeout: float = ARTIM_TIMEOUT,
        idle_timeout: float | None = None,
    ) -> None:
        self.link = link
        self.ul = ul
        self._pending: deque[ULEvent] = deque()
        self._artim = artim_timeout
        self.idle_timeout = idle_timeout
        """Seconds a wait may pass without a PDU completing (None: no limit)."""
        self._first_bytes = not link.is_tls  # only a plain link can meet a TLS peer by mistake
        self._head = b""
        self.failure_logged = False
        """The link failed under an acceptor and its warning said why: the association's own
        end is then no second warning."""

    def flush(self) -> None:
        chunks = self.ul.data_to_send()
        try:
            for chunk in chunks:
                self.link.write(chunk)
        except ConnectionError:
            pass  # the transport is gone; the events already say so

    async def next_event(self) -> ULEvent:
        """The next event; ARTIM and the idle timeout run from the moment we start waiting for
        it, so a peer trickling a PDU a byte at a time cannot keep either from expiring."""
        started = asyncio.get_running_loop().time()
        while not self._pending:
            artim = self.ul.artim_running
            try:
                if not self._read_ready():  # else no timer to set up and cancel
                    async with asyncio.timeout_at(self._deadline(started, artim)):
                        await self._read()
            except TimeoutError:
                self._timer_expired(artim)
            except (ConnectionError, OSError) as exc:
                log.debug("link to %s failed: %s", self.link.peer, exc)
                self._pending.extend(self.ul.connection_closed())
            except TLSError as exc:
                if self.ul.role is not Role.ACCEPTOR:
                    raise  # a client reports it to its caller, as it is
                # e.g. a fatal alert or a bad record after the handshake: the link is gone
                log.warning("%s; connection closed", exc)
                self.failure_logged = True
                self._pending.extend(self.ul.connection_closed())
            self.flush()
            if self.ul.should_close and not self._pending:
                self._pending.append(Closed())
        return self._pending.popleft()

    def _deadline(self, started: float, artim: bool) -> float | None:
        """When the wait begun at ``started`` ends: ARTIM while it runs, else the idle
        timeout (None: no idle timeout)."""
        limit = self._artim if artim else self.idle_timeout
        return None if limit is None else started + limit

    def _read_ready(self) -> bool:
        """Take bytes that have already arrived, if any, without waiting (a large transfer
        mostly finds them there; a timeout per read cost more than the read)."""
        if self._first_bytes:
            return False  # the sniffing path reads as it always has
        if count := self.link.read_into_nowait(self.ul.receive_buffer()):
            self._received(count)
            return True
        return False

    async def _read(self) -> None:
        """One read of the link into the upper layer."""
        if self._first_bytes:
            self._receive(await self.link.read())
        else:  # straight into the PDU being received (TLS: decrypted there)
            self._received(await self.link.read_into(self.ul.receive_buffer()))

    def _timer_expired(self, artim: bool) -> None:
        if artim:
            self._pending.extend(self.ul.artim_expired())
        else:
            self._idle_expired()

    def _idle_expired(self) -> None:
        """No PDU completed within the idle timeout: abort rather than hold the slot forever."""
        self.ul.abort()
        message = (
            f"no data for {self.idle_timeout:g} s "
            "(idle timeout: no PDU completed in that time): aborted"
        )
        self._pending.append(
            Aborted(AbortSource.SERVICE_USER, AbortReason.REASON_NOT_SPECIFIED, False, message)
        )
        self.flush()  # the A-ABORT goes out before the connection closes
        self._pending.extend(self.ul.connection_closed())
        self.link.close_soon()

    def drain_nowait(self) -> None:
        """Process whatever bytes have already arrived, without waiting for more."""
        if self._first_bytes:
            if data := self.link.read_nowait():
                self._receive(data)
        else:
            while count := self.link.read_into_nowait(self.ul.receive_buffer()):
                self._received(count)
        self.flush()

    def pop_pending(self) -> ULEvent | None:
        return self._pending.popleft() if self._pending else None

    def push_back(self, event: ULEvent) -> None:
        self._pending.appendleft(event)

    def _received(self, count: int) -> None:
        """``count`` bytes arrived in the upper layer's receive buffer (0: the peer closed)."""
        if not count:
            self._pending.extend(self.ul.connection_closed())
            return
        self._pending.extend(self.ul.received(count))

    def _receive(self, data: bytes) -> None:
        if not data:
            self._pending.extend(self.ul.connection_closed())
            return
        if self._first_bytes:
            self._head += data  # judged once enough has arrived: a slow peer sends bytes singly
            if undecided(self._head):
                return
            data, self._head, self._first_bytes = self._head, b"", False
            mistaken = _wrong_protocol(data, self.ul.role)
            if mistaken is not None:
                self.link.abort()
                reason = AbortReason.UNRECOGNIZED_PDU
                self._pending.append(Aborted(AbortSource.SERVICE_PROVIDER, reason, True, mistaken))
                self._pending.extend(self.ul.connection_closed())
                return
        self._pending.extend(self.ul.receive_data(data))


def _wrong_protocol(data: bytes, role: Role) -> str | None:
    """Name a TLS or HTTP peer on a plain DICOM link, instead of "PDU too large: 369295617"."""
    if role is Role.ACCEPTOR and looks_like_tls_client_hello(data[:3]):
        return (
            "peer sent a TLS ClientHello to a non-TLS port (use our TLS port, or enable TLS here)"
        )
    other = describe_non_tls(data[:SNIFF_MAX], Side.SERVER)
    if role is Role.ACCEPTOR and other is not None and other.protocol == "http":
        return "peer sent an HTTP request to a DICOM port (this is not a web server)"
    if role is Role.REQUESTOR and len(data) >= 2 and data[0] in (0x15, 0x16) and data[1] == 0x03:
        return "peer answered with TLS records: this port expects TLS (enable TLS for this peer)"
    return None
