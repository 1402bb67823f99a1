"""DICOM associations over the secure link, in asyncio: the I/O binding of ``ul`` and ``dimse``.

:func:`associate` opens a link (TLS when settings are given), negotiates, and
returns an :class:`Association` whose ``echo`` and ``store`` run the DIMSE-C
services as SCU. :func:`serve_dicom` accepts associations and answers C-ECHO
and C-STORE, streaming each received data set into a durable store and sending
Success only after the object is on disk.

Every protocol failure of a peer becomes an A-ABORT with the standard's reason
and one log line naming the peer; other associations are never affected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dicomtls.dimse.command import (
    CommandField,
    CommandSet,
    Tag,
    answered_status,
    command_field,
    encode_command,
    number,
)
from dicomtls.dimse.messages import c_echo_rq, c_store_rq
from dicomtls.dimse.part10 import Part10Error, Part10Header, read_header
from dicomtls.dimse.pdv import (
    CommandReceived,
    DatasetFragment,
    MessageAssembler,
    MessageError,
    message_pdvs,
    read_size,
)
from dicomtls.dimse.transfer_syntax import EXPLICIT_VR_LE, IMPLICIT_VR_LE
from dicomtls.dimse.uids import VERIFICATION
from dicomtls.errors import AssociationError
from dicomtls.logs import get_logger
from dicomtls.net import qr_scu
from dicomtls.net.channel import Channel
from dicomtls.net.gate import Gate, Refusal
from dicomtls.net.link import LinkEvents, SecureLink, connect
from dicomtls.net.outbound import NoWayToSend, outgoing, proposals_for_headers
from dicomtls.tls.session import SessionInfo
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.acse import (
    Negotiated,
    Proposal,
    acceptance_problem,
    build_request,
)
from dicomtls.ul.codes import AbortReason
from dicomtls.ul.connection import (
    Aborted,
    AssociationAccepted,
    AssociationRejected,
    Closed,
    DataReceived,
    ReleaseConfirmed,
    ReleaseRequested,
    Role,
    ULEvent,
    UpperLayer,
)
from dicomtls.ul.errors import LocalProtocolError
from dicomtls.ul.pdu import PDataTF

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = [
    "Association",
    "AssociationError",
    "DatasetSink",
    "Message",
    "associate",
    "default_proposals",
    "proposals_for",
]

log = get_logger("dicomtls.net")

DIMSE_TIMEOUT = 120.0
#: The largest data set received into memory (an identifier, a C-FIND match): real ones are
#: a few kilobytes. Object data sets stream to a sink and are not bounded by this.
MAX_DATASET_IN_MEMORY = 1 << 20
#: What the matches of one C-FIND may hold in memory (each counted as its identifier's bytes
#: plus a decoded data set's overhead): beyond it the C-FIND is cancelled (qr_scu.find).
MAX_FIND_MEMORY = 256 << 20
_SMALL_PAYLOAD = 1 << 16  # join header and payload below this: one TLS record, one syscall


class _NoContextError(AssociationError):
    """No accepted presentation context fits an object: that object fails, the association not."""


#: A peer that allows unlimited outstanding requests still gets no more than this from us.
_UNLIMITED_WINDOW = 64


class DatasetSink(Protocol):
    """Where a received data set goes, fragment by fragment.

    ``write`` may return an awaitable: the association then reads nothing more until it
    completes (a disk behind a sink that writes in the background sets the pace).
    """

    def write(self, data: memoryview) -> Awaitable[None] | None: ...


@dataclass
class Message:
    """A whole DIMSE message as it arrived, and the gate's verdict on it.

    ``refused`` set: the gate will not let it be served; its data set was discarded, and
    the receiver answers with the refusal's status.
    """

    context_id: int
    command: CommandSet
    field: CommandField
    dataset: bytes | None = None
    refused: Refusal | None = None


class _TooLarge(MessageError):
    """A data set bound for memory that is larger than the association takes."""


class _Arriving:
    """The message being received: its data set goes to a sink, into memory, or nowhere."""

    def __init__(
        self, sink_for: Callable[[CommandReceived], DatasetSink | None] | None, limit: int
    ) -> None:
        self.sink_for = sink_for
        self.limit = limit
        self.message: Message | None = None
        self.sink: DatasetSink | None = None
        self.collected = bytearray()

    def begin(self, message: Message, command: CommandReceived) -> None:
        """The gate has judged ``message``; its data set follows (a sink asked for only if
        it is to be served)."""
        self.message = message
        if message.refused is None and self.sink_for is not None:
            self.sink = self.sink_for(command)

    async def take(self, fragment: DatasetFragment) -> bool:
        """One fragment of the data set; True once it was the last."""
        message = self.message
        assert message is not None  # the assembler sends the command first
        if message.refused is not None:
            pass  # dropped as it comes: a refused request costs no memory
        elif self.sink is not None:
            if (waiting := self.sink.write(fragment.data)) is not None:
                await waiting
        elif len(self.collected) + len(fragment.data) > self.limit:
            raise _TooLarge(f"{message.field.name} data set larger than {self.limit} bytes")
        else:
            self.collected += fragment.data
        if fragment.last and message.refused is None and self.sink is None:
            message.dataset = bytes(self.collected)
        return fragment.last


def _end_reason(event: ULEvent) -> str | None:
    """How an association ends with ``event`` (None: it does not end it)."""
    if isinstance(event, ReleaseConfirmed):
        return "released"
    if isinstance(event, Aborted):
        return f"aborted: {event.message}"
    if isinstance(event, Closed):
        return "connection lost"
    return None


class Association:
    """An established association; as SCU it offers ``echo``, ``store`` and Query/Retrieve.

    Every message received passes ``gate`` (:mod:`dicomtls.net.gate`) as soon as its
    command set is whole; by default the gate of the association's requestor.
    """

    def __init__(
        self,
        channel: Channel,
        negotiated: Negotiated,
        calling_ae: str,
        called_ae: str,
        gate: Gate | None = None,
    ) -> None:
        self._channel = channel
        self.negotiated = negotiated
        self.gate = gate or Gate(negotiated, acceptor=False, granted_by="our own request")
        self.on_refused: Callable[[Refusal], None] | None = None
        """Told of every message the gate refuses, before it is answered or aborted."""
        self.max_dataset_in_memory = MAX_DATASET_IN_MEMORY
        self.max_find_memory = MAX_FIND_MEMORY
        self.calling_ae = calling_ae
        self.called_ae = called_ae
        self._assembler = MessageAssembler()
        self._message_id = 0
        self._ended = False
        self._we_aborted = False
        self._cancelled: set[int] = set()
        self.request_contexts: dict[int, int] = {}
        """Message ID -> the context each C-FIND/C-MOVE/C-GET of ours went out on (a
        C-CANCEL goes on the same one)."""
        self._dimse_timeout: float | None = DIMSE_TIMEOUT
        self.end_reason: str | None = None
        """How it ended: ``"released"``, or why it was aborted or lost (None while it runs)."""

    @property
    def dimse_timeout(self) -> float | None:
        """Seconds we wait for a response (None: for ever). As requestor, also how long any
        wait of ours for the peer may go without a PDU completing (a C-GET's sub-operations,
        the A-RELEASE-RP), after which the association is aborted."""
        return self._dimse_timeout

    @dimse_timeout.setter
    def dimse_timeout(self, seconds: float | None) -> None:
        self._dimse_timeout = seconds
        if self._channel.ul.role is Role.REQUESTOR:
            self._channel.idle_timeout = seconds

    @property
    def ended(self) -> bool:
        """Released, aborted or lost: nothing more can be sent or received."""
        return self._ended

    @property
    def link(self) -> SecureLink:
        return self._channel.link

    @property
    def session(self) -> SessionInfo | None:
        """The negotiated TLS parameters (cipher, peer certificate...), None on plain TCP."""
        return self._channel.link.session

    @property
    def peer(self) -> str:
        return self._channel.link.peer

    @property
    def peer_max_pdu_length(self) -> int:
        """The largest PDU the peer takes (0: no limit), as it said in negotiation."""
        return self._channel.ul.peer_max_pdu_length

    def _read_size(self) -> int:
        return read_size(self.peer_max_pdu_length)

    @property
    def last_message_id(self) -> int:
        """The ID of the request sent last: what C-CANCEL names."""
        return self._message_id

    def next_message_id(self) -> int:
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    # -- sending ----------------------------------------------------------------------------

    async def send_message(
        self, context_id: int, command: CommandSet, dataset: Iterable[bytes | memoryview] | None
    ) -> None:
        """Send one DIMSE message through the upper layer, PDU by PDU: each PDV a view of
        the data set's blocks, large ones handed to the link as the socket takes them."""
        ul = self._channel.ul
        encoded = encode_command(command)
        for pdv in message_pdvs(context_id, encoded, dataset, ul.peer_max_pdu_length):
            try:
                ul.send_pdata(PDataTF((pdv,)))
            except LocalProtocolError:
                raise AssociationError(
                    f"association with {self.peer} has ended "
                    f"({self.end_reason or 'not established'})"
                ) from None
            await self._write(ul.data_to_send())
        await self._channel.link.drain()

    async def _write(self, chunks: list[bytes | memoryview]) -> None:
        """Small chunks joined into one write (one TLS record, one syscall), large ones sent
        as they are once the socket drains."""
        link = self._channel.link
        small = bytearray()
        for chunk in chunks:
            if len(chunk) <= _SMALL_PAYLOAD:
                small += chunk
                continue
            if small:
                link.write(small)
                small = bytearray()
            await link.send(chunk)
        if small:
            link.write(small)

    # -- receiving --------------------------------------------------------------------------

    async def receive_message(
        self, sink_for: Callable[[CommandReceived], DatasetSink | None] | None = None
    ) -> Message | None:
        """The next whole message, or None once the association has ended.

        ``sink_for`` may return a sink for the data set (e.g. a file being written);
        without one the data set is collected in memory, up to ``max_dataset_in_memory``
        bytes (more aborts the association). A message the gate refuses comes back with
        ``refused`` set: no sink was asked for and its data set was dropped as it came.
        """
        arriving = _Arriving(sink_for, self.max_dataset_in_memory)
        while True:
            event = await self._channel.next_event()
            if isinstance(event, DataReceived):
                if await self._feed(event, arriving):
                    return arriving.message
            elif await self._ended_by(event):
                return None

    async def _feed(self, event: DataReceived, arriving: _Arriving) -> bool:
        """Take one P-DATA-TF's PDVs; True once the message is whole, or the association
        was aborted for it (``arriving.message`` is then None)."""
        try:
            for item in self._assembler.feed(event.pdata.pdvs):
                if isinstance(item, CommandReceived):
                    message = self._admitted(item)
                    if message is None or not item.expects_dataset:
                        arriving.message = message
                        return True
                    arriving.begin(message, item)
                elif await arriving.take(item):
                    return True
        except _TooLarge as exc:
            failure = str(exc)
        except (MessageError, ValueError) as exc:
            failure = f"bad DIMSE message: {exc}"
        else:
            return False
        arriving.message = None
        self.protocol_failure(failure)
        return True

    async def _ended_by(self, event: ULEvent) -> bool:
        """Act on an event that carries no data; True when the association ended with it."""
        if isinstance(event, ReleaseRequested):
            self._answer_release()
            self.end_reason = self.end_reason or "released"
            return False
        reason = _end_reason(event)
        if reason is None:
            return False
        if isinstance(event, Aborted):
            self._log_abort(event)
            if not event.by_peer:
                self._we_aborted = True  # close_link lets our A-ABORT reach the peer
        self.end_reason = self.end_reason or reason
        self._ended = True
        await self.close_link()
        return True

    def _log_abort(self, event: Aborted) -> None:
        midway = not self._assembler.idle  # a message half-received is lost with it
        said = self._channel.failure_logged  # the link's failure was the warning
        level = logging.WARNING if (not event.by_peer or midway) and not said else logging.INFO
        lost = "; the partial message was discarded" if midway else ""
        log.log(level, "association with %s aborted: %s%s", self.peer, event.message, lost)

    def _answer_release(self) -> None:
        self._channel.ul.release_response()
        self._channel.flush()

    def _admitted(self, received: CommandReceived) -> Message | None:
        """The message for a command set that passed the gate or is to be refused with a
        status; None when it broke the protocol and the association was aborted."""
        field = command_field(received.command)
        refusal = self.gate.check(received, field)
        if refusal is not None and self.on_refused is not None:
            self.on_refused(refusal)
        if refusal is not None and refusal.status is None:
            self.protocol_failure(refusal.reason)
            return None
        return Message(received.context_id, received.command, field, refused=refusal)

    def cancel_requested(self, message_id: int) -> bool:
        """Whether the peer has sent C-CANCEL-RQ for ``message_id`` (checked without waiting).

        With an asynchronous operations window of 1, the only message a peer may send
        while we answer its request is C-CANCEL; anything else ends the association.
        """
        self._channel.drain_nowait()
        while (event := self._channel.pop_pending()) is not None:
            if not isinstance(event, DataReceived):
                self._channel.push_back(event)  # an abort or close: receive_message reports it
                break
            try:
                for item in self._assembler.feed(event.pdata.pdvs):
                    if not isinstance(item, CommandReceived) or (
                        command_field(item.command) is not CommandField.C_CANCEL_RQ
                    ):
                        raise MessageError("only C-CANCEL may arrive while a request is answered")
                    if self._admitted(item) is None:
                        return False  # on a context it does not have: aborted
                    if item.command.get(Tag.MessageIDBeingRespondedTo) == message_id:
                        self._cancelled.add(message_id)
            except (MessageError, ValueError) as exc:
                self.protocol_failure(str(exc))
                break
        return message_id in self._cancelled

    async def close_link(self) -> None:
        """Close the connection; after an A-ABORT of ours, once the peer could read it."""
        if self._we_aborted:
            await self.link.linger_close()
        else:
            await self.link.close()

    def protocol_failure(self, message: str) -> None:
        """The peer broke the protocol: one log line naming it, then A-ABORT (the caller
        ends the association; :meth:`close_link` lets the A-ABORT reach the peer)."""
        self._we_aborted = True
        log.warning(
            "association with %s (calling %r): %s; aborting", self.peer, self.calling_ae, message
        )
        self.end_reason = self.end_reason or f"aborted: {message}"
        self._channel.ul.abort(AbortReason.INVALID_PDU_PARAMETER_VALUE)
        self._channel.flush()

    async def response(self, field: CommandField, message_id: int) -> Message:
        return await self._response_to(field, (message_id,))

    async def _response_to(self, field: CommandField, outstanding: Collection[int]) -> Message:
        """The next message, which must be a ``field`` answering one of ``outstanding``."""
        try:
            async with asyncio.timeout(self.dimse_timeout):
                message = await self.receive_message()
        except TimeoutError:
            await self.abort()
            raise AssociationError(
                f"no {field.name} from {self.peer} within {self.dimse_timeout:g} s (DIMSE timeout)"
            ) from None
        if message is None:
            raise AssociationError(f"association with {self.peer} ended before the {field.name}")
        if (
            message.field is not field
            or message.command.get(Tag.MessageIDBeingRespondedTo) not in outstanding
        ):
            expected = ", ".join(str(m) for m in sorted(outstanding))
            self.protocol_failure(f"expected {field.name} for message {expected}")
            raise AssociationError(f"{self.peer} answered out of order")
        return message

    # -- SCU services ---------------------------------------------------------------------

    async def echo(self) -> int:
        """C-ECHO; returns the status (0x0000 on success)."""
        context = self.negotiated.context_for(VERIFICATION)
        if context is None:
            raise AssociationError(f"{self.peer} did not accept the Verification SOP class")
        message_id = self.next_message_id()
        await self.send_message(context.id, c_echo_rq(message_id), None)
        response = await self.response(CommandField.C_ECHO_RSP, message_id)
        return number(response.command, Tag.Status)

    async def store(self, path: Path) -> int:
        """C-STORE a Part 10 file, streaming its data set; returns the status."""
        return await self.store_header(read_header(path))

    async def store_header(self, header: Part10Header) -> int:
        """C-STORE the file ``header`` was read from; returns the status (an
        :class:`AnsweredStatus`, with the peer's Error Comment if it gave one)."""
        message_id = await self._send_store(header)
        response = await self.response(CommandField.C_STORE_RSP, message_id)
        return answered_status(response.command)

    async def store_many(
        self, paths: Iterable[Path | Part10Header]
    ) -> AsyncIterator[tuple[Path, int | Exception]]:
        """C-STORE each file, with as many requests outstanding as the peer allows.

        With an asynchronous operations window (``associate(max_operations=...)``, PS3.7
        D.3.3.3) the next object is on the wire while the peer still commits the last one;
        without, this is ``store`` in a loop. Yields each file with its status, or with the
        error that kept it from being sent (not DICOM, no accepted context), in the order
        the answers come. An error that ends the association is raised. A file given as
        its header (read to choose the proposals) is not read again before its data.
        """
        window = self.negotiated.max_operations or _UNLIMITED_WINDOW
        outstanding: dict[int, Path] = {}
        for file in paths:
            path = file.path if isinstance(file, Part10Header) else file
            while len(outstanding) >= window:
                yield await self._store_answered(outstanding)
            try:
                header = file if isinstance(file, Part10Header) else read_header(file)
                outstanding[await self._send_store(header)] = path
            except (Part10Error, _NoContextError) as exc:
                yield path, exc
        while outstanding:
            yield await self._store_answered(outstanding)

    async def _store_answered(self, outstanding: dict[int, Path]) -> tuple[Path, int]:
        response = await self._response_to(CommandField.C_STORE_RSP, outstanding)
        path = outstanding.pop(number(response.command, Tag.MessageIDBeingRespondedTo))
        return path, answered_status(response.command)

    async def _send_store(self, header: Part10Header) -> int:
        """Send one C-STORE-RQ with the file's data set (converted if the peer needs it); its
        message ID."""
        try:
            out = await outgoing(
                header, self.negotiated, as_scp=False, block_size=self._read_size()
            )
        except NoWayToSend as exc:
            raise _NoContextError(
                f"{self.peer} cannot take {header.path.name} ({header.sop_instance_uid}): {exc}"
            ) from None
        message_id = self.next_message_id()
        command = c_store_rq(message_id, header.sop_class_uid, header.sop_instance_uid)
        await self.send_message(out.context.id, command, out.blocks)
        return message_id

    def find(
        self, identifier: Dataset, model: qr_scu.QueryModel = qr_scu.QueryModel.STUDY_ROOT
    ) -> AsyncIterator[Dataset]:
        """C-FIND: the matching identifiers, as they arrive."""
        return qr_scu.find(self, identifier, model)

    async def move(
        self,
        identifier: Dataset,
        destination: str,
        model: qr_scu.QueryModel = qr_scu.QueryModel.STUDY_ROOT,
    ) -> qr_scu.RetrieveResult:
        """C-MOVE the matches to AE title ``destination``."""
        return await qr_scu.move(self, identifier, destination, model)

    async def get(
        self,
        identifier: Dataset,
        target: qr_scu.StoreTarget,
        model: qr_scu.QueryModel = qr_scu.QueryModel.STUDY_ROOT,
        *,
        stop_when: qr_scu.StopWhen | None = None,
    ) -> qr_scu.RetrieveResult:
        """C-GET the matches onto this association, written into ``target``; cancelled
        (C-CANCEL) once ``stop_when`` gives a reason (see :func:`qr_scu.get`)."""
        return await qr_scu.get(self, identifier, target, model, stop_when=stop_when)

    async def cancel(self, message_id: int) -> None:
        """C-CANCEL a running C-FIND/C-MOVE/C-GET."""
        await qr_scu.cancel(self, message_id)

    # -- ending ---------------------------------------------------------------------------

    async def release(self) -> None:
        """A-RELEASE and wait for the answer (or the end). After an A-ABORT of ours (the peer
        broke the protocol) there is nothing to release: the link is closed once the peer
        could read the abort."""
        if self._ended:
            return
        if self._we_aborted:
            self._ended = True
            await self.close_link()
            return
        self._channel.ul.release()
        self._channel.flush()
        while True:
            event = await self._channel.next_event()
            if isinstance(event, ReleaseRequested):  # collision
                self._answer_release()
            if (reason := _end_reason(event)) is not None:
                self.end_reason = self.end_reason or reason
            if isinstance(event, Aborted) and not event.by_peer:  # it never answered
                log.warning("association with %s: A-RELEASE not answered, %s", self.peer, reason)
            if isinstance(event, Aborted | Closed):
                break
        self._ended = True
        await self.link.close()

    async def abort(self) -> None:
        self.end_reason = self.end_reason or "aborted by us"
        self._channel.ul.abort()
        self._channel.flush()
        self._ended = True
        await self.link.close()

    async def __aenter__(self) -> Association:
        return self

    async def __aexit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            await self.release()
        else:
            await self.abort()


#: What a rejection reason means for the one who asked, and what to change.
_REJECTED = {
    "CALLED_AE_NOT_RECOGNIZED": (
        ": it does not answer to called AE title {called!r}; call it by its own AE title "
        "(called_ae; dicomtls: --called-ae), or have it accept any called AE title"
    ),
    "CALLING_AE_NOT_RECOGNIZED": (
        ": it does not accept calling AE title {calling!r} from us (unknown to it, or bound "
        "by its access rules to another certificate)"
    ),
}


def proposals_for(files: Iterable[Path]) -> list[Proposal]:
    """Verification plus, per SOP class, one context per transfer syntax the files are in
    and the native syntaxes as a fallback (:func:`~dicomtls.net.outbound.proposals_for_headers`).

    Files that are not DICOM are skipped here; ``store`` reports them when sent.
    """
    headers = []
    for path in files:
        try:
            headers.append(read_header(path))
        except Part10Error:
            continue
    return proposals_for_headers(headers)


def default_proposals(sop_classes: Sequence[str] = ()) -> list[Proposal]:
    """Verification, plus each SOP class of ``sop_classes`` (storage or Query/Retrieve) in
    Explicit and Implicit VR Little Endian."""
    proposals = [Proposal(VERIFICATION, (IMPLICIT_VR_LE,))]
    proposals += [Proposal(uid, (EXPLICIT_VR_LE, IMPLICIT_VR_LE)) for uid in sop_classes]
    return proposals


async def associate(
    host: str,
    port: int,
    tls: TLSSettings | None,
    *,
    calling_ae: str = "DICOMTLS-SCU",
    called_ae: str = "ANY-SCP",
    proposals: Sequence[Proposal] | None = None,
    max_pdu_length: int = 4 << 20,
    dimse_timeout: float | None = DIMSE_TIMEOUT,
    max_operations: int = 1,
    events: LinkEvents | None = None,
) -> Association:
    """Connect, (handshake), and negotiate an association; raises AssociationError if refused.

    ``events`` are the secure link's: told when the TCP connection is up and when the
    link is secure (or why it is not), before negotiation starts.

    ``max_operations`` above 1 asks the peer to let that many requests be outstanding at
    once (:meth:`Association.store_many` uses what it grants); 1, the default, is the
    synchronous mode every peer supports.
    """
    link = await connect(host, port, tls, events=events)
    ul = UpperLayer(Role.REQUESTOR)
    # Waiting for the A-ASSOCIATE-AC, as every later wait (Association.dimse_timeout), ends
    # in an A-ABORT once no PDU has completed for the DIMSE timeout.
    channel = Channel(link, ul, idle_timeout=dimse_timeout)
    rq = build_request(
        calling_ae,
        called_ae,
        proposals or default_proposals(),
        max_pdu_length=max_pdu_length,
        max_operations=max_operations,
    )
    ul.request(rq)
    channel.flush()
    event = await channel.next_event()
    if isinstance(event, AssociationAccepted):
        negotiated = Negotiated.from_exchange(rq, event.accept, we_requested=True)
        association = Association(channel, negotiated, calling_ae, called_ae)
        association.dimse_timeout = dimse_timeout
        if (problem := acceptance_problem(rq, event.accept)) is not None:
            association.protocol_failure(f"A-ASSOCIATE-AC unusable: {problem}")
            await association.close_link()
            raise AssociationError(f"{link.peer} accepted the association, but {problem}")
        return association
    await link.close()
    if isinstance(event, AssociationRejected):
        rj = event.reject
        why = _REJECTED.get(rj.reason.name, "").format(called=called_ae, calling=calling_ae)
        raise AssociationError(
            f"{link.peer} rejected the association ({rj.result.name}, {rj.source.name}, "
            f"{rj.reason.name}){why}"
        )
    hint = "" if link.is_tls else " (if that is a TLS port, connect with TLS)"
    if isinstance(event, Aborted) and not event.by_peer:
        raise AssociationError(
            f"{link.peer} did not answer the association request: {event.message}"
        )
    if isinstance(event, Aborted):
        raise AssociationError(
            f"{link.peer} aborted the association request: {event.message}{hint}"
        )
    raise AssociationError(f"{link.peer} closed the connection during association{hint}")
