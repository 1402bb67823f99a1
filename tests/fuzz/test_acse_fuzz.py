"""Association negotiation: answer_request on generated, captured and damaged requests."""

from __future__ import annotations

from fuzz._oracles import IMPLICIT, VERIFICATION, check_acse, check_answer, policies_for
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dicomtls.ul import (
    AssociateAC,
    AssociateRQ,
    PresentationContextRQ,
    PresentationResult,
    RoleSelection,
    UserInformation,
    decode_pdu,
)
from dicomtls.ul.acse import AcceptorPolicy, answer_request
from tests.fuzz import seeds
from tests.fuzz.mutations import mutate, uids
from tests.ul.strategies import associate_rq

requests = associate_rq | st.sampled_from(seeds.REQUESTS).map(decode_pdu)


@st.composite
def policies(draw: st.DrawFn, rq: AssociateRQ) -> AcceptorPolicy:
    """A policy built from what ``rq`` offers plus strangers, so that every outcome occurs."""
    offered_abstract = [c.abstract_syntax for c in rq.presentation_contexts]
    offered_ts = [t for c in rq.presentation_contexts for t in c.transfer_syntaxes]
    abstract = st.sampled_from(offered_abstract) | uids
    syntax = st.sampled_from(offered_ts) | uids
    supported = draw(st.dictionaries(abstract, st.lists(syntax, max_size=3), max_size=4))
    return AcceptorPolicy(
        draw(st.sampled_from([rq.called_ae, "OTHER"])),
        supported,
        require_called_ae=draw(st.booleans()),
        calling_ae_allowed=draw(
            st.sampled_from([lambda _ae: True, lambda ae: ae != rq.calling_ae])
        ),
        accept_scp_role=draw(st.booleans()),
    )


@settings(max_examples=60, deadline=None)
@given(requests, st.data())
def test_answer_request_answers_every_context_once_and_only_with_offered_syntaxes(
    rq: AssociateRQ, data: st.DataObject
) -> None:
    check_answer(rq, data.draw(policies(rq)))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(seeds.REQUESTS).flatmap(mutate), st.integers(0, 0x3FF))
def test_damaged_captured_requests_are_answered_or_refused(data: bytes, selector: int) -> None:
    check_acse(data, selector)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(seeds.REQUESTS))
def test_real_requests_get_everything_they_offer_when_we_support_it(wire: bytes) -> None:
    rq = decode_pdu(wire)
    assert isinstance(rq, AssociateRQ)
    # storescu offers one SOP class on several contexts, each with other transfer syntaxes.
    everything: dict[str, list[str]] = {}
    for context in rq.presentation_contexts:
        everything.setdefault(context.abstract_syntax, []).extend(context.transfer_syntaxes)
    answer = check_answer(rq, AcceptorPolicy(rq.called_ae, everything))
    assert isinstance(answer, AssociateAC)
    assert all(c.result == PresentationResult.ACCEPTANCE for c in answer.presentation_contexts)


def _request(roles: tuple[RoleSelection, ...], class_uid: str = "1") -> AssociateRQ:
    return AssociateRQ(
        called_ae="SCP",
        calling_ae="SCU",
        presentation_contexts=(PresentationContextRQ(1, VERIFICATION, (IMPLICIT,)),),
        user_information=UserInformation(
            max_length=0, implementation_class_uid=class_uid, role_selections=roles
        ),
    )


def test_regression_repeated_role_selections_fit_in_the_accept() -> None:
    """Found while writing the negotiation oracle (its "the answer must encode" check fails
    on it): an RQ repeating one role selection until its user
    information item was nearly 64 KiB made our AC's item (with our longer implementation
    UID and version name) overflow its 16-bit length, so encoding our answer raised
    LocalProtocolError from inside the SCP. One answer per SOP class now."""
    rq = _request(tuple(RoleSelection(VERIFICATION, True, True) for _ in range(2620)))
    wire = rq.encode()
    assert len(wire) > 65000
    decoded = decode_pdu(wire)
    assert isinstance(decoded, AssociateRQ)
    answer = answer_request(decoded, AcceptorPolicy("SCP", {VERIFICATION: [IMPLICIT]}))
    assert isinstance(answer, AssociateAC)
    assert answer.user_information.role_selections == (RoleSelection(VERIFICATION, True, True),)
    assert decode_pdu(answer.encode()) == answer


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.builds(
            RoleSelection, st.sampled_from([VERIFICATION, "1.2.3"]), st.booleans(), st.booleans()
        ),
        max_size=6,
    )
)
@example([RoleSelection("1.2.3", True, True), RoleSelection(VERIFICATION, False, True)])
def test_roles_are_answered_for_accepted_classes_only_and_first_wins(
    roles: list[RoleSelection],
) -> None:
    rq = _request(tuple(roles))
    for policy in policies_for(rq, 0x200) + policies_for(rq, 0):
        answer = check_answer(rq, policy)
        if isinstance(answer, AssociateAC):
            first = next((r for r in roles if r.sop_class_uid == VERIFICATION), None)
            answered = answer.user_information.role_selections
            assert [r.sop_class_uid for r in answered] == ([VERIFICATION] if first else [])
            if first is not None:
                assert answered[0].scu_role == first.scu_role
                assert answered[0].scp_role == (first.scp_role and policy.accept_scp_role)
