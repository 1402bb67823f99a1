"""PDU framing for a byte stream (PS3.8 9.3.1): feed bytes as they arrive, take PDUs out.

Sans-I/O like h11: the caller owns the socket. Each PDU gets its own buffer sized
from its header, so every received byte is copied once and a 50 MB P-DATA-TF costs
no more than its bytes (no re-joining of a growing buffer). Lengths are checked as
soon as the 6-byte header is in: an unknown type, a P-DATA-TF beyond the maximum
length we advertised (PS3.8 D.1), or an A-ASSOCIATE claiming gigabytes fails
before anything is buffered.

Bytes come in two ways. :meth:`PDUReader.feed` copies what the caller received.
:meth:`PDUReader.get_buffer` / :meth:`PDUReader.buffer_updated` (the shape of
asyncio's BufferedProtocol) let the caller receive into the PDU's own buffer, so a
TLS layer can decrypt a large PDU's body straight to where it stays.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from dicomtls.ul._wire import PDU_HEADER, as_byte_view
from dicomtls.ul.codes import PDUType
from dicomtls.ul.errors import LocalProtocolError, PDUError
from dicomtls.ul.pdu import PDU, check_header, decode_pdu

__all__ = ["DEFAULT_MAX_ASSOCIATE_LENGTH", "PDUReader"]

#: A-ASSOCIATE-RQ/AC bigger than this are refused: a real one is a few kilobytes.
DEFAULT_MAX_ASSOCIATE_LENGTH = 1 << 20

#: Bodies up to this size are allocated whole from the header; larger ones grow as
#: bytes arrive, so six bytes claiming 4 GiB cannot make us allocate 4 GiB.
_PREALLOCATE_LIMIT = 16 << 20
#: What get_buffer offers between PDUs: a header and what follows it in one read (a TLS
#: record's worth). Small, as every association has one; a large body is read in place.
_SCRATCH = 16 << 10


class PDUReader:
    """Turn a stream of bytes into complete, decoded PDUs.

    ``max_pdu_length`` is the Maximum Length we advertised (0 = unlimited); it may be
    changed once the association is negotiated. After the first :class:`PDUError`
    the reader stays broken and raises it again: the association must be aborted.
    """

    def __init__(
        self,
        max_pdu_length: int = 0,
        *,
        max_associate_length: int = DEFAULT_MAX_ASSOCIATE_LENGTH,
    ) -> None:
        if max_pdu_length < 0 or max_associate_length < 68:
            raise LocalProtocolError(
                f"max_pdu_length {max_pdu_length} must be >= 0 and "
                f"max_associate_length {max_associate_length} at least 68"
            )
        self.max_pdu_length = max_pdu_length
        self.max_associate_length = max_associate_length
        self._head = bytearray()
        self._body: bytearray | None = None
        self._expected = 0
        self._filled = 0
        self._ready: deque[bytearray] = deque()
        self._error: PDUError | None = None
        self._scratch = memoryview(bytearray(_SCRATCH))
        self._direct = False  # the last get_buffer was the body itself, not the scratch

    @property
    def error(self) -> PDUError | None:
        """The error that broke the stream, once :meth:`next_pdu` has raised it or will."""
        return self._error

    @property
    def buffered(self) -> int:
        """Bytes of a PDU not yet complete; non-zero at end of stream means a cut-off PDU."""
        return len(self._head) + (self._filled if self._body is not None else 0)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Take in received bytes; ``data`` is copied, so the caller may reuse its buffer."""
        if self._error is not None:
            return
        view = as_byte_view(data)
        pos = 0
        end = len(view)
        while pos < end:
            if self._body is None:
                take = min(PDU_HEADER.size - len(self._head), end - pos)
                self._head += view[pos : pos + take]
                pos += take
                if len(self._head) < PDU_HEADER.size or not self._start_body():
                    return
                continue
            body = self._body
            take = min(self._expected - self._filled, end - pos)
            if len(body) == self._expected:
                body[self._filled : self._filled + take] = view[pos : pos + take]
            else:
                body += view[pos : pos + take]
            self._filled += take
            pos += take
            self._finish_if_complete()

    def get_buffer(self) -> memoryview:
        """Where the next received bytes may be written; then call :meth:`buffer_updated`.

        Inside a body that was allocated whole, that is the rest of the body itself: a
        large PDU is received in place, with no copy. Otherwise a scratch buffer, which
        buffer_updated feeds through :meth:`feed`.
        """
        body = self._body
        self._direct = body is not None and len(body) == self._expected and self._error is None
        if self._direct:
            assert body is not None
            return memoryview(body)[self._filled : self._expected]
        return self._scratch

    def buffer_updated(self, count: int) -> None:
        """``count`` bytes were written at the start of the last :meth:`get_buffer`."""
        if not self._direct:
            self.feed(self._scratch[:count])
            return
        self._filled += count
        self._finish_if_complete()

    def _start_body(self) -> bool:
        """Check the header just completed and set up the PDU's buffer; False on error."""
        pdu_type, length = PDU_HEADER.unpack_from(self._head)
        try:
            self._check(pdu_type, length)
        except PDUError as exc:
            self._error = exc
            self._head.clear()
            return False
        self._expected = PDU_HEADER.size + length
        if self._expected <= _PREALLOCATE_LIMIT:
            self._body = bytearray(self._expected)
            self._body[: PDU_HEADER.size] = self._head
        else:
            self._body = bytearray(self._head)
        self._filled = PDU_HEADER.size
        self._head.clear()
        self._finish_if_complete()
        return True

    def _check(self, pdu_type: int, length: int) -> None:
        kind = check_header(pdu_type, length)
        if kind == PDUType.P_DATA_TF:
            if self.max_pdu_length and length > self.max_pdu_length:
                raise PDUError(
                    f"P-DATA-TF has PDU length {length}, more than the maximum length "
                    f"{self.max_pdu_length} we advertised (PS3.8 D.1)"
                )
        elif length > self.max_associate_length:
            raise PDUError(
                f"{kind.title} has PDU length {length}, more than the "
                f"{self.max_associate_length} bytes accepted for it"
            )

    def _finish_if_complete(self) -> None:
        if self._body is not None and self._filled == self._expected:
            self._ready.append(self._body)
            self._body = None

    def next_pdu(self) -> PDU | None:
        """The next complete PDU, or None until more bytes are fed.

        Raises :class:`PDUError` for a malformed PDU, after every PDU that came
        before it has been returned.
        """
        if self._ready:
            raw = self._ready.popleft()
            try:
                # The buffer is handed over whole: PDV views into it stay valid and nobody
                # else writes to it.
                return decode_pdu(memoryview(raw).toreadonly())
            except PDUError as exc:
                self._error = exc
                self._ready.clear()
                self._body = None
                self._head.clear()
                raise
        if self._error is not None:
            raise self._error
        return None

    def __iter__(self) -> Iterator[PDU]:
        """Every PDU complete so far."""
        while (pdu := self.next_pdu()) is not None:
            yield pdu
