"""The SCP's hooks for the application: who may associate, and what happened.

The protocol code in :mod:`dicomtls.net.scp` knows nothing of access rules,
audit trails or metrics; it asks a *gatekeeper* once per association request
and reports each finished operation through :class:`ServiceEvents`. The node
(``dicomtls.node``) plugs its access policy, audit trail and metrics in here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dicomtls.dimse.sop_classes import Service
from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.session import SessionInfo

if TYPE_CHECKING:
    from dicomtls.net.association import Association

__all__ = [
    "Admission",
    "Gatekeeper",
    "QueryRecord",
    "RequestInfo",
    "RetrieveRecord",
    "ServiceEvents",
    "StoreRecord",
    "peer_address",
]


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
