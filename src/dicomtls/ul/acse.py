"""Association negotiation (PS3.7 Annex D, PS3.8 9.3.2-9.3.3): what to propose, what to accept.

Requestor side: :func:`build_request` turns "these SOP classes with these
transfer syntaxes" into an A-ASSOCIATE-RQ with odd context IDs, and
:class:`Negotiated` reads the A-ASSOCIATE-AC back into "context 3 carries CT
Image Storage in Explicit VR Little Endian". Acceptor side: :func:`answer_request`
applies an :class:`AcceptorPolicy` and returns the AC, or the RJ with the
standard's reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from dicomtls.ul._wire import encode_ae
from dicomtls.ul.codes import (
    PresentationResult,
    RejectReasonServiceUser,
    RejectResult,
    RejectSource,
)
from dicomtls.ul.errors import LocalProtocolError
from dicomtls.ul.items import (
    AsyncOpsWindow,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    UserInformation,
)
from dicomtls.ul.pdu import DICOM_APPLICATION_CONTEXT, AssociateAC, AssociateRJ, AssociateRQ

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "AcceptedContext",
    "AcceptorPolicy",
    "Negotiated",
    "Proposal",
    "acceptance_problem",
    "answer_request",
    "build_request",
    "rejection",
]

#: Our implementation class UID (under the pydicom-registered root, as many toolkits do).
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1432.1"
IMPLEMENTATION_VERSION_NAME = "DICOMTLS_010"
DEFAULT_MAX_PDU = 4 << 20  # 4 MiB: large PDUs mean few headers and few Python calls per object
#: Outstanding operations an SCP of ours lets a requestor invoke (PS3.7 D.3.3.3): enough to
#: keep a C-STORE's fsync off the next one's path, few enough to bound what one peer holds.
DEFAULT_MAX_OPERATIONS = 16
#: The smallest Maximum Length (PS3.8 D.1) we serve a requestor with. A PDV needs 6 bytes of
#: header; a peer asking for PDUs of a few bytes would make every object cost a PDU per byte.
MIN_PEER_PDU_LENGTH = 1024


@dataclass(frozen=True)
class Proposal:
    """One abstract syntax we want, with the transfer syntaxes we can send it in."""

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]
    scu_role: bool | None = None
    scp_role: bool | None = None
    """Role selection (e.g. scp_role=True for C-GET's C-STORE sub-operations)."""


@dataclass(frozen=True)
class AcceptedContext:
    id: int
    abstract_syntax: str
    transfer_syntax: str
    scu_role: bool = True
    scp_role: bool = True


def build_request(
    calling_ae: str,
    called_ae: str,
    proposals: Sequence[Proposal],
    *,
    max_pdu_length: int = DEFAULT_MAX_PDU,
    max_operations: int = 1,
) -> AssociateRQ:
    """An A-ASSOCIATE-RQ offering each proposal on its own odd context ID (1, 3, 5, ...).

    ``max_operations`` above 1 (0: unlimited) proposes the asynchronous operations window
    (PS3.7 D.3.3.3): that many of our requests may be outstanding. 1 leaves the item out,
    the synchronous mode every implementation supports.
    """
    if not proposals:
        raise LocalProtocolError("an association needs at least one presentation context")
    if len(proposals) > 128:
        raise LocalProtocolError(f"{len(proposals)} presentation contexts; at most 128 fit")
    contexts = tuple(
        PresentationContextRQ(2 * i + 1, p.abstract_syntax, p.transfer_syntaxes)
        for i, p in enumerate(proposals)
    )
    roles = tuple(
        RoleSelection(p.abstract_syntax, bool(p.scu_role), bool(p.scp_role))
        for p in proposals
        if p.scu_role is not None or p.scp_role is not None
    )
    user = UserInformation(
        max_length=max_pdu_length,
        implementation_class_uid=IMPLEMENTATION_CLASS_UID,
        implementation_version_name=IMPLEMENTATION_VERSION_NAME,
        async_ops_window=None if max_operations == 1 else AsyncOpsWindow(max_operations, 1),
        role_selections=_unique_roles(roles),
    )
    return AssociateRQ(
        called_ae=called_ae,
        calling_ae=calling_ae,
        presentation_contexts=contexts,
        user_information=user,
    )


def _unique_roles(roles: tuple[RoleSelection, ...]) -> tuple[RoleSelection, ...]:
    seen: dict[str, RoleSelection] = {}
    for role in roles:
        seen.setdefault(role.sop_class_uid, role)
    return tuple(seen.values())


@dataclass(frozen=True)
class Negotiated:
    """The outcome of an accepted association, from either side."""

    contexts: tuple[AcceptedContext, ...]
    peer_max_pdu_length: int
    peer_implementation_class_uid: str
    peer_implementation_version_name: str | None
    max_operations: int = 1
    """Requests the requestor may have outstanding (0: unlimited; 1: synchronous)."""

    @classmethod
    def from_exchange(cls, rq: AssociateRQ, ac: AssociateAC, *, we_requested: bool) -> Negotiated:
        peer = ac.user_information if we_requested else rq.user_information
        proposed, answered = (
            rq.user_information.async_ops_window,
            ac.user_information.async_ops_window,
        )
        return cls(
            contexts=_accepted_contexts(rq, ac),
            peer_max_pdu_length=peer.max_length,
            peer_implementation_class_uid=peer.implementation_class_uid,
            peer_implementation_version_name=peer.implementation_version_name,
            max_operations=_invoked_window(proposed, answered),
        )

    def context_for(
        self, abstract_syntax: str, transfer_syntax: str | None = None
    ) -> AcceptedContext | None:
        """An accepted context for ``abstract_syntax`` (in ``transfer_syntax``, if given)."""
        for context in self.contexts:
            if context.abstract_syntax == abstract_syntax and (
                transfer_syntax is None or context.transfer_syntax == transfer_syntax
            ):
                return context
        return None

    def by_id(self, context_id: int) -> AcceptedContext | None:
        for context in self.contexts:
            if context.id == context_id:
                return context
        return None


def _invoked_window(proposed: AsyncOpsWindow | None, answered: AsyncOpsWindow | None) -> int:
    """Requests the requestor may have outstanding: the acceptor's "invoked" (PS3.7
    D.3.3.3), but never more than the requestor proposed; either item absent, one. 0 means
    unlimited, so an acceptor answering 0 or 65535 to a proposal of 16 gets 16, not a
    requestor that sends everything at once."""
    if proposed is None or answered is None:
        return 1
    if 0 in (proposed.invoked, answered.invoked):
        return max(proposed.invoked, answered.invoked)
    return min(proposed.invoked, answered.invoked)


def _accepted_answers(
    rq: AssociateRQ, ac: AssociateAC
) -> Iterator[tuple[PresentationContextRQ, PresentationContextAC]]:
    """Each context the AC accepted, with what we proposed for it; an answer to an ID we
    never proposed accepts nothing, whatever it says."""
    offered = {c.id: c for c in rq.presentation_contexts}
    for answer in ac.presentation_contexts:
        proposal = offered.get(answer.id)
        if proposal is not None and answer.result == PresentationResult.ACCEPTANCE:
            yield proposal, answer


def _accepted_contexts(rq: AssociateRQ, ac: AssociateAC) -> tuple[AcceptedContext, ...]:
    """The contexts the AC accepted, each with the roles agreed for its SOP class.

    Roles are what the requestor proposed and the acceptor granted (PS3.7 D.3.3.4). Either
    item missing: the defaults, requestor SCU only; an acceptor cannot grant what was not
    proposed (a hostile SCP answering "SCP role: yes" unasked would otherwise push C-STOREs
    at a requestor that only sends that class).
    """
    proposed = {r.sop_class_uid: r for r in rq.user_information.role_selections}
    granted = {r.sop_class_uid: r for r in ac.user_information.role_selections}
    accepted = []
    for proposal, answer in _accepted_answers(rq, ac):
        sop_class = proposal.abstract_syntax
        asked, given = proposed.get(sop_class), granted.get(sop_class)
        if asked is None or given is None:
            scu_role, scp_role = True, False
        else:
            scu_role, scp_role = (
                asked.scu_role and given.scu_role,
                asked.scp_role and given.scp_role,
            )
        accepted.append(
            AcceptedContext(answer.id, sop_class, answer.transfer_syntax, scu_role, scp_role)
        )
    return tuple(accepted)


def acceptance_problem(rq: AssociateRQ, ac: AssociateAC) -> str | None:
    """What makes an acceptor's answer to our ``rq`` one we cannot work with (None: nothing).

    A Maximum Length below :data:`MIN_PEER_PDU_LENGTH` (0 is no limit) would have us cut every
    object into PDUs of a few bytes, as a requestor asking it of our SCP would; a context
    accepted in a transfer syntax we did not propose for it breaks PS3.8 9.3.3.2 (the
    acceptor picks one of those proposed), and would have us encode in a syntax nobody chose.
    """
    max_length = ac.user_information.max_length
    if 0 < max_length < MIN_PEER_PDU_LENGTH:
        return (
            f"its maximum PDU length {max_length} is below the {MIN_PEER_PDU_LENGTH} bytes "
            "we send in (0: no limit)"
        )
    for proposal, answer in _accepted_answers(rq, ac):
        if answer.transfer_syntax not in proposal.transfer_syntaxes:
            return (
                f"it accepted presentation context {answer.id} ({proposal.abstract_syntax}) in "
                f"transfer syntax {answer.transfer_syntax!r}, which we did not propose for it"
            )
    return None


@dataclass(frozen=True)
class AcceptorPolicy:
    """What an SCP accepts: abstract syntax -> transfer syntaxes in our order of preference."""

    ae_title: str
    supported: Mapping[str, Sequence[str]]
    max_pdu_length: int = DEFAULT_MAX_PDU
    require_called_ae: bool = True
    """Reject requests addressed to another AE title (the standard's reason 7)."""
    called_ae_hint: str = ""
    """What would let such a request in, said where we reject it (e.g. the node's option)."""
    calling_ae_allowed: Callable[[str], bool] = field(default=lambda _ae: True)
    """Reject unknown calling AE titles (reason 3); access policy plugs in here."""
    accept_scp_role: bool = True
    """Whether we accept acting as SCU when a requestor proposes SCP role (C-GET)."""
    max_operations: int = DEFAULT_MAX_OPERATIONS
    """Outstanding requests a requestor may have, if it asks for more than one (1: none)."""
    min_peer_pdu_length: int = MIN_PEER_PDU_LENGTH
    """A requestor whose Maximum Length is below this (and not 0, unlimited) is rejected."""

    def __post_init__(self) -> None:
        """A title no peer can call is refused here, not by the first association's answer."""
        encode_ae(self.ae_title, "our AE title")


def rejection(
    rq: AssociateRQ, policy: AcceptorPolicy
) -> tuple[RejectReasonServiceUser, str] | None:
    """Why ``policy`` rejects the request outright, in the standard's terms and in words;
    None if it may be answered context by context."""
    if rq.application_context != DICOM_APPLICATION_CONTEXT:
        return (
            RejectReasonServiceUser.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED,
            f"application context {rq.application_context!r} is not DICOM's",
        )
    if policy.require_called_ae and rq.called_ae.strip() != policy.ae_title:
        hint = f"; {policy.called_ae_hint}" if policy.called_ae_hint else ""
        return (
            RejectReasonServiceUser.CALLED_AE_NOT_RECOGNIZED,
            f"called AE title {rq.called_ae.strip()!r} is not ours ({policy.ae_title!r}){hint}",
        )
    if not policy.calling_ae_allowed(rq.calling_ae.strip()):
        return (
            RejectReasonServiceUser.CALLING_AE_NOT_RECOGNIZED,
            f"calling AE title {rq.calling_ae.strip()!r} is not allowed",
        )
    peer_max = rq.user_information.max_length
    if 0 < peer_max < policy.min_peer_pdu_length:
        return (
            RejectReasonServiceUser.NO_REASON_GIVEN,
            f"maximum PDU length {peer_max} is too small to serve "
            f"(at least {policy.min_peer_pdu_length}, or 0 for no limit)",
        )
    return None


def answer_request(rq: AssociateRQ, policy: AcceptorPolicy) -> AssociateAC | AssociateRJ:
    """Apply ``policy`` to a request: an AC with per-context results, or an RJ with its reason."""
    refused = rejection(rq, policy)
    if refused is not None:
        return AssociateRJ(RejectResult.PERMANENT, RejectSource.SERVICE_USER, refused[0])
    answers = tuple(_answer_context(c, policy) for c in rq.presentation_contexts)
    accepted_classes = {
        c.abstract_syntax
        for c, a in zip(rq.presentation_contexts, answers, strict=True)
        if a.result == PresentationResult.ACCEPTANCE
    }
    # One answer per accepted SOP class (PS3.7 D.3.3.4): a request that repeats a role
    # selection thousands of times would otherwise overflow the AC's 16-bit item length.
    roles = _unique_roles(
        tuple(
            RoleSelection(r.sop_class_uid, r.scu_role, r.scp_role and policy.accept_scp_role)
            for r in rq.user_information.role_selections
            if r.sop_class_uid in accepted_classes
        )
    )
    user = UserInformation(
        max_length=policy.max_pdu_length,
        implementation_class_uid=IMPLEMENTATION_CLASS_UID,
        implementation_version_name=IMPLEMENTATION_VERSION_NAME,
        async_ops_window=_window(rq.user_information.async_ops_window, policy.max_operations),
        role_selections=roles,
    )
    return AssociateAC(
        called_ae=rq.called_ae,
        calling_ae=rq.calling_ae,
        presentation_contexts=answers,
        user_information=user,
    )


def _window(proposed: AsyncOpsWindow | None, ours: int) -> AsyncOpsWindow | None:
    """Our answer to an asynchronous operations window (PS3.7 D.3.3.3): at most what the
    requestor offered to invoke (0 = unlimited) and at most ``ours``; we perform its
    operations but invoke none of our own asynchronously (C-GET sub-operations: one)."""
    if proposed is None:
        return None  # not negotiated: it must not appear in the answer either
    invoked = ours if proposed.invoked == 0 else min(proposed.invoked, ours)
    return AsyncOpsWindow(max(invoked, 1), 1)


def _answer_context(offer: PresentationContextRQ, policy: AcceptorPolicy) -> PresentationContextAC:
    ours = policy.supported.get(offer.abstract_syntax)
    if ours is None:
        return PresentationContextAC(offer.id, PresentationResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, "")
    for syntax in ours:
        if syntax in offer.transfer_syntaxes:
            return PresentationContextAC(offer.id, PresentationResult.ACCEPTANCE, syntax)
    return PresentationContextAC(offer.id, PresentationResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, "")
