"""The one gate every DIMSE message passes before anything acts on it.

Three things must agree before a request is served. Negotiation (PS3.8 9.3.2) fixed which
presentation contexts this association has and, with role selection, who may invoke
what on each. The command must fit its context: its SOP class is the context's abstract
syntax (PS3.7 9.1.1, 9.3), and its operation is one that SOP class's service defines.
And the access policy must grant that service to this peer. Negotiation already declines
the contexts of services a policy withholds; the gate checks again for every message,
because a peer chooses the context ID of each message it sends.

:class:`Gate` is pure logic, checked by :meth:`dicomtls.net.association.Association.
receive_message` the moment a command set is whole, before a data set is buffered or a
handler sees it. Its verdict for a message that breaks the protocol is an A-ABORT; for a
well-formed request it will not serve, a PS3.7 failure status to answer with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from dicomtls.dimse.command import CommandField, CommandSet, Tag
from dicomtls.dimse.pdv import CommandReceived
from dicomtls.dimse.sop_classes import Service, service_of
from dicomtls.dimse.status import Status
from dicomtls.dimse.uids import uid_problem
from dicomtls.ul.acse import AcceptedContext, Negotiated

__all__ = ["Gate", "Refusal"]

#: The service each request belongs to (C-CANCEL belongs to the request it cancels).
_SERVICE_OF_REQUEST: Mapping[CommandField, Service] = MappingProxyType(
    {
        CommandField.C_ECHO_RQ: Service.ECHO,
        CommandField.C_STORE_RQ: Service.STORE,
        CommandField.C_FIND_RQ: Service.FIND,
        CommandField.C_MOVE_RQ: Service.MOVE,
        CommandField.C_GET_RQ: Service.GET,
    }
)
#: Requests that carry a data set (PS3.7 9.3: the data set or identifier is mandatory),
#: and those that never do. A message that disagrees is not a DIMSE message.
_WITH_DATASET = frozenset(
    {CommandField.C_STORE_RQ, CommandField.C_FIND_RQ, CommandField.C_MOVE_RQ, CommandField.C_GET_RQ}
)
_WITHOUT_DATASET = frozenset({CommandField.C_ECHO_RQ, CommandField.C_CANCEL_RQ})


def _named(field: CommandField) -> str:
    return field.name.removesuffix("_RQ").replace("_", "-")


@dataclass(frozen=True)
class Refusal:
    """Why a message is not served.

    ``status`` None: the message breaks the protocol and the association is aborted.
    Otherwise the request is answered with ``status`` and nothing acts on it. Either way
    a peer tried something negotiation did not allow: the SCP reports it as a security
    event (the access policy's name for the association is in ``reason``).
    """

    reason: str
    status: int | None = None
    service: Service | None = None
    """The service the message asked for (None: not a request)."""


@dataclass(frozen=True)
class Gate:
    """The rules for one association, from our side of it.

    ``acceptor`` True: we are the association acceptor (an SCP), and a request needs the
    requestor's SCU role on its context. False: we requested the association and serve
    only what we took the SCP role for (C-STORE sub-operations of our C-GET).
    ``granted`` is what the access policy allows the peer (None: every service).
    """

    negotiated: Negotiated
    acceptor: bool = True
    granted: frozenset[Service] | None = None
    granted_by: str = "the access policy"

    def check(self, received: CommandReceived, field: CommandField) -> Refusal | None:
        """None if the message may proceed, else how to refuse it."""
        service = _SERVICE_OF_REQUEST.get(field)
        context = self.negotiated.by_id(received.context_id)
        if context is None:
            return Refusal(
                f"{_named(field)} on presentation context {received.context_id}, which this "
                f"association ({self.granted_by}) did not accept",
                service=service,
            )
        if field.is_response:
            return None  # matched to its request by whoever waits for it
        if field in _WITH_DATASET and not received.expects_dataset:
            return Refusal(f"{_named(field)} without the data set it must carry", service=service)
        if field in _WITHOUT_DATASET and received.expects_dataset:
            return Refusal(
                f"{_named(field)} announces a data set, which it cannot carry", service=service
            )
        if service is None:
            return None  # C-CANCEL: names a request of ours to stop; nothing is served
        return self._request(received.command, field, service, context)

    def _request(
        self, command: CommandSet, field: CommandField, service: Service, context: AcceptedContext
    ) -> Refusal | None:
        """A request on an accepted context: it must fit the context, the peer must be
        allowed to ask it there, and a C-STORE's UIDs must be UIDs."""
        sop_class = str(command[Tag.AffectedSOPClassUID])
        if (misfit := _misfit(field, service, context, sop_class)) is not None:
            return misfit
        if (forbidden := self._forbidden(field, service, context)) is not None:
            return forbidden
        if field is CommandField.C_STORE_RQ:
            return _store_uids(command, sop_class)
        return None

    def _forbidden(
        self, field: CommandField, service: Service, context: AcceptedContext
    ) -> Refusal | None:
        """Whether the peer may invoke ``service`` on ``context``: role selection, then the
        access policy's grant (we accepted), or C-STORE sub-operations only (we requested)."""
        where = f"presentation context {context.id}"
        may_invoke = context.scu_role if self.acceptor else context.scp_role
        if not may_invoke:
            side = "SCU" if self.acceptor else "SCP"
            return Refusal(
                f"{_named(field)} on {where}, where role selection did not give the peer's "
                f"side the {side} role",
                Status.NOT_AUTHORIZED,
                service,
            )
        if self.acceptor and self.granted is not None and service not in self.granted:
            return Refusal(
                f"{_named(field)}: {self.granted_by} does not grant {service.value}",
                Status.NOT_AUTHORIZED,
                service,
            )
        if not self.acceptor and service is not Service.STORE:
            return Refusal(
                f"{_named(field)}: we requested this association, and serve only C-STORE "
                "sub-operations on it",
                Status.UNRECOGNIZED_OPERATION,
                service,
            )
        return None


def _misfit(
    field: CommandField, service: Service, context: AcceptedContext, sop_class: str
) -> Refusal | None:
    """Whether the request does not fit its context: another SOP class (PS3.7 9.1.1), or an
    operation of another service than the context's SOP class belongs to."""
    where = f"presentation context {context.id}"
    if sop_class != context.abstract_syntax:
        return Refusal(
            f"{_named(field)} for SOP class {sop_class!r} on {where}, which was negotiated "
            f"for {context.abstract_syntax}",
            Status.SOP_CLASS_NOT_SUPPORTED,
            service,
        )
    negotiated_for = service_of(context.abstract_syntax)
    if negotiated_for is not None and negotiated_for is not service:
        return Refusal(
            f"{_named(field)} on {where}, negotiated for the {negotiated_for.value} service "
            f"({context.abstract_syntax})",
            Status.UNRECOGNIZED_OPERATION,
            service,
        )
    return None


def _store_uids(command: CommandSet, sop_class: str) -> Refusal | None:
    """A C-STORE's UIDs become a file name and an index key: only UIDs by PS3.5 9.1 may.

    Refused here, before a byte of the data set is kept, for every store target at once.
    PS3.7 9.1.1.1.9 lists the C-STORE status for it: 0117H Invalid SOP Instance, "the SOP
    Instance UID specified implied a violation of the UID construction rules" (pynetdicom
    lists it among C-STORE failures, DCMTK names it STATUS_N_InvalidSOPInstance). A SOP
    class UID that is no UID names no SOP class we support: 0122H. Filtering a UID instead
    of checking it has cost DCMTK's storescp CVEs (CVE-2022-2119, path traversal;
    CVE-2026-5663, shell metacharacters in the file name it makes from the UID).
    """
    for what, uid, status in (
        ("SOP class", sop_class, Status.SOP_CLASS_NOT_SUPPORTED),
        ("SOP instance", str(command[Tag.AffectedSOPInstanceUID]), Status.INVALID_OBJECT_INSTANCE),
    ):
        problem = uid_problem(uid)
        if problem is not None:
            return Refusal(
                f"C-STORE of {what} UID {uid!r}, which is not a UID: {problem}",
                status,
                Service.STORE,
            )
    return None
