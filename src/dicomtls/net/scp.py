"""The SCP side: accept associations and answer C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET, C-CANCEL.

What the node stores and finds is the application's business (``node/``); this
module only speaks the protocol, through the handlers in :class:`Services`.
C-STORE data sets stream into the store handler and Success is sent only after
its commit; C-MOVE opens its own sub-association to the destination (TLS when
configured); C-GET sends C-STORE sub-operations on the requesting association,
on the contexts where the requestor took the SCP role. Each association runs
in its own task, so one slow or hostile peer holds up nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from dicomtls.dimse.command import CommandField, CommandSet, Tag, command_field
from dicomtls.dimse.datasets import DatasetError, decode_dataset, encode_dataset
from dicomtls.dimse.messages import (
    c_echo_rsp,
    c_find_rsp,
    c_get_rsp,
    c_move_rsp,
    c_store_rq,
    c_store_rsp,
)
from dicomtls.dimse.part10 import Part10Error, iter_blocks, read_header
from dicomtls.dimse.pdv import CommandReceived, read_size
from dicomtls.dimse.sop_classes import (
    STORAGE_SOP_CLASSES,
    UNCOMPRESSED,
    VERIFICATION,
    Service,
    service_of,
)
from dicomtls.dimse.status import Status, status_name
from dicomtls.net.association import (
    IMPLICIT_VR_LE,
    Association,
    AssociationError,
    DatasetSink,
    Message,
    _Channel,
    associate,
    default_proposals,
)
from dicomtls.net.hooks import (
    Admission,
    Gatekeeper,
    QueryRecord,
    RequestInfo,
    RetrieveRecord,
    ServiceEvents,
    StoreRecord,
)
from dicomtls.net.link import LinkEvents, SecureLink, TLSSource, current_settings, serve
from dicomtls.net.pending import HandshakeLimits
from dicomtls.net.qr_scu import StoreJob, StoreTarget
from dicomtls.ul.acse import AcceptorPolicy, Negotiated, answer_request
from dicomtls.ul.connection import Aborted, AssociationRequested, Role, UpperLayer
from dicomtls.ul.pdu import (
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    RejectReasonPresentation,
    RejectReasonServiceUser,
    RejectResult,
    RejectSource,
)

__all__ = [
    "Admission",
    "DicomServer",
    "FindHandler",
    "Limits",
    "RetrieveHandler",
    "Services",
    "serve_dicom",
    "storage_policy",
]

log = logging.getLogger("dicomtls.net")

FindHandler = Callable[[Association, str, Dataset], Iterable[Dataset]]
"""(association, SOP class, identifier) -> matching identifiers."""
RetrieveHandler = Callable[[Association, str, Dataset], Iterable[Path]]
"""(association, SOP class, identifier) -> the Part 10 files to send."""


@dataclass
class Services:
    """What this SCP offers; a service without a handler is answered as unsupported."""

    store: StoreTarget | None = None
    find: FindHandler | None = None
    retrieve: RetrieveHandler | None = None
    move_destinations: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    """AE title -> (host, port): where C-MOVE may send."""
    move_tls: TLSSource | None = None
    """TLS for C-MOVE sub-associations (None: plain TCP)."""
    gatekeeper: Gatekeeper | None = None
    """Asked once per association request who may do what (e.g. an access policy)."""
    events: ServiceEvents = field(default_factory=ServiceEvents)
    """Told of every association and operation (e.g. an audit trail, metrics)."""


@dataclass
class Limits:
    """How much one server takes on: the rest get A-ASSOCIATE-RJ (transient, local limit)."""

    max_associations: int = 100
    max_per_peer: int = 20
    """Per peer IP address: one misbehaving host cannot take every slot."""
    idle_timeout: float | None = 300.0
    """Abort an association that sends nothing for this long."""
    artim_timeout: float = 30.0
    shutdown_grace: float = 30.0
    """On close, how long running transfers may take to finish before they are cancelled."""
    max_pending_handshakes: int | None = None
    """TLS handshakes in progress at once; None: 512, or max_associations if larger."""
    max_pending_per_peer: int | None = None
    """TLS handshakes in progress from one IP address; None: 32, or max_per_peer if larger."""

    def handshakes(self) -> HandshakeLimits:
        """The bounds on pending handshakes, never below what the association limits let in."""
        default = HandshakeLimits()
        return HandshakeLimits(
            per_peer=self.max_pending_per_peer or max(default.per_peer, self.max_per_peer),
            total=self.max_pending_handshakes or max(default.total, self.max_associations),
        )


@dataclass
class DicomServer:
    """A running SCP; ``close`` stops accepting and lets running associations finish."""

    _server: Any
    port: int
    limits: Limits
    active: dict[str, int] = field(default_factory=dict)
    """Associations in progress, per peer address."""

    async def close(self) -> None:
        await self._server.close(grace=self.limits.shutdown_grace)

    async def __aenter__(self) -> DicomServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def serve_dicom(
    host: str,
    port: int,
    tls: TLSSource | None,
    policy: AcceptorPolicy,
    services: Services | None = None,
    *,
    limits: Limits | None = None,
    events: LinkEvents | None = None,
) -> DicomServer:
    """Accept associations on ``host:port`` and serve them with ``services``."""
    services = services or Services()
    limits = limits or Limits()
    active: dict[str, int] = {}

    @functools.lru_cache(maxsize=64)
    def policy_for(granted: frozenset[Service] | None) -> AcceptorPolicy:
        """The policy narrowed to the services granted: made once per grant, not per request."""
        if granted is None:
            return policy
        supported = {k: v for k, v in policy.supported.items() if service_of(k) in granted}
        return dataclasses.replace(policy, supported=supported)

    async def handler(link: SecureLink) -> None:
        address = link.peer.rsplit(":", 1)[0]
        active[address] = active.get(address, 0) + 1
        try:
            refusal = _over_limit(active, address, limits)
            with contextlib.suppress(ConnectionError):
                await _serve_association(link, policy_for, services, limits, refusal)
        finally:
            active[address] -= 1
            if not active[address]:
                del active[address]

    server = await serve(handler, host, port, tls, events=events, handshakes=limits.handshakes())
    return DicomServer(server, server.port, limits, active)


def storage_policy(
    ae_title: str, *, also: Iterable[str] = (), max_pdu_length: int = 4 << 20
) -> AcceptorPolicy:
    """An acceptor policy for a storage SCP: Verification, every storage SOP class and the
    SOP classes in ``also``, uncompressed (data sets are stored as they arrive)."""
    supported = {sop: UNCOMPRESSED for sop in (*STORAGE_SOP_CLASSES, VERIFICATION, *also)}
    return AcceptorPolicy(ae_title, supported, max_pdu_length=max_pdu_length)


def _over_limit(active: dict[str, int], address: str, limits: Limits) -> str | None:
    if sum(active.values()) > limits.max_associations:
        return f"{limits.max_associations} associations already active"
    if active[address] > limits.max_per_peer:
        return f"{limits.max_per_peer} associations already active from {address}"
    return None


async def _serve_association(
    link: SecureLink,
    policy_for: Callable[[frozenset[Service] | None], AcceptorPolicy],
    services: Services,
    limits: Limits,
    refusal: str | None,
) -> None:
    policy = policy_for(None)
    ul = UpperLayer(Role.ACCEPTOR, max_pdu_length=policy.max_pdu_length)
    channel = _Channel(link, ul, limits.artim_timeout, limits.idle_timeout)
    event = await channel.next_event()
    if not isinstance(event, AssociationRequested):
        if isinstance(event, Aborted):
            log.warning("association from %s: %s", link.peer, event.message)
        return
    request = event.request
    info = RequestInfo(
        link.peer, request.calling_ae.strip(), request.called_ae.strip(), link.session
    )
    admission = Admission()
    if refusal is None:
        admission = _admit(services.gatekeeper, info)
    answer = _answer(request, policy_for(admission.services), refusal, admission)
    if isinstance(answer, AssociateRJ):
        why = refusal or answer.reason.name
        if admission.refusal is not None:
            why = f"calling AE title not recognized: {admission.refusal}"
        log.warning(
            "association from %s (calling %r, called %r) rejected: %s",
            link.peer, info.calling_ae, info.called_ae, why,
        )  # fmt: skip
        _notify(services.events.on_rejected, info, why)
        ul.reject(answer)
        channel.flush()
        await channel.next_event()  # the peer closes, or ARTIM ends it
        return
    ul.accept(answer)
    channel.flush()
    negotiated = Negotiated.from_exchange(request, answer, we_requested=False)
    association = Association(channel, negotiated, request.calling_ae, policy.ae_title)
    _log_declined(info, request, answer, admission)
    _notify(services.events.on_accepted, association, admission)
    try:
        await _Dispatcher(association, services, admission).run()
    finally:
        association.end_reason = association.end_reason or "connection lost"
        _notify(services.events.on_ended, association)


def _admit(gatekeeper: Gatekeeper | None, info: RequestInfo) -> Admission:
    if gatekeeper is None:
        return Admission()
    try:
        return gatekeeper(info)
    except Exception:
        log.exception("access check for %s failed; rejecting", info.peer)
        return Admission.reject("the access check itself failed (see the log)")


def _answer(
    request: AssociateRQ, policy: AcceptorPolicy, refusal: str | None, admission: Admission
) -> AssociateAC | AssociateRJ:
    if refusal is not None:
        return _busy()
    if admission.refusal is not None:
        return AssociateRJ(
            RejectResult.PERMANENT,
            RejectSource.SERVICE_USER,
            RejectReasonServiceUser.CALLING_AE_NOT_RECOGNIZED,
        )
    return answer_request(request, policy)


def _log_declined(
    info: RequestInfo, request: AssociateRQ, answer: AssociateAC, admission: Admission
) -> None:
    """Say which proposed services the admission withheld, so a refusal is never a mystery."""
    if admission.services is None:
        return
    withheld = sorted(
        {
            str(service)
            for context in request.presentation_contexts
            if (service := service_of(context.abstract_syntax)) is not None
            and service not in admission.services
        }
    )
    if withheld:
        log.warning(
            "association from %s (calling %r): %s does not grant %s; those contexts declined",
            info.peer, info.calling_ae, admission.rule or "the access policy", ", ".join(withheld),
        )  # fmt: skip


def _notify(callback: Callable[..., None] | None, *args: object) -> None:
    """Call an observer; its failure is logged, never the protocol's problem."""
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:
        log.exception("event observer %r failed", callback)


def _busy() -> AssociateRJ:
    return AssociateRJ(
        RejectResult.TRANSIENT,
        RejectSource.SERVICE_PROVIDER_PRESENTATION,
        RejectReasonPresentation.LOCAL_LIMIT_EXCEEDED,
    )


class _CountedJob:
    """A store job that also counts its bytes and time, for the events."""

    __slots__ = ("job", "size", "started")

    def __init__(self, job: StoreJob) -> None:
        self.job = job
        self.size = 0
        self.started = time.perf_counter()

    def write(self, data: memoryview) -> Awaitable[None] | None:
        self.size += len(data)
        return self.job.write(data)


class _Dispatcher:
    """Answers one association's requests, one at a time (asynchronous operations window 1)."""

    def __init__(
        self, association: Association, services: Services, admission: Admission | None = None
    ) -> None:
        self.association = association
        self.services = services
        self.admission = admission or Admission()
        self._jobs: dict[int, _CountedJob] = {}
        self._storing: set[asyncio.Task[None]] = set()  # C-STOREs committing while others arrive

    def _sink_for(self, received: CommandReceived) -> DatasetSink | None:
        store = self.services.store
        if store is None or command_field(received.command) is not CommandField.C_STORE_RQ:
            return None
        context = self.association.negotiated.by_id(received.context_id)
        syntax = context.transfer_syntax if context else IMPLICIT_VR_LE
        job = _CountedJob(store.begin(self.association, received.command, syntax))
        self._jobs[received.context_id] = job
        return job

    async def run(self) -> None:
        handlers = {
            CommandField.C_ECHO_RQ: self._echo,
            CommandField.C_FIND_RQ: self._find,
            CommandField.C_MOVE_RQ: self._move,
            CommandField.C_GET_RQ: self._get,
        }
        window = self.association.negotiated.max_operations
        try:
            while (message := await self.association.receive_message(self._sink_for)) is not None:
                if message.field is CommandField.C_CANCEL_RQ:
                    continue  # nothing is running: a late cancel has nothing to stop
                if message.field.is_response:
                    # We sent no request on this association: a response answers nothing.
                    self.association.protocol_failure(
                        f"unexpected {message.field.name}: we sent no request to answer"
                    )
                    return
                if message.field is CommandField.C_STORE_RQ:
                    job = self._jobs.pop(message.context_id, None)  # the next may reuse the context
                    if window == 1:
                        await self._store(message, job)
                    else:
                        await self._store_behind(message, job, window)
                    continue
                await self._stores_answered()  # one request at a time for every other service
                handler = handlers.get(message.field)
                if handler is None:
                    await self._unsupported(message)
                else:
                    await handler(message)
        finally:
            for job in self._jobs.values():
                job.job.abort()  # the peer left mid-transfer: nothing partial is kept
            await self._stores_answered()

    async def _store_behind(self, message: Message, job: _CountedJob | None, window: int) -> None:
        """Commit and answer this C-STORE while the next request arrives (an asynchronous
        operations window was negotiated); with ``window`` outstanding, wait for one."""
        task = asyncio.get_running_loop().create_task(self._store(message, job))
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
            log.error("C-STORE from %s failed", self.association.peer, exc_info=failure)

    async def _stores_answered(self) -> None:
        if self._storing:
            await asyncio.gather(*self._storing, return_exceptions=True)

    async def _cancelled(self, message_id: int) -> bool:
        """Let the loop read (a C-CANCEL may be in flight), then check for one."""
        await asyncio.sleep(0)
        return self.association.cancel_requested(message_id)

    def _syntax(self, message: Message) -> str:
        context = self.association.negotiated.by_id(message.context_id)
        return context.transfer_syntax if context else IMPLICIT_VR_LE

    def _identifier(self, message: Message) -> Dataset | None:
        try:
            return decode_dataset(message.dataset or b"", self._syntax(message))
        except DatasetError as exc:
            log.warning("%s from %s: %s", message.field.name, self.association.peer, exc)
            return None

    async def _reply(
        self, message: Message, command: CommandSet, dataset: bytes | None = None
    ) -> None:
        await self.association.send_message(
            message.context_id, command, None if dataset is None else [dataset]
        )

    async def _unsupported(self, message: Message) -> None:
        log.warning("%s from %s is not supported here", message.field.name, self.association.peer)
        response: CommandSet = {
            Tag.CommandField: message.field.value | 0x8000,
            Tag.MessageIDBeingRespondedTo: _message_id(message),
            Tag.CommandDataSetType: 0x0101,
            Tag.Status: Status.UNRECOGNIZED_OPERATION,
        }
        await self._reply(message, response)

    async def _echo(self, message: Message) -> None:
        await self._reply(message, c_echo_rsp(_message_id(message)))

    async def _store(self, message: Message, job: _CountedJob | None) -> None:
        status = Status.SOP_CLASS_NOT_SUPPORTED if job is None else await job.job.commit()
        if job is None:  # a store handler logs its own refusals, with the reason
            log.warning("C-STORE from %s: %s", self.association.peer, status_name(status))
        command = message.command
        sop_class = str(command[Tag.AffectedSOPClassUID])
        sop_instance = str(command[Tag.AffectedSOPInstanceUID])
        await self._reply(
            message, c_store_rsp(_message_id(message), sop_class, sop_instance, status)
        )
        if job is not None:
            elapsed = time.perf_counter() - job.started
            record = StoreRecord(sop_class, sop_instance, status, job.size, elapsed)
            _notify(self.services.events.on_stored, self.association, record)

    async def _find(self, message: Message) -> None:
        sop_class = str(message.command[Tag.AffectedSOPClassUID])
        message_id = _message_id(message)
        identifier = self._identifier(message)
        if identifier is None or self.services.find is None:
            status = (
                Status.UNABLE_TO_PROCESS if identifier is None else Status.SOP_CLASS_NOT_SUPPORTED
            )
            await self._reply(message, c_find_rsp(message_id, sop_class, status, False))
            return
        syntax = self._syntax(message)
        matches = 0
        status = Status.SUCCESS
        for match in self.services.find(self.association, sop_class, identifier):
            if await self._cancelled(message_id):
                status = Status.CANCEL
                break
            pending = c_find_rsp(message_id, sop_class, Status.PENDING, True)
            await self._reply(message, pending, encode_dataset(match, syntax))
            matches += 1
        await self._reply(message, c_find_rsp(message_id, sop_class, status, False))
        record = QueryRecord(sop_class, message.dataset or b"", syntax, matches, status)
        _notify(self.services.events.on_queried, self.association, record)

    def _retrieved(
        self, service: Service, destination: str, sent: list[Path], failed: list[Path], status: int
    ) -> None:
        record = RetrieveRecord(service, destination, tuple(sent), tuple(failed), status)
        _notify(self.services.events.on_retrieved, self.association, record)

    def _files(self, message: Message, identifier: Dataset) -> list[Path]:
        retrieve = self.services.retrieve
        if retrieve is None:
            return []
        return list(
            retrieve(self.association, str(message.command[Tag.AffectedSOPClassUID]), identifier)
        )

    async def _move(self, message: Message) -> None:
        sop_class = str(message.command[Tag.AffectedSOPClassUID])
        message_id = _message_id(message)
        destination = str(message.command[Tag.MoveDestination]).strip()
        address = self.services.move_destinations.get(destination)
        granted = self.admission.move_destinations
        if address is not None and granted is not None and destination not in granted:
            allowed = ", ".join(sorted(granted)) or "nowhere"
            why = f"{self.admission.rule or 'the access policy'} allows C-MOVE to {allowed} only"
            log.warning(
                "C-MOVE from %s (calling %r) to %r refused: %s",
                self.association.peer, self.association.calling_ae, destination, why,
            )  # fmt: skip
            _notify(self.services.events.on_refused, self.association, Service.MOVE, why)
            status = Status.MOVE_DESTINATION_UNKNOWN
            await self._reply(message, c_move_rsp(message_id, sop_class, status))
            return
        identifier = self._identifier(message)
        if address is None or identifier is None:
            status = (
                Status.MOVE_DESTINATION_UNKNOWN if address is None else Status.UNABLE_TO_PROCESS
            )
            log.warning(
                "C-MOVE from %s to %r: %s", self.association.peer, destination, status_name(status)
            )
            await self._reply(message, c_move_rsp(message_id, sop_class, status))
            return
        files = self._files(message, identifier)
        try:
            headers = [read_header(path) for path in files]
            sub = await associate(
                address[0], address[1], current_settings(self.services.move_tls), calling_ae=self.association.called_ae,
                called_ae=destination, proposals=default_proposals(sorted({h.sop_class_uid for h in headers})),
            )  # fmt: skip
        except (AssociationError, OSError, Part10Error) as exc:
            log.warning(
                "C-MOVE from %s: sub-association to %s failed: %s",
                self.association.peer,
                destination,
                exc,
            )
            await self._reply(message, c_move_rsp(message_id, sop_class, Status.OUT_OF_RESOURCES_SUBOPERATIONS, (0, 0, len(files), 0)))  # fmt: skip
            return
        sent: list[Path] = []
        lost: list[Path] = []
        async with sub:
            for index, path in enumerate(files):
                if await self._cancelled(message_id):
                    counts = (len(files) - index, len(sent), len(lost), 0)
                    await self._reply(
                        message, c_move_rsp(message_id, sop_class, Status.CANCEL, counts)
                    )
                    self._retrieved(Service.MOVE, destination, sent, lost, Status.CANCEL)
                    return
                try:
                    ok = await sub.store(path) == Status.SUCCESS
                except AssociationError:
                    ok = False
                (sent if ok else lost).append(path)
                remaining = len(files) - index - 1
                if remaining:
                    counts = (remaining, len(sent), len(lost), 0)
                    await self._reply(
                        message, c_move_rsp(message_id, sop_class, Status.PENDING, counts)
                    )
        final = Status.SUCCESS if not lost else Status.COERCION_OF_DATA_ELEMENTS
        await self._reply(
            message, c_move_rsp(message_id, sop_class, final, (0, len(sent), len(lost), 0))
        )
        self._retrieved(Service.MOVE, destination, sent, lost, final)

    async def _get(self, message: Message) -> None:
        sop_class = str(message.command[Tag.AffectedSOPClassUID])
        message_id = _message_id(message)
        identifier = self._identifier(message)
        if identifier is None:
            await self._reply(message, c_get_rsp(message_id, sop_class, Status.UNABLE_TO_PROCESS))
            return
        files = self._files(message, identifier)
        requestor = self.association.calling_ae
        sent: list[Path] = []
        lost: list[Path] = []
        for index, path in enumerate(files):
            if await self._cancelled(message_id):
                counts = (len(files) - index, len(sent), len(lost), 0)
                await self._reply(message, c_get_rsp(message_id, sop_class, Status.CANCEL, counts))
                self._retrieved(Service.GET, requestor, sent, lost, Status.CANCEL)
                return
            ok = await self._store_back(path)
            (sent if ok else lost).append(path)
            remaining = len(files) - index - 1
            if remaining:
                counts = (remaining, len(sent), len(lost), 0)
                await self._reply(message, c_get_rsp(message_id, sop_class, Status.PENDING, counts))
        final = Status.SUCCESS if not lost else Status.COERCION_OF_DATA_ELEMENTS
        await self._reply(
            message, c_get_rsp(message_id, sop_class, final, (0, len(sent), len(lost), 0))
        )
        self._retrieved(Service.GET, requestor, sent, lost, final)

    async def _store_back(self, path: Path) -> bool:
        """One C-GET sub-operation: C-STORE on a context where the requestor is SCP."""
        header = read_header(path)
        context = self.association.negotiated.context_for(
            header.sop_class_uid, header.transfer_syntax_uid
        )
        if context is None or not context.scp_role:
            log.warning(
                "C-GET to %s: no context with SCP role for %s",
                self.association.peer,
                header.sop_class_uid,
            )
            return False
        sub_id = self.association.next_message_id()
        command = c_store_rq(sub_id, header.sop_class_uid, header.sop_instance_uid)
        blocks = iter_blocks(header, read_size(self.association.peer_max_pdu_length))
        await self.association.send_message(context.id, command, blocks)
        response = await self.association.response(CommandField.C_STORE_RSP, sub_id)
        return response.command.get(Tag.Status) == Status.SUCCESS


def _message_id(message: Message) -> int:
    return int(message.command[Tag.MessageID])  # type: ignore[arg-type]
