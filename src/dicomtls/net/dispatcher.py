"""The SCP's service loop for one association: every request it receives, answered.

Messages reach the dispatcher only through :meth:`Association.receive_message
<dicomtls.net.association.Association.receive_message>`, which puts each one through the
association's gate (:mod:`dicomtls.net.gate`) before anything acts on it. A message the
gate refuses is answered here with the refusal's status, logged in one line and, when the
access policy withheld it, reported as a security event; it never reaches a handler.

C-STORE data sets stream through :class:`~dicomtls.net.inbound.InboundObject` into the
application's store target, and Success is sent only after its commit. C-MOVE opens its
own sub-association to the destination; C-GET sends C-STORE sub-operations on this one,
on contexts where the requestor took the SCP role. Handlers report a request they cannot
serve by raising :class:`~dicomtls.net.hooks.StatusError`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicomtls.dimse.command import NO_DATASET, CommandField, CommandSet, Tag, number
from dicomtls.dimse.dataset_scan import DatasetScanError, DatasetScanner
from dicomtls.dimse.datasets import DatasetError, decode_dataset, encode_dataset
from dicomtls.dimse.messages import (
    c_echo_rsp,
    c_find_rsp,
    c_get_rsp,
    c_move_rsp,
    c_store_rq,
    c_store_rsp,
)
from dicomtls.dimse.part10 import Part10Error, Part10Header, read_header
from dicomtls.dimse.pdv import CommandReceived, read_size
from dicomtls.dimse.sop_classes import Service
from dicomtls.dimse.status import Category, Status, status_category, status_name
from dicomtls.dimse.transfer_syntax import IMPLICIT_VR_LE
from dicomtls.logs import get_logger
from dicomtls.net.association import (
    Association,
    AssociationError,
    DatasetSink,
    Message,
    associate,
)
from dicomtls.net.gate import Refusal
from dicomtls.net.hooks import (
    Admission,
    QueryRecord,
    RetrieveRecord,
    Services,
    StatusError,
    StoreRecord,
)
from dicomtls.net.inbound import InboundObject
from dicomtls.net.link import current_settings
from dicomtls.net.outbound import NoWayToSend, outgoing, proposals_for_headers
from dicomtls.tls.errors import TLSError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["Dispatcher", "notify"]

log = get_logger("dicomtls.net")

_FAILED_SOP_INSTANCE_UID_LIST = "FailedSOPInstanceUIDList"


def notify(callback: Callable[..., None] | None, *args: object) -> None:
    """Call an observer; its failure is logged, never the protocol's problem."""
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:
        log.exception("event observer %r failed", callback)


#: Matches fetched from a find handler per trip to its worker thread.
_BATCH = 64
#: The most elements a C-FIND, C-MOVE or C-GET identifier may hold: its keys (PS3.4
#: C.4.1.1.3), a few dozen in real ones. pydicom reads some 80,000 elements a second on the
#: event loop, so the 131,000 tiny elements that fit in the 1 MiB size bound held up every
#: association on the node for about two seconds per request.
MAX_IDENTIFIER_ELEMENTS = 1024
#: Bytes scanned between two looks at the count: 1,024 elements of 8 bytes.
_IDENTIFIER_SLICE = 8 << 10


def _scan_identifier(data: bytes, syntax: str) -> None:
    """Check an identifier's structure and nesting depth, as a C-STORE data set's, and its
    number of elements; StatusError past :data:`MAX_IDENTIFIER_ELEMENTS` (A900H, PS3.4
    C.4.1.1.4: the identifier does not match the SOP class), without scanning the rest."""
    scanner = DatasetScanner(syntax)
    view = memoryview(data)
    for start in range(0, len(view), _IDENTIFIER_SLICE):
        scanner.feed(view[start : start + _IDENTIFIER_SLICE])
        if scanner.elements > MAX_IDENTIFIER_ELEMENTS:
            raise StatusError(
                Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"an identifier of more than {MAX_IDENTIFIER_ELEMENTS:,} elements "
                f"({len(data):,} bytes); its keys are a few dozen",
            )
    scanner.finish()


def _close(found: Iterator[Dataset]) -> None:
    """End a find handler's matches early (a generator's ``close``): a database cursor behind
    them is given back now, on this worker thread, not whenever it is collected."""
    close = getattr(found, "close", None)
    if close is not None:
        close()


def _next_batch(found: Iterator[Dataset]) -> list[Dataset]:
    """The next few matches (on a worker thread: a handler may block on its database)."""
    return list(itertools.islice(found, _BATCH))


def _named(field: CommandField) -> str:
    """C-FIND for C_FIND_RQ: the service's name as the standard writes it."""
    return field.name.removesuffix("_RQ").replace("_", "-")


def _message_id(message: Message) -> int:
    return number(message.command, Tag.MessageID)


def _sop_class(message: Message) -> str:
    return str(message.command.get(Tag.AffectedSOPClassUID, ""))


def _failure(message: Message, status: int) -> CommandSet:
    """The response to a request that is answered with ``status`` and nothing else."""
    response: CommandSet = {
        Tag.CommandField: message.field.value | 0x8000,
        Tag.MessageIDBeingRespondedTo: _message_id(message),
        Tag.CommandDataSetType: NO_DATASET,
        Tag.Status: status,
    }
    if Tag.AffectedSOPClassUID in message.command:
        response[Tag.AffectedSOPClassUID] = message.command[Tag.AffectedSOPClassUID]
    if Tag.AffectedSOPInstanceUID in message.command:
        response[Tag.AffectedSOPInstanceUID] = message.command[Tag.AffectedSOPInstanceUID]
    return response


@dataclass
class _Outcome:
    """What became of a C-MOVE's or C-GET's sub-operations.

    PS3.4 C.4.2.3.1 counts three kinds: completed (Success), warning (the C-STORE was
    answered with a warning status, e.g. B000 coercion: the receiver kept the object) and
    failed. Only the failed are listed in Failed SOP Instance UID List."""

    total: int
    sent: list[Path]
    failed: list[tuple[Path, str]]  # (file, why)
    failed_uids: list[str]
    warned: list[Path]

    @classmethod
    def of(cls, total: int) -> _Outcome:
        return cls(total, [], [], [], [])

    def fail(self, path: Path, uid: str | None, why: str) -> None:
        self.failed.append((path, why))
        if uid:
            self.failed_uids.append(uid)

    def answered(self, header: Part10Header, status: int) -> None:
        """A C-STORE sub-operation's status: Success, a warning, or (anything else) a
        failure, by its category (PS3.7 C.1): a pending or unknown code kept nothing."""
        category = status_category(status)
        if category is Category.SUCCESS:
            self.sent.append(header.path)
        elif category is Category.WARNING:
            self.warned.append(header.path)
        else:
            self.fail(header.path, header.sop_instance_uid, f"answered {status_name(status)}")

    @property
    def transferred(self) -> list[Path]:
        """The files the receiver kept: completed and warning sub-operations."""
        return self.sent + self.warned

    @property
    def remaining(self) -> int:
        return self.total - len(self.transferred) - len(self.failed)

    def counts(self) -> tuple[int, int, int, int]:
        """(remaining, completed, failed, warning), as the responses carry them."""
        return (self.remaining, len(self.sent), len(self.failed), len(self.warned))

    def final_status(self) -> int:
        """PS3.4 C.4.2.1.6: all completed, Success; some failed or had a warning, B000
        (sub-operations complete, one or more failures or warnings); none kept, Failure."""
        if not self.failed and not self.warned:
            return Status.SUCCESS
        if self.transferred:
            return Status.COERCION_OF_DATA_ELEMENTS  # 0xB000: complete, failures or warnings
        return Status.OUT_OF_RESOURCES_SUBOPERATIONS

    def why(self) -> str:
        """The failures in one phrase: each reason with how many objects it cost."""
        reasons = Counter(why for _, why in self.failed)
        return "; ".join(f"{why} ({count})" for why, count in reasons.most_common())


class Dispatcher:
    """Answers one association's requests, one at a time, or C-STOREs up to the negotiated
    asynchronous operations window."""

    def __init__(
        self, association: Association, services: Services, admission: Admission | None = None
    ) -> None:
        self.association = association
        self.services = services
        self.admission = admission or Admission()
        association.on_refused = self.refused
        self._inbound: dict[int, InboundObject] = {}
        self._storing: set[asyncio.Task[None]] = set()  # C-STOREs committing while others arrive
        self._handlers: dict[CommandField, Callable[[Message], Coroutine[Any, Any, None]]] = {
            CommandField.C_ECHO_RQ: self._echo,
            CommandField.C_FIND_RQ: self._find,
            CommandField.C_MOVE_RQ: self._move,
            CommandField.C_GET_RQ: self._get,
        }

    @property
    def _peer(self) -> str:
        return self.association.peer

    def _sink_for(self, received: CommandReceived) -> DatasetSink | None:
        """Where an admitted C-STORE's data set goes (the gate has passed it)."""
        store = self.services.store
        if store is None or received.command.get(Tag.CommandField) != CommandField.C_STORE_RQ:
            return None
        syntax = self._syntax(received.context_id)
        job = store.begin(self.association, received.command, syntax)
        inbound = InboundObject(job, received.command, syntax, self._peer, store.keep_tags)
        self._inbound[received.context_id] = inbound
        return inbound

    async def run(self) -> None:
        window = self.association.negotiated.max_operations
        try:
            while (message := await self.association.receive_message(self._sink_for)) is not None:
                if message.refused is not None:
                    await self._refuse(message)
                elif message.field is CommandField.C_CANCEL_RQ:
                    continue  # nothing is running: a late cancel has nothing to stop
                elif message.field.is_response:
                    # We sent no request on this association: a response answers nothing.
                    self.association.protocol_failure(
                        f"unexpected {message.field.name}: we sent no request to answer"
                    )
                    return
                elif message.field is CommandField.C_STORE_RQ:
                    inbound = self._inbound.pop(message.context_id, None)  # the next may reuse it
                    if window == 1:
                        await self._store(message, inbound)
                    else:
                        await self._store_behind(message, inbound, window)
                else:
                    await self._stores_answered()  # one request at a time for other services
                    await self._serve(message)
        except AssociationError as exc:  # it ended while we answered; nothing left to answer
            log.warning("association with %s ended: %s", self._peer, exc)
        finally:
            for inbound in self._inbound.values():
                inbound.abort()  # the peer left mid-transfer: nothing partial is kept
            await self._stores_answered()

    async def _serve(self, message: Message) -> None:
        handler = self._handlers.get(message.field)
        if handler is None:
            await self._answer(message, Status.UNRECOGNIZED_OPERATION, "not supported here")
            return
        try:
            await handler(message)
        except StatusError as exc:
            await self._answer(message, exc.status, str(exc))
        except (AssociationError, ConnectionError):
            raise
        except Exception:
            log.exception("%s from %s failed", _named(message.field), self._peer)
            await self._reply(message, _failure(message, Status.PROCESSING_FAILURE))

    # -- refusals -----------------------------------------------------------------------------

    def refused(self, refusal: Refusal) -> None:
        """The gate refused a message (observer of the association): reported as a security
        event, whether it is answered with a status or the association is aborted."""
        if refusal.service is not None:
            notify(
                self.services.events.on_refused, self.association, refusal.service, refusal.reason
            )

    async def _refuse(self, message: Message) -> None:
        """Answer a message the gate refused with its status, in one log line."""
        refusal = message.refused
        assert refusal is not None and refusal.status is not None
        await self._answer(message, refusal.status, refusal.reason)

    async def _answer(self, message: Message, status: int, why: str) -> None:
        log.warning(
            "%s from %s (calling %r, %s) refused (%s): %s",
            _named(message.field),
            self._peer,
            self.association.calling_ae,
            self.admission.rule or "no access rule",
            status_name(status),
            why,
        )
        await self._reply(message, _failure(message, status))

    # -- plumbing -----------------------------------------------------------------------------

    def _syntax(self, context_id: int) -> str:
        context = self.association.negotiated.by_id(context_id)
        return context.transfer_syntax if context else IMPLICIT_VR_LE

    def _identifier(self, message: Message) -> Dataset:
        """The request's identifier, checked as a C-STORE data set is (structure, nesting
        depth) and counted before pydicom reads it; StatusError for one that is not a data
        set, or holds far more than keys."""
        syntax = self._syntax(message.context_id)
        data = message.dataset or b""
        try:
            _scan_identifier(data, syntax)
            return decode_dataset(data, syntax)
        except (DatasetScanError, DatasetError) as exc:
            raise StatusError(Status.UNABLE_TO_PROCESS, f"unreadable identifier: {exc}") from None

    async def _reply(
        self, message: Message, command: CommandSet, dataset: bytes | None = None
    ) -> None:
        await self.association.send_message(
            message.context_id, command, None if dataset is None else [dataset]
        )

    async def _cancelled(self, message_id: int) -> bool:
        """Let the loop read (a C-CANCEL may be in flight), then check for one."""
        await asyncio.sleep(0)
        return self.association.cancel_requested(message_id)

    # -- C-ECHO, C-STORE ----------------------------------------------------------------------

    async def _echo(self, message: Message) -> None:
        await self._reply(message, c_echo_rsp(_message_id(message)))

    async def _store_behind(
        self, message: Message, inbound: InboundObject | None, window: int
    ) -> None:
        """Commit and answer this C-STORE while the next request arrives (an asynchronous
        operations window was negotiated); with ``window`` outstanding, wait for one."""
        task = asyncio.get_running_loop().create_task(self._store(message, inbound))
        self._storing.add(task)
        task.add_done_callback(self._store_done)
        while window and len(self._storing) >= window:
            await asyncio.wait(self._storing, return_when=asyncio.FIRST_COMPLETED)

    def _store_done(self, task: asyncio.Task[None]) -> None:
        self._storing.discard(task)
        if task.cancelled():
            return
        failure = task.exception()
        if failure is not None and not isinstance(failure, ConnectionError):
            log.error("C-STORE from %s failed", self._peer, exc_info=failure)

    async def _stores_answered(self) -> None:
        if self._storing:
            await asyncio.gather(*self._storing, return_exceptions=True)

    async def _store(self, message: Message, inbound: InboundObject | None) -> None:
        if inbound is None:  # no store target: the policy should not have accepted storage
            await self._answer(message, Status.SOP_CLASS_NOT_SUPPORTED, "no storage here")
            return
        status = await inbound.finish()
        response = c_store_rsp(
            _message_id(message),
            inbound.sop_class_uid,
            inbound.sop_instance_uid,
            status,
            getattr(status, "comment", None),  # a refusal's reason, for the sender
        )
        await self._reply(message, response)
        record = StoreRecord(
            inbound.sop_class_uid, inbound.sop_instance_uid, status, inbound.size, inbound.elapsed()
        )
        notify(self.services.events.on_stored, self.association, record)

    # -- C-FIND -------------------------------------------------------------------------------

    async def _find(self, message: Message) -> None:
        sop_class = _sop_class(message)
        message_id = _message_id(message)
        syntax = self._syntax(message.context_id)
        matches = 0
        status: int = Status.SUCCESS
        try:
            identifier = self._identifier(message)
            find = self.services.find
            if find is None:
                raise StatusError(Status.SOP_CLASS_NOT_SUPPORTED, "no C-FIND here")
            found = await asyncio.to_thread(
                lambda: iter(find(self.association, sop_class, identifier))
            )
            try:
                while batch := await asyncio.to_thread(_next_batch, found):
                    for match in batch:
                        if await self._cancelled(message_id):
                            status = Status.CANCEL
                            break
                        pending = c_find_rsp(message_id, sop_class, Status.PENDING, True)
                        await self._reply(message, pending, encode_dataset(match, syntax))
                        matches += 1
                    if status == Status.CANCEL:
                        break
            finally:  # a cancelled or cut-off C-FIND ends its query off the loop too
                await asyncio.to_thread(_close, found)
        except StatusError as exc:
            status = exc.status
            log.warning(
                "C-FIND from %s (calling %r) answered %s: %s",
                self._peer,
                self.association.calling_ae,
                status_name(status),
                exc,
            )
        await self._reply(message, c_find_rsp(message_id, sop_class, status, False))
        record = QueryRecord(sop_class, message.dataset or b"", syntax, matches, status)
        notify(self.services.events.on_queried, self.association, record)

    # -- C-MOVE, C-GET ------------------------------------------------------------------------

    async def _files(self, message: Message) -> list[Path]:
        identifier = self._identifier(message)
        retrieve = self.services.retrieve
        if retrieve is None:
            raise StatusError(Status.SOP_CLASS_NOT_SUPPORTED, "no retrieval here")
        sop_class = _sop_class(message)
        return await asyncio.to_thread(
            lambda: list(retrieve(self.association, sop_class, identifier))
        )

    def _headers(self, files: list[Path], outcome: _Outcome) -> list[Part10Header]:
        """The stored files' headers; one that cannot be read is a failed sub-operation."""
        headers = []
        for path in files:
            try:
                headers.append(read_header(path))
            except Part10Error as exc:
                outcome.fail(path, None, f"stored file unreadable: {exc}")
        return headers

    async def _finish_retrieve(
        self,
        message: Message,
        service: Service,
        destination: str,
        outcome: _Outcome,
        status: int | None = None,
    ) -> None:
        """The final C-MOVE/C-GET response, with the failed instances in its identifier
        (PS3.4 C.4.2.3.1), one log line if anything failed, and the retrieve event."""
        status = outcome.final_status() if status is None else status
        dataset = None
        if outcome.failed_uids:
            from pydicom.dataset import Dataset  # the node has pydicom loaded anyway

            identifier = Dataset()
            setattr(identifier, _FAILED_SOP_INSTANCE_UID_LIST, outcome.failed_uids)
            dataset = encode_dataset(identifier, self._syntax(message.context_id))
        build = c_move_rsp if service is Service.MOVE else c_get_rsp
        final = build(
            _message_id(message), _sop_class(message), status, outcome.counts(), dataset is not None
        )
        if outcome.failed:
            log.warning(
                "C-%s from %s to %r: %d of %d object(s) not sent (%s): %s",
                service.value.upper(),
                self._peer,
                destination,
                len(outcome.failed),
                outcome.total,
                status_name(status),
                outcome.why(),
            )
        await self._reply(message, final, dataset)
        record = RetrieveRecord(
            service,
            destination,
            tuple(outcome.transferred),
            tuple(p for p, _ in outcome.failed),
            status,
        )
        notify(self.services.events.on_retrieved, self.association, record)

    async def _pending(self, message: Message, service: Service, outcome: _Outcome) -> bool:
        """A pending response after a sub-operation; False if the requestor cancelled."""
        if await self._cancelled(_message_id(message)):
            await self._finish_retrieve(
                message, service, self._destination(message, service), outcome, Status.CANCEL
            )
            return False
        if outcome.remaining:
            build = c_move_rsp if service is Service.MOVE else c_get_rsp
            pending = build(
                _message_id(message), _sop_class(message), Status.PENDING, outcome.counts()
            )
            await self._reply(message, pending)
        return True

    def _destination(self, message: Message, service: Service) -> str:
        if service is Service.MOVE:
            return str(message.command[Tag.MoveDestination]).strip()
        return self.association.calling_ae

    async def _move(self, message: Message) -> None:
        destination = self._destination(message, Service.MOVE)
        host, port = self._move_address(destination)
        files = await self._files(message)
        outcome = _Outcome.of(len(files))
        headers = self._headers(files, outcome)
        sub = await self._sub_association(host, port, destination, headers, outcome)
        if sub is None:
            await self._finish_retrieve(message, Service.MOVE, destination, outcome)
            return
        async with sub:  # released after the final response: the counts are final before
            for header in headers:  # a destination that is slow to release can hold them back
                if sub.ended:
                    outcome.fail(header.path, header.sop_instance_uid, "sub-association ended")
                else:
                    await self._sub_store(outcome, header, sub.store_header)
                if not await self._pending(message, Service.MOVE, outcome):
                    return
            await self._finish_retrieve(message, Service.MOVE, destination, outcome)

    def _move_address(self, destination: str) -> tuple[str, int]:
        """Where C-MOVE destination ``destination`` listens; StatusError if it is not one we
        know, or not one the access policy lets this peer send to."""
        address = self.services.move_destinations.get(destination)
        granted = self.admission.move_destinations
        if address is None:
            raise StatusError(
                Status.MOVE_DESTINATION_UNKNOWN, f"{destination!r} is not a configured destination"
            )
        if granted is not None and destination not in granted:
            allowed = ", ".join(sorted(granted)) or "nowhere"
            why = f"{self.admission.rule or 'the access policy'} allows C-MOVE to {allowed} only"
            notify(self.services.events.on_refused, self.association, Service.MOVE, why)
            raise StatusError(Status.MOVE_DESTINATION_UNKNOWN, f"to {destination!r}: {why}")
        return address

    async def _sub_association(
        self, host: str, port: int, destination: str, headers: list[Part10Header], outcome: _Outcome
    ) -> Association | None:
        """The C-MOVE's association to its destination, proposing what ``headers`` need; None
        when there is nothing to send, or it cannot be opened (each object then failed)."""
        if not headers:
            return None
        try:
            return await associate(
                host,
                port,
                current_settings(self.services.move_tls),
                calling_ae=self.association.called_ae,
                called_ae=destination,
                proposals=proposals_for_headers(headers),
            )
        except (AssociationError, OSError, TLSError) as exc:
            for header in headers:
                outcome.fail(header.path, header.sop_instance_uid, f"cannot associate: {exc}")
            return None

    async def _sub_store(
        self,
        outcome: _Outcome,
        header: Part10Header,
        send: Callable[[Part10Header], Coroutine[Any, Any, int]],
    ) -> None:
        """One sub-operation: sent and Success, or failed with why."""
        try:
            status = await send(header)
        except (AssociationError, Part10Error) as exc:
            outcome.fail(header.path, header.sop_instance_uid, str(exc))
            return
        outcome.answered(header, status)

    async def _get(self, message: Message) -> None:
        files = await self._files(message)
        outcome = _Outcome.of(len(files))
        requestor = self._destination(message, Service.GET)
        for header in self._headers(files, outcome):
            await self._sub_store(outcome, header, self._store_back)
            if self.association.ended:
                raise AssociationError(f"C-GET from {self._peer}: the requestor left")
            if not await self._pending(message, Service.GET, outcome):
                return
        await self._finish_retrieve(message, Service.GET, requestor, outcome)

    async def _store_back(self, header: Part10Header) -> int:
        """One C-GET sub-operation: C-STORE on a context where the requestor is SCP."""
        association = self.association
        block_size = read_size(association.peer_max_pdu_length)
        try:
            out = await outgoing(header, association.negotiated, as_scp=True, block_size=block_size)
        except NoWayToSend as exc:
            raise AssociationError(str(exc)) from None
        sub_id = association.next_message_id()
        command = c_store_rq(sub_id, header.sop_class_uid, header.sop_instance_uid)
        await association.send_message(out.context.id, command, out.blocks)
        response = await association.response(CommandField.C_STORE_RSP, sub_id)
        return number(response.command, Tag.Status, Status.PROCESSING_FAILURE)
