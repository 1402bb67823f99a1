"""The SCP's hooks for the application: who may associate, and what happened.

The protocol code in :mod:`dicomtls.net.scp` knows nothing of access rules,
audit trails or metrics; it asks a *gatekeeper* once per association request
and reports each finished operation through :class:`ServiceEvents`. The node
(``dicomtls.node``) plugs its access policy, audit trail and metrics in here.
Objects received by C-STORE go to a :class:`StoreTarget`; a handler that cannot
serve a request raises :class:`StatusError` with the status to answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dicomtls.dimse.dataset_scan import ScannedDataset
from dicomtls.dimse.sop_classes import Service
from dicomtls.errors import DicomTLSError
from dicomtls.net.link import TLSSource
from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.session import SessionInfo

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from dicomtls.dimse.command import CommandSet
    from dicomtls.net.association import Association

__all__ = [
    "Admission",
    "FindHandler",
    "Gatekeeper",
    "QueryRecord",
    "RequestInfo",
    "RetrieveHandler",
    "RetrieveRecord",
    "ServiceEvents",
    "Services",
    "StatusError",
    "StoreJob",
    "StoreRecord",
    "StoreTarget",
    "peer_address",
]


class StatusError(DicomTLSError):
    """Raised by a service handler: answer the request with ``status`` (a PS3.7 failure
    or warning) instead of what the handler would have produced. ``str(exc)`` says why,
    for the node's log line."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class StoreJob(Protocol):
    """One incoming object: data set fragments in, then commit or abort.

    ``write`` may return an awaitable: the association reads nothing more until it
    completes (a disk behind a job that writes in the background sets the pace).
    ``commit`` gets the data set as the SCP checked it while it streamed (structure,
    nesting, the SOP class and instance the command named), with the values of the
    target's ``keep_tags``, and returns the status to answer.
    """

    def write(self, data: memoryview) -> Awaitable[None] | None: ...
    async def commit(self, dataset: ScannedDataset) -> int: ...
    def abort(self) -> None: ...


class StoreTarget(Protocol):
    """Where received objects go: a storage SCP's, or a C-GET SCU's (a
    :class:`~dicomtls.node.store_scp.DurableStoreHandler` fits)."""

    @property
    def keep_tags(self) -> Collection[int]:
        """The top-level attributes (tags) whose values ``commit`` wants to see."""
        ...

    def begin(
        self, association: Association, command: CommandSet, transfer_syntax: str
    ) -> StoreJob: ...


def peer_address(peer: str) -> str:
    """The IP address of a ``host:port`` or ``[v6]:port`` peer name, without the port."""
    return peer.rsplit(":", 1)[0].strip("[]")


@dataclass(frozen=True)
class RequestInfo:
    """An A-ASSOCIATE-RQ as the gatekeeper sees it: the claimed AE titles and the proven peer."""

    peer: str
    """``host:port``."""
    calling_ae: str
    called_ae: str
    session: SessionInfo | None
    """The secure link's parameters; None on plain TCP."""

    @property
    def certificate(self) -> CertificateInfo | None:
        """The peer's verified certificate, if it sent one."""
        return None if self.session is None else self.session.peer_certificate

    @property
    def address(self) -> str:
        """The peer's IP address, without the port."""
        return peer_address(self.peer)


@dataclass(frozen=True)
class Admission:
    """The gatekeeper's answer: reject, or accept with these rights."""

    refusal: str | None = None
    """Set: reject with "calling AE title not recognized"; the text says why, for the log."""
    services: frozenset[Service] | None = None
    """The services granted (presentation contexts for others are declined); None: all."""
    move_destinations: frozenset[str] | None = None
    """Where C-MOVE may send, among the configured destinations; None: any of them."""
    rule: str = ""
    """What granted or refused it (e.g. ``rule 'ct-scanner'``), for log lines."""

    @classmethod
    def reject(cls, why: str, rule: str = "") -> Admission:
        return cls(refusal=why, rule=rule)


Gatekeeper = Callable[[RequestInfo], Admission]


@dataclass(frozen=True)
class StoreRecord:
    """One C-STORE as the SCP answered it."""

    sop_class_uid: str
    sop_instance_uid: str
    status: int
    size: int
    """Data set bytes received."""
    seconds: float
    """From the C-STORE-RQ command to the response."""


@dataclass(frozen=True)
class QueryRecord:
    """One C-FIND as the SCP answered it."""

    sop_class_uid: str
    identifier: bytes
    """The query data set as received."""
    transfer_syntax: str
    matches: int
    status: int


@dataclass(frozen=True)
class RetrieveRecord:
    """One C-MOVE or C-GET: which files went where."""

    service: Service
    destination: str
    """The move destination's AE title; for C-GET the requestor's."""
    sent: tuple[Path, ...]
    failed: tuple[Path, ...]
    status: int


@dataclass(frozen=True)
class ServiceEvents:
    """Told after the fact; a slow or failing observer must not stall the protocol."""

    on_rejected: Callable[[RequestInfo, str], None] | None = None
    """An association was rejected: the request and the reason in words."""
    on_accepted: Callable[[Association, Admission], None] | None = None
    on_ended: Callable[[Association], None] | None = None
    """Released or aborted: ``association.end_reason`` says which."""
    on_stored: Callable[[Association, StoreRecord], None] | None = None
    on_queried: Callable[[Association, QueryRecord], None] | None = None
    on_retrieved: Callable[[Association, RetrieveRecord], None] | None = None
    on_refused: Callable[[Association, Service, str], None] | None = None
    """A request refused by the admission's limits (e.g. a C-MOVE destination not granted)."""


FindHandler = Callable[["Association", str, "Dataset"], Iterable["Dataset"]]
"""(association, SOP class, identifier) -> matching identifiers; may raise StatusError.
Called, and iterated, on a worker thread: it may block (a database), and must not touch
the event loop."""
RetrieveHandler = Callable[["Association", str, "Dataset"], Iterable[Path]]
"""(association, SOP class, identifier) -> the Part 10 files to send; may raise StatusError.
Called on a worker thread, like a FindHandler."""


@dataclass
class Services:
    """What an SCP offers; a service without a handler is answered as unsupported."""

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
