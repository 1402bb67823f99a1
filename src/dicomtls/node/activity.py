"""One INFO log line per association: who, over what, how it ended, what it moved, how long.

The node's log says nothing about an association that went well unless asked; at INFO
(``dicomtls serve``'s default) an operator sees each one end, in one line an ops
search can take apart::

    association from 127.0.0.1:40312 (calling 'CT1', called 'PACS', TLSv1.3
    TLS_AES_256_GCM_SHA384) released after 0.42 s: 3 stored (393,216 bytes), 0 refused,
    0 sent (0 bytes), 1 query

Fed by the SCP's service events (:class:`~dicomtls.net.hooks.ServiceEvents`), as the
audit and metrics reporter is: both are a :class:`ServiceObserver`, and :func:`chained`
lets both listen (and the reporter listen to handshakes before the caller does).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypeVar

from dicomtls.dimse.status import Status
from dicomtls.logs import get_logger
from dicomtls.net.hooks import ServiceEvents
from dicomtls.net.link import LinkEvents

if TYPE_CHECKING:
    from dicomtls.dimse.sop_classes import Service
    from dicomtls.net.association import Association
    from dicomtls.net.hooks import Admission, QueryRecord, RequestInfo, RetrieveRecord, StoreRecord

__all__ = ["ActivityLog", "ServiceObserver", "chained"]

log = get_logger("dicomtls.node")


@dataclass
class _Tally:
    started: float
    stored: int = 0
    stored_bytes: int = 0
    refused: int = 0
    sent: int = 0
    sent_bytes: int = 0
    queries: int = 0


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


class ServiceObserver:
    """Told of the SCP's service events: a subclass overrides the ones it cares about.

    Each method answers the :class:`ServiceEvents` field of its name with ``on_`` before it,
    so mypy holds an override to the event's signature, and :meth:`service_events` needs
    no list of its own.
    """

    def rejected(self, info: RequestInfo, why: str) -> None:
        """An association was rejected: the request and the reason in words."""

    def accepted(self, association: Association, admission: Admission) -> None:
        """An association was accepted, with what the admission grants."""

    def ended(self, association: Association) -> None:
        """Released or aborted: ``association.end_reason`` says which."""

    def stored(self, association: Association, record: StoreRecord) -> None:
        """A C-STORE was answered."""

    def queried(self, association: Association, record: QueryRecord) -> None:
        """A C-FIND was answered."""

    def retrieved(self, association: Association, record: RetrieveRecord) -> None:
        """A C-MOVE or C-GET finished."""

    def refused(self, association: Association, service: Service, why: str) -> None:
        """A request refused by the admission's limits."""

    def service_events(self) -> ServiceEvents:
        """These methods, for the SCP to call."""
        return ServiceEvents(
            **{f.name: getattr(self, f.name.removeprefix("on_")) for f in fields(ServiceEvents)}
        )


class ActivityLog(ServiceObserver):
    """Counts what each association does and logs it, in one INFO line, when it ends."""

    def __init__(self) -> None:
        self._tallies: dict[int, _Tally] = {}

    def _tally(self, association: Association) -> _Tally:
        tally = self._tallies.get(id(association))
        if tally is None:
            tally = self._tallies[id(association)] = _Tally(time.monotonic())
        return tally

    def accepted(self, association: Association, admission: Admission) -> None:
        self._tallies[id(association)] = _Tally(time.monotonic())

    def stored(self, association: Association, record: StoreRecord) -> None:
        tally = self._tally(association)
        if record.status == Status.SUCCESS:
            tally.stored += 1
            tally.stored_bytes += record.size
        else:
            tally.refused += 1

    def queried(self, association: Association, record: QueryRecord) -> None:
        self._tally(association).queries += 1

    def retrieved(self, association: Association, record: RetrieveRecord) -> None:
        tally = self._tally(association)
        tally.sent += len(record.sent)
        for path in record.sent:
            try:
                tally.sent_bytes += path.stat().st_size
            except OSError:
                continue  # removed since: the count stays right, the bytes a little short

    def ended(self, association: Association) -> None:
        tally = self._tallies.pop(id(association), None) or _Tally(time.monotonic())
        session = association.link.session
        link = (
            "plain TCP"
            if session is None
            else f"{session.protocol} {session.cipher_iana or session.cipher_openssl}"
        )
        log.info(
            "association from %s (calling %r, called %r, %s) %s after %.2f s: "
            "%d stored (%s bytes), %d refused, %d sent (%s bytes), %s",
            association.peer,
            association.calling_ae.strip(),
            association.called_ae.strip(),
            link,
            association.end_reason or "connection lost",
            time.monotonic() - tally.started,
            tally.stored,
            f"{tally.stored_bytes:,}",
            tally.refused,
            tally.sent,
            f"{tally.sent_bytes:,}",
            _plural(tally.queries, "query", "queries"),
        )


_Events = TypeVar("_Events", ServiceEvents, LinkEvents)


def chained(first: _Events, *more: _Events) -> _Events:
    """One set of callbacks (service or link events) telling each observer in turn."""
    observers = (first, *more)

    def each(name: str) -> Callable[..., None] | None:
        calls = [c for c in (getattr(o, name) for o in observers) if c is not None]
        if not calls:
            return None

        def tell(*args: Any) -> None:
            for call in calls:
                call(*args)

        return tell

    return type(first)(**{f.name: each(f.name) for f in fields(first)})
