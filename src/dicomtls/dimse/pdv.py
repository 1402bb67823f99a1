"""Cutting DIMSE messages into P-DATA-TF PDUs and putting them back together (PS3.8 Annex E).

Sending: :func:`message_pdvs` cuts a message into PDVs, one per P-DATA-TF PDU, each a
memoryview of the caller's blocks, so a large data set read from a file goes to the
upper layer (whose PDU encoder writes only the headers) without being joined or copied. Receiving: :class:`MessageAssembler` takes the
PDVs of P-DATA-TF PDUs and reports the command set once it is whole and each
data-set fragment as it arrives, so a storage SCP can write to disk while the
rest is still on the wire.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dicomtls.dimse.command import CommandError, CommandSet, decode_command, has_dataset
from dicomtls.errors import DicomTLSError
from dicomtls.ul.pdu import MCH_COMMAND, MCH_LAST, PDV

__all__ = [
    "UNLIMITED_PDV_DATA",
    "CommandReceived",
    "DatasetFragment",
    "MessageAssembler",
    "MessageError",
    "message_pdvs",
    "read_size",
]

#: The most data we put in one PDV: when the peer sets no maximum (0), or a larger one.
UNLIMITED_PDV_DATA = 4 << 20


class MessageError(DicomTLSError, ValueError):
    """PDVs that do not form a valid DIMSE message (PS3.8 Annex E rules)."""


def _max_data(max_pdu_length: int) -> int:
    """Data bytes per PDV: the maximum length bounds the PDU's variable field (PS3.8 D.1),
    which holds the 4-byte item length, context ID, control header, then the data.

    A peer's maximum is a ceiling, not a wish: above 4 MiB we still send 4 MiB PDVs, so a
    peer advertising 1 GB cannot make us hold a gigabyte.
    """
    if max_pdu_length == 0:
        return UNLIMITED_PDV_DATA
    if max_pdu_length <= 6:
        raise ValueError(f"maximum PDU length {max_pdu_length} leaves no room for data")
    return min(max_pdu_length - 6, UNLIMITED_PDV_DATA)


def read_size(max_pdu_length: int, target: int = 1 << 20) -> int:
    """File reads that hold whole PDVs: about ``target`` bytes, a multiple of the PDV size,
    so every PDV of a file is a view of one read block and none is copied."""
    limit = _max_data(max_pdu_length)
    return limit * max(1, target // limit)


def _fragments(
    context_id: int, control: int, blocks: Iterable[bytes | memoryview], limit: int
) -> Iterator[PDV]:
    """Cut a byte stream into full PDVs of ``limit`` bytes, the last one flagged and shorter.

    Whole PDVs inside a block are views of it; only a PDV that straddles two blocks
    is assembled in a small buffer, so copying stays below one PDV per block.
    """
    carry = bytearray()
    held: memoryview | None = None  # the newest full PDV, sent once we know it is not the last
    for block in blocks:
        view = memoryview(block).cast("B")
        if carry:
            take = min(limit - len(carry), len(view))
            carry += view[:take]
            view = view[take:]
            if len(carry) < limit:
                continue
            if held is not None:
                yield PDV(context_id, control, held)
            held, carry = memoryview(carry), bytearray()  # the view keeps it; no copy
        while len(view) >= limit:
            if held is not None:
                yield PDV(context_id, control, held)
            held, view = view[:limit], view[limit:]
        carry += view
    if carry:
        if held is not None:
            yield PDV(context_id, control, held)
        held = memoryview(carry)
    yield PDV(context_id, control | MCH_LAST, held if held is not None else memoryview(b""))


def message_pdvs(
    context_id: int,
    command: bytes,
    dataset: Iterable[bytes | memoryview] | None,
    max_pdu_length: int,
) -> Iterator[PDV]:
    """The PDVs of one message, each to go in a P-DATA-TF PDU of its own, in order.

    ``max_pdu_length`` is the peer's advertised maximum (0 = no limit): each PDV fits a
    PDU of that size. The data set is any iterable of byte blocks, e.g. a file read
    1 MiB at a time.
    """
    limit = _max_data(max_pdu_length)
    yield from _fragments(context_id, MCH_COMMAND, (command,), limit)
    if dataset is not None:
        yield from _fragments(context_id, 0, dataset, limit)


@dataclass(frozen=True)
class CommandReceived:
    """A whole command set arrived on ``context_id``; ``expects_dataset`` says if one follows."""

    context_id: int
    command: CommandSet
    expects_dataset: bool


@dataclass(frozen=True)
class DatasetFragment:
    """Part of the data set of the current message; ``last`` ends the message."""

    context_id: int
    data: memoryview
    last: bool


class MessageAssembler:
    """Reassemble DIMSE messages from the PDVs of successive P-DATA-TF PDUs.

    One message at a time per association (no interleaving, as the asynchronous
    operations window of 1 implies): command fragments, then, if the command
    announces one, data-set fragments, all on one presentation context.
    """

    def __init__(self, max_command_length: int = 1 << 20) -> None:
        self._max_command = max_command_length
        self._command_parts: list[bytes] = []
        self._command_size = 0
        self._context_id: int | None = None
        self._awaiting_dataset = False

    @property
    def idle(self) -> bool:
        """True between messages: nothing half-received."""
        return self._context_id is None

    def feed(self, pdvs: Iterable[PDV]) -> Iterator[CommandReceived | DatasetFragment]:
        for pdv in pdvs:
            yield from self._feed_one(pdv)

    def _feed_one(self, pdv: PDV) -> Iterator[CommandReceived | DatasetFragment]:
        if self._context_id is None:
            self._context_id = pdv.context_id
        elif pdv.context_id != self._context_id:
            raise MessageError(
                f"PDV on presentation context {pdv.context_id} in the middle of a message "
                f"on context {self._context_id}"
            )
        if pdv.is_command:
            if self._awaiting_dataset:
                raise MessageError("command fragment received where data set fragments were due")
            self._command_size += len(pdv.data)
            if self._command_size > self._max_command:
                raise MessageError(f"command set larger than {self._max_command} bytes")
            self._command_parts.append(bytes(pdv.data))
            if pdv.is_last:
                yield self._command_done(pdv.context_id)
            return
        if not self._awaiting_dataset:
            raise MessageError("data set fragment received before its command was complete")
        last = pdv.is_last
        if last:
            self._reset()
        yield DatasetFragment(pdv.context_id, memoryview(pdv.data), last)

    def _command_done(self, context_id: int) -> CommandReceived:
        raw = b"".join(self._command_parts)
        self._command_parts.clear()
        self._command_size = 0
        try:
            command = decode_command(raw)
        except CommandError as exc:
            self._reset()
            raise MessageError(f"unreadable command set: {exc}") from exc
        expects = has_dataset(command)
        if expects:
            self._awaiting_dataset = True
        else:
            self._reset()
        return CommandReceived(context_id, command, expects)

    def _reset(self) -> None:
        self._context_id = None
        self._awaiting_dataset = False
