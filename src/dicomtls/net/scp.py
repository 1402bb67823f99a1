"""The SCP side: accept associations, then serve each one's requests.

What the node stores and finds is the application's business (``node/``); this
module only speaks the protocol. Per association request it applies the limits
(associations in total and per peer), asks the gatekeeper what the peer may do,
negotiates within that, and hands the association, with its gate
(:mod:`dicomtls.net.gate`), to a :class:`~dicomtls.net.dispatcher.Dispatcher`
that answers C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET and C-CANCEL through the
handlers in :class:`~dicomtls.net.hooks.Services`. Each association runs in its
own task, so one slow or hostile peer holds up nobody else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dicomtls.dimse import sop_classes
from dicomtls.dimse.sop_classes import (
    UNCOMPRESSED,
    VERIFICATION,
    Service,
    service_of,
)
from dicomtls.dimse.transfer_syntax import STORAGE_TRANSFER_SYNTAXES
from dicomtls.logs import get_logger
from dicomtls.net.association import Association
from dicomtls.net.channel import Channel
from dicomtls.net.dispatcher import Dispatcher, notify
from dicomtls.net.gate import Gate
from dicomtls.net.hooks import (
    Admission,
    FindHandler,
    Gatekeeper,
    RequestInfo,
    RetrieveHandler,
    Services,
    peer_address,
)
from dicomtls.net.link import ClosedOnExit, LinkEvents, ProxyProtocol, SecureLink, TLSSource, serve
from dicomtls.net.pending import HandshakeLimits, address_key
from dicomtls.ul.acse import AcceptorPolicy, Negotiated, answer_request, rejection
from dicomtls.ul.codes import (
    RejectReasonPresentation,
    RejectReasonServiceUser,
    RejectResult,
    RejectSource,
)
from dicomtls.ul.connection import Aborted, AssociationRequested, Role, ULEvent, UpperLayer
from dicomtls.ul.pdu import AssociateAC, AssociateRJ, AssociateRQ

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

log = get_logger("dicomtls.net")


@dataclass
class Limits:
    """How much one server takes on: the rest get A-ASSOCIATE-RJ (transient, local limit)."""

    max_associations: int = 100
    max_per_peer: int = 20
    """Per peer IP address (per /64 for IPv6, as the handshake bounds count): one
    misbehaving host cannot take every slot."""
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
class DicomServer(ClosedOnExit):
    """A running SCP; ``close`` stops accepting and lets running associations finish."""

    _server: Any
    port: int
    limits: Limits
    active: dict[str, int] = field(default_factory=dict)
    """Associations in progress, per peer address."""

    async def close(self) -> None:
        await self._server.close(grace=self.limits.shutdown_grace)


async def serve_dicom(
    host: str,
    port: int,
    tls: TLSSource | None,
    policy: AcceptorPolicy | str,
    services: Services | None = None,
    *,
    limits: Limits | None = None,
    events: LinkEvents | None = None,
    proxy: ProxyProtocol | None = None,
) -> DicomServer:
    """Accept associations on ``host:port`` and serve them with ``services``.

    ``policy`` says what is negotiated; an AE title alone means :func:`storage_policy`
    for that title (Verification and every storage SOP class).
    """
    if isinstance(policy, str):
        policy = storage_policy(policy)
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
        # An IPv6 host picks any address of its /64 (through a proxy, the one it used is
        # named): counted per address, one host could take every slot. The key is the one
        # the pending-handshake bounds count by.
        address = address_key(peer_address(link.peer))
        active[address] = active.get(address, 0) + 1
        try:
            refusal = _over_limit(active, address, limits)
            with contextlib.suppress(ConnectionError):
                await _serve_association(link, policy_for, services, limits, refusal)
        finally:
            active[address] -= 1
            if not active[address]:
                del active[address]

    server = await serve(
        handler, host, port, tls, events=events, handshakes=limits.handshakes(), proxy=proxy
    )
    return DicomServer(server, server.port, limits, active)


def storage_policy(
    ae_title: str,
    *,
    also: Iterable[str] = (),
    max_pdu_length: int = 4 << 20,
    transfer_syntaxes: Sequence[str] = STORAGE_TRANSFER_SYNTAXES,
    accept_any_called_ae: bool = False,
    called_ae_hint: str = "",
) -> AcceptorPolicy:
    """An acceptor policy for a storage SCP: every storage SOP class in ``transfer_syntaxes``
    (most preferred first: data sets are stored as they arrive, so the default never makes
    an SCU compress lossily for us), Verification and the SOP classes in ``also``
    uncompressed. ``accept_any_called_ae`` answers requests whatever AE title they call
    (as DCMTK's storescp does); by default only ``ae_title``, with ``called_ae_hint`` in
    the rejection's log line."""
    storage = sop_classes.STORAGE_SOP_CLASSES  # read from pydicom's dictionary on first use
    supported: dict[str, Sequence[str]] = {sop: tuple(transfer_syntaxes) for sop in storage}
    supported.update({sop: UNCOMPRESSED for sop in (VERIFICATION, *also)})
    return AcceptorPolicy(
        ae_title,
        supported,
        max_pdu_length=max_pdu_length,
        require_called_ae=not accept_any_called_ae,
        called_ae_hint=called_ae_hint,
    )


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
    channel = Channel(link, ul, limits.artim_timeout, limits.idle_timeout)
    event = await channel.next_event()
    if not isinstance(event, AssociationRequested):
        await _no_request(link, event)
        return
    request = event.request
    info = RequestInfo(
        link.peer, request.calling_ae.strip(), request.called_ae.strip(), link.session
    )
    admission = Admission() if refusal is not None else _admit(services.gatekeeper, info)
    answer = _answer(request, policy_for(admission.services), refusal, admission)
    if isinstance(answer, AssociateRJ):
        why, explained = _why_rejected(answer, refusal, admission, request, policy)
        log.warning(
            "association from %s (calling %r, called %r) rejected: %s",
            link.peer,
            info.calling_ae,
            info.called_ae,
            explained,
        )
        notify(services.events.on_rejected, info, why)
        ul.reject(answer)
        channel.flush()
        await channel.next_event()  # the peer closes, or ARTIM ends it
        return
    ul.accept(answer)
    channel.flush()
    negotiated = Negotiated.from_exchange(request, answer, we_requested=False)
    gate = Gate(negotiated, True, admission.services, admission.rule or "the access policy")
    association = Association(channel, negotiated, info.calling_ae, policy.ae_title, gate)
    _log_declined(info, request, answer, admission)
    notify(services.events.on_accepted, association, admission)
    try:
        await Dispatcher(association, services, admission).run()
    finally:
        association.end_reason = association.end_reason or "connection lost"
        notify(services.events.on_ended, association)
        await association.close_link()


async def _no_request(link: SecureLink, event: ULEvent) -> None:
    """The connection ended before an A-ASSOCIATE-RQ; an abort (the peer's, or ours for a
    wrong protocol or ARTIM) is said in one log line."""
    if isinstance(event, Aborted):
        log.warning("association from %s: %s", link.peer, event.message)
        if not event.by_peer:
            await link.linger_close()  # let our A-ABORT reach the peer


def _why_rejected(
    answer: AssociateRJ,
    refusal: str | None,
    admission: Admission,
    request: AssociateRQ,
    policy: AcceptorPolicy,
) -> tuple[str, str]:
    """Why the association was rejected: in brief for the events, and explained for the log."""
    if admission.refusal is not None:
        why = f"calling AE title not recognized: {admission.refusal}"
        return why, why
    why = refusal or answer.reason.name
    if (negotiation := rejection(request, policy)) is not None:
        return why, f"{why}: {negotiation[1]}"
    return why, why


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
            info.peer,
            info.calling_ae,
            admission.rule or "the access policy",
            ", ".join(withheld),
        )


def _busy() -> AssociateRJ:
    return AssociateRJ(
        RejectResult.TRANSIENT,
        RejectSource.SERVICE_PROVIDER_PRESENTATION,
        RejectReasonPresentation.LOCAL_LIMIT_EXCEEDED,
    )
