"""A hostile SCP for our SCU side, hand-made over Python's ``ssl`` (mutual TLS, a real handshake).

It accepts one association, answering with an A-ASSOCIATE-AC it may doctor or hold back (``lie``), then
runs a ``script``: what it does with our requests, byte by byte. What it saw of us is kept
for the test (``seen``): the PDUs and statuses we sent, and how we ended.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from dicomtls.dimse.command import Tag, decode_command, number
from dicomtls.ul import PDUReader
from dicomtls.ul.acse import AcceptorPolicy, answer_request
from dicomtls.ul.pdu import AssociateAC, AssociateRQ, PDataTF, ReleaseRP, ReleaseRQ

from .peers import IMPLICIT, READ_TIMEOUT

EXPLICIT = "1.2.840.10008.1.2.1"


class SCPLink:
    """The SCP's end of one association: PDUs in and out, and what it received."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self.reader = PDUReader()
        self.received: list[object] = []

    def next_pdu(self) -> object | None:
        """Our next PDU; None once we closed the connection."""
        while (pdu := self.reader.next_pdu()) is None:
            try:
                data = self.sock.recv(65536)
            except (ConnectionError, ssl.SSLError, TimeoutError):
                return None
            if not data:
                return None
            self.reader.feed(data)
        self.received.append(pdu)
        return pdu

    def next_command(self) -> PDataTF | None:
        """PDUs up to the last fragment of our next command set (its PDU); None at the end."""
        while True:
            pdu = self.next_pdu()
            if not isinstance(pdu, PDataTF):
                return None
            if pdu.pdvs[-1].is_last and pdu.pdvs[-1].is_command:
                return pdu

    def send(self, data: bytes) -> bool:
        """False once we have closed (the SCP stops pushing)."""
        try:
            self.sock.sendall(data)
        except (ConnectionError, ssl.SSLError, OSError):
            return False
        return True

    def release(self) -> None:
        """Answer our A-RELEASE-RQ, if that is what comes next."""
        self.next_pdu()
        self.answer_release()

    def answer_release(self) -> None:
        """Answer our A-RELEASE-RQ if that is the last PDU we sent."""
        if self.received and isinstance(self.received[-1], ReleaseRQ):
            self.send(ReleaseRP().encode())

    def until_closed(self) -> None:
        """Read (and keep) all we send until we close the connection."""
        while self.next_pdu() is not None:
            pass


def status_of(pdu: PDataTF) -> int:
    """The Status of the command set in ``pdu``'s last PDV."""
    return number(decode_command(bytes(pdu.pdvs[-1].data)), Tag.Status)


def accept_everything(rq: AssociateRQ) -> AssociateAC:
    """An honest A-ASSOCIATE-AC: every context, in Explicit or Implicit VR Little Endian."""
    everything = {c.abstract_syntax: (EXPLICIT, IMPLICIT) for c in rq.presentation_contexts}
    answer = answer_request(rq, AcceptorPolicy("HOSTILE", everything))
    assert isinstance(answer, AssociateAC)
    return answer


@dataclass
class HostileSCP:
    """Serves one association over mutual TLS: ``lie`` doctors its A-ASSOCIATE-AC, ``script``
    answers our requests. Started by :meth:`start`; :meth:`join` waits for it to finish."""

    context: ssl.SSLContext
    script: Callable[[SCPLink], None]
    lie: Callable[[AssociateAC], AssociateAC | None] = lambda ac: ac
    """None: no answer at all to our A-ASSOCIATE-RQ."""
    seen: SCPLink | None = None
    server: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    _thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.getsockname()[1])

    def start(self) -> HostileSCP:
        self._thread = threading.Thread(target=self._serve_one, daemon=True)
        self._thread.start()
        return self

    def join(self) -> SCPLink:
        assert self._thread is not None
        self._thread.join(READ_TIMEOUT)
        assert not self._thread.is_alive(), "the hostile SCP did not finish"
        assert self.seen is not None
        return self.seen

    def _serve_one(self) -> None:
        raw, _ = self.server.accept()
        raw.settimeout(READ_TIMEOUT)
        with self.context.wrap_socket(raw, server_side=True) as sock:
            self.seen = link = SCPLink(sock)
            rq = link.next_pdu()
            assert isinstance(rq, AssociateRQ)
            if (answer := self.lie(accept_everything(rq))) is not None:
                link.send(answer.encode())
            self.script(link)
