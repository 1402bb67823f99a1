"""Query/Retrieve as SCU (PS3.4 Annex C): C-FIND, C-MOVE, C-GET and C-CANCEL over an association.

C-GET's C-STORE sub-operations arrive on the same association; they are written
through the same streaming sinks a storage SCP uses, so retrieving a large study
never holds an object in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dicomtls.dimse import sop_classes as sop_classes_module
from dicomtls.dimse.command import (
    CommandField,
    CommandSet,
    Tag,
    answered_status,
    command_field,
    number,
)
from dicomtls.dimse.datasets import decode_dataset, encode_dataset
from dicomtls.dimse.messages import c_cancel_rq, c_find_rq, c_get_rq, c_move_rq, c_store_rsp
from dicomtls.dimse.pdv import CommandReceived
from dicomtls.dimse.sop_classes import service_of
from dicomtls.dimse.status import Category, Status, status_category, status_name
from dicomtls.dimse.transfer_syntax import STORAGE_TRANSFER_SYNTAXES, UNCOMPRESSED, is_native
from dicomtls.errors import AssociationError
from dicomtls.logs import get_logger
from dicomtls.net.hooks import StoreJob, StoreTarget
from dicomtls.net.inbound import InboundObject
from dicomtls.net.outbound import MAX_CONTEXTS
from dicomtls.text import printable
from dicomtls.ul.acse import Proposal

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from dicomtls.net.association import Association, DatasetSink, Message

log = get_logger("dicomtls.net")

__all__ = [
    "UNIQUE_KEYS",
    "QueryModel",
    "RetrieveResult",
    "StoreTarget",
    "find",
    "get",
    "move",
    "retrieve_proposals",
]

#: Each query level's unique key (PS3.4 C.2.2.1.1): what names one match at that level.
UNIQUE_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}


class QueryModel(enum.Enum):
    """The information models: (FIND, MOVE, GET) SOP class UIDs (PS3.4 C.6)."""

    PATIENT_ROOT = (
        "1.2.840.10008.5.1.4.1.2.1.1",
        "1.2.840.10008.5.1.4.1.2.1.2",
        "1.2.840.10008.5.1.4.1.2.1.3",
    )
    STUDY_ROOT = (
        "1.2.840.10008.5.1.4.1.2.2.1",
        "1.2.840.10008.5.1.4.1.2.2.2",
        "1.2.840.10008.5.1.4.1.2.2.3",
    )

    @property
    def find_uid(self) -> str:
        return self.value[0]

    @property
    def move_uid(self) -> str:
        return self.value[1]

    @property
    def get_uid(self) -> str:
        return self.value[2]


@dataclass
class RetrieveResult:
    """The final C-MOVE/C-GET status and sub-operation counts."""

    status: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    stored: list[str] = field(default_factory=list)
    """SOP instance UIDs received (C-GET)."""
    cancelled: str | None = None
    """Why we cancelled the C-GET (C-CANCEL), if we did: what ``stop_when`` said."""

    @property
    def ok(self) -> bool:
        return status_category(self.status) is Category.SUCCESS and self.cancelled is None


StopWhen = Callable[[], "str | None"]
"""Why a C-GET should stop receiving (its folder is full, say), or None to go on."""


def retrieve_proposals(
    model: QueryModel,
    sop_classes: Sequence[str] | None = None,
    transfer_syntaxes: Sequence[str] = STORAGE_TRANSFER_SYNTAXES,
) -> list[Proposal]:
    """What a C-GET proposes: its own context, and for each storage class the SCP role (we
    receive) in every syntax of ``transfer_syntaxes`` (``sop_classes`` None: the common ones).

    A peer accepts one syntax per context and sends each object as it is stored, or not
    at all if it cannot convert (pynetdicom converts nothing, not even big to little
    endian); so every syntax gets a context of its own. Within the 128 contexts of an
    association, the native syntaxes of a class then share one context and its
    compressed ones another, before classes are dropped (so learn the classes first:
    :meth:`dicomtls.net.client.Peer.classes_in_study`).
    """
    classes = sop_classes_module.COMMON_STORAGE_SOP_CLASSES if sop_classes is None else sop_classes
    native, encapsulated = _split_native(transfer_syntaxes)
    each = [_context_per_syntax(c, (*native, *encapsulated)) for c in classes]
    if 1 + sum(len(contexts) for contexts in each) > MAX_CONTEXTS:
        each = [_two_contexts(c, native, encapsulated) for c in classes]
    return _while_they_fit([Proposal(model.get_uid, UNCOMPRESSED)], each)


def _split_native(
    transfer_syntaxes: Sequence[str],
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The native syntaxes of ``transfer_syntaxes`` (none: the uncompressed ones), and the
    encapsulated ones."""
    native = tuple(s for s in transfer_syntaxes if is_native(s)) or UNCOMPRESSED
    return native, tuple(s for s in transfer_syntaxes if not is_native(s))


def _while_they_fit(proposals: list[Proposal], each: list[list[Proposal]]) -> list[Proposal]:
    """``proposals``, then each class's contexts in turn while an association has room."""
    for contexts in each:
        if len(proposals) + len(contexts) > MAX_CONTEXTS:
            break
        proposals = proposals + contexts
    return proposals


def _receiving(sop_class: str, syntaxes: Sequence[str]) -> Proposal:
    """A storage context where we take the SCP role: the peer's C-STOREs come to us."""
    return Proposal(sop_class, tuple(syntaxes), scu_role=False, scp_role=True)


def _context_per_syntax(sop_class: str, syntaxes: Sequence[str]) -> list[Proposal]:
    return [_receiving(sop_class, (syntax,)) for syntax in syntaxes]


def _two_contexts(
    sop_class: str, native: Sequence[str], encapsulated: Sequence[str]
) -> list[Proposal]:
    """Two contexts: the native syntaxes, and the compressed ones if any."""
    return [
        _receiving(sop_class, native),
        *([_receiving(sop_class, encapsulated)] if encapsulated else []),
    ]


def _context(association: Association, sop_class: str) -> tuple[int, str]:
    context = association.negotiated.context_for(sop_class)
    if context is None:
        service = service_of(sop_class)
        what = f"C-{service.value.upper()} " if service is not None else ""
        raise AssociationError(
            f"{association.peer} did not accept {what}SOP class {sop_class} for calling AE "
            f"{association.calling_ae.strip()!r}: the peer does not offer it, or its access "
            "policy does not grant it to us (its log names the rule)"
        )
    return context.id, context.transfer_syntax


#: What one match costs in memory beyond its identifier's bytes: a decoded data set of one
#: short element takes about 1.4 KiB (measured with tracemalloc).
MATCH_OVERHEAD = 2 << 10
#: Seconds an SCP has to end a C-FIND after our C-CANCEL when the association has no DIMSE
#: timeout: the responses it had in flight (thousands, on a fast link) are read and dropped.
CANCEL_GRACE = 120.0


async def find(
    association: Association, identifier: Dataset, model: QueryModel = QueryModel.STUDY_ROOT
) -> AsyncIterator[Dataset]:
    """C-FIND: yield each matching identifier; a failure status raises at the end.

    Matches beyond ``association.max_find_memory`` (each counted as its bytes plus
    :data:`MATCH_OVERHEAD`) are not yielded: the C-FIND is cancelled and raises at its end,
    so an SCP answering with millions of matches fills no list of ours without bound.
    """
    async with _request(association, c_find_rq, model.find_uid, identifier) as (message_id, syntax):
        budget = association.max_find_memory
        while True:
            response = await association.response(CommandField.C_FIND_RSP, message_id)
            status = answered_status(response.command)
            category = status_category(status)
            if category is Category.PENDING and response.dataset is not None:
                budget -= len(response.dataset) + MATCH_OVERHEAD
                if budget < 0:
                    await _cancel_find(association, message_id)  # raises
                yield decode_dataset(response.dataset, syntax)
            if category is Category.PENDING:
                continue
            if category in (Category.SUCCESS, Category.CANCEL):
                return
            said = f": the node says {printable(status.comment)!r}" if status.comment else ""
            raise AssociationError(
                f"C-FIND failed at {association.peer}: {status_name(status)}{said}"
            )


async def _cancel_find(association: Association, message_id: int) -> None:
    """Too many matches: C-CANCEL, drop the responses the SCP had in flight until it ends
    the C-FIND (within the DIMSE timeout, else A-ABORT), and raise."""
    limit = association.max_find_memory
    log.warning("C-FIND at %s: matches beyond %d bytes; sending C-CANCEL", association.peer, limit)
    await cancel(association, message_id)
    grace = association.dimse_timeout or CANCEL_GRACE
    try:
        async with asyncio.timeout(grace):
            while True:
                response = await association.response(CommandField.C_FIND_RSP, message_id)
                if status_category(number(response.command, Tag.Status)) is not Category.PENDING:
                    break
    except TimeoutError:
        association.protocol_failure(f"C-FIND still pending {grace:g} s after our C-CANCEL")
    raise AssociationError(
        f"C-FIND at {association.peer}: more matches than fit in {limit:,} bytes of memory; "
        "cancelled. Narrow the query (or raise Association.max_find_memory)"
    )


@contextlib.asynccontextmanager
async def _request(
    association: Association,
    build: Callable[[int, str], CommandSet],
    sop_class: str,
    identifier: Dataset,
) -> AsyncIterator[tuple[int, str]]:
    """Send a request of ours (``build``: C-FIND, C-MOVE or C-GET) with its identifier, on
    its SOP class's context; its message ID and that context's syntax. While it runs, the
    context is kept for its C-CANCEL."""
    context_id, syntax = _context(association, sop_class)
    message_id = association.next_message_id()
    association.request_contexts[message_id] = context_id
    try:
        command = build(message_id, sop_class)
        await association.send_message(context_id, command, [encode_dataset(identifier, syntax)])
        yield message_id, syntax
    finally:
        association.request_contexts.pop(message_id, None)


async def cancel(association: Association, message_id: int) -> None:
    """C-CANCEL the request ``message_id`` on the context it went out on (PS3.7 9.3.2.3:
    the cancel travels with its request); its responses still have to be read."""
    context_id = association.request_contexts.get(message_id)
    if context_id is None:
        raise AssociationError(f"no request {message_id} of ours is running to cancel")
    await association.send_message(context_id, c_cancel_rq(message_id), None)


def _note_response(command: CommandSet, result: RetrieveResult) -> None:
    """A C-MOVE/C-GET response's status and sub-operation counts, into ``result``."""
    result.status = answered_status(command)  # with the SCP's Error Comment, if any
    result.completed = number(command, Tag.NumberOfCompletedSuboperations, result.completed)
    result.failed = number(command, Tag.NumberOfFailedSuboperations, result.failed)
    result.warning = number(command, Tag.NumberOfWarningSuboperations, result.warning)


async def move(
    association: Association,
    identifier: Dataset,
    destination: str,
    model: QueryModel = QueryModel.STUDY_ROOT,
) -> RetrieveResult:
    """C-MOVE: ask the peer to send the matches to AE ``destination``; returns the counts."""
    move_to = functools.partial(c_move_rq, destination=destination)
    result = RetrieveResult(Status.PENDING)
    async with _request(association, move_to, model.move_uid, identifier) as (message_id, _):
        while status_category(result.status) is Category.PENDING:
            response = await association.response(CommandField.C_MOVE_RSP, message_id)
            _note_response(response.command, result)
    return result


async def get(
    association: Association,
    identifier: Dataset,
    target: StoreTarget,
    model: QueryModel = QueryModel.STUDY_ROOT,
    *,
    stop_when: StopWhen | None = None,
) -> RetrieveResult:
    """C-GET: the peer sends the matches back on this association, into ``target``.

    After each object, ``stop_when`` is asked whether to go on; once it gives a reason, the
    C-GET is cancelled (C-CANCEL; :attr:`RetrieveResult.cancelled`) and what the peer still
    sends is answered as ``target`` answers it, until the peer ends the C-GET: within the
    DIMSE timeout (else :data:`CANCEL_GRACE`), or the association is aborted.
    """
    async with _request(association, c_get_rq, model.get_uid, identifier) as (message_id, syntax):
        return await _get_answers(association, target, message_id, syntax, stop_when)


async def _get_answers(
    association: Association,
    target: StoreTarget,
    message_id: int,
    syntax: str,
    stop_when: StopWhen | None,
) -> RetrieveResult:
    """Receive a C-GET's sub-operations into ``target`` until its final response."""
    result = RetrieveResult(Status.PENDING)
    incoming: dict[int, InboundObject] = {}
    deadline: float | None = None  # once cancelled: when the peer must have ended the C-GET

    def sink_for(received: CommandReceived) -> DatasetSink | None:
        """A C-STORE sub-operation the gate admitted (on a context we took the SCP role for)."""
        if command_field(received.command) is not CommandField.C_STORE_RQ:
            return None
        accepted = association.negotiated.by_id(received.context_id)
        syntax_in = accepted.transfer_syntax if accepted else syntax
        job: StoreJob = target.begin(association, received.command, syntax_in)
        inbound = InboundObject(
            job, received.command, syntax_in, association.peer, target.keep_tags
        )
        incoming[received.context_id] = inbound
        return inbound

    while status_category(result.status) is Category.PENDING:
        message = await _next_answer(association, sink_for, deadline, result.cancelled)
        if message is None:
            raise _ended_during_get(association, incoming, result)
        if message.field is CommandField.C_STORE_RQ:
            await _answer_store(association, message, incoming, result)
            if result.cancelled is None and stop_when is not None:
                deadline = await _stop_if_asked(association, message_id, result, stop_when)
            continue
        if (
            message.field is not CommandField.C_GET_RSP
            or message.command.get(Tag.MessageIDBeingRespondedTo) != message_id
        ):
            association.protocol_failure(f"expected C-GET-RSP for message {message_id}")
            raise AssociationError(f"{association.peer} answered our C-GET out of order")
        _note_response(message.command, result)
    return result


def _ended_during_get(
    association: Association, incoming: dict[int, InboundObject], result: RetrieveResult
) -> AssociationError:
    """The association ended before the C-GET did: nothing half-received is kept."""
    for inbound in incoming.values():
        inbound.abort()
    cancelled = f" (after our C-CANCEL: {result.cancelled})" if result.cancelled else ""
    return AssociationError(
        f"association with {association.peer} ended during C-GET{cancelled}: "
        f"{association.end_reason}"
    )


async def _stop_if_asked(
    association: Association, message_id: int, result: RetrieveResult, stop_when: StopWhen
) -> float | None:
    """Ask ``stop_when`` after an object; with a reason, cancel the C-GET and return the
    moment the peer must have ended it by."""
    result.cancelled = stop_when()
    if result.cancelled is None:
        return None
    return await _cancel_get(association, message_id, result.cancelled)


async def _answer_store(
    association: Association,
    message: Message,
    incoming: dict[int, InboundObject],
    result: RetrieveResult,
) -> None:
    """Finish a C-GET's C-STORE sub-operation and answer it with the status it earned."""
    instance = str(message.command[Tag.AffectedSOPInstanceUID])
    if message.refused is not None and message.refused.status is not None:
        status = message.refused.status
    else:
        status = await incoming.pop(message.context_id).finish()
    if status == Status.SUCCESS:
        result.stored.append(instance)
    response = c_store_rsp(
        number(message.command, Tag.MessageID),
        str(message.command[Tag.AffectedSOPClassUID]),
        instance,
        status,
    )
    await association.send_message(message.context_id, response, None)


async def _cancel_get(association: Association, message_id: int, why: str) -> float:
    """C-CANCEL the C-GET (one line saying why); when the peer must have ended it by."""
    log.warning("C-GET at %s: %s; sending C-CANCEL", association.peer, why)
    await cancel(association, message_id)
    return asyncio.get_running_loop().time() + (association.dimse_timeout or CANCEL_GRACE)


async def _next_answer(
    association: Association,
    sink_for: Callable[[CommandReceived], DatasetSink | None],
    deadline: float | None,
    cancelled: str | None,
) -> Message | None:
    """The peer's next message; once we cancelled, only until ``deadline`` (then A-ABORT)."""
    if deadline is None:
        return await association.receive_message(sink_for)
    try:
        async with asyncio.timeout_at(deadline):
            return await association.receive_message(sink_for)
    except TimeoutError:
        association.protocol_failure("C-GET still pending after our C-CANCEL")
        raise AssociationError(
            f"C-GET at {association.peer} still pending after our C-CANCEL ({cancelled}); aborted"
        ) from None
