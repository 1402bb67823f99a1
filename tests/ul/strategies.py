"""Hypothesis strategies that build valid upper-layer PDUs, for round-trip and fuzz tests."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from dicomtls.ul import (
    PDU,
    PDV,
    Abort,
    AbortReason,
    AbortSource,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    AsyncOpsWindow,
    CommonExtendedNegotiation,
    ExtendedNegotiation,
    PDataTF,
    PresentationContextAC,
    PresentationContextRQ,
    PresentationResult,
    RawSubItem,
    RejectReasonACSE,
    RejectReasonPresentation,
    RejectReasonServiceUser,
    RejectResult,
    RejectSource,
    ReleaseRP,
    ReleaseRQ,
    RoleSelection,
    UserIdentityAC,
    UserIdentityRQ,
    UserIdentityType,
    UserInformation,
)

uids = st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,8}){0,7}", fullmatch=True).filter(
    lambda u: len(u) <= 64
)
_printable = "".join(c for c in string.printable if " " <= c <= "~" and c != "\\")
ae_titles = (
    st.text(alphabet=_printable, min_size=1, max_size=16).map(lambda s: s.strip(" ")).filter(bool)
)
version_names = (
    st.text(alphabet=_printable, min_size=1, max_size=16).map(lambda s: s.rstrip(" ")).filter(bool)
)
context_ids = st.integers(0, 127).map(lambda i: 2 * i + 1)
small_bytes = st.binary(max_size=40)

role_selections = st.builds(RoleSelection, uids, st.booleans(), st.booleans())
extended = st.builds(ExtendedNegotiation, uids, small_bytes)
common_extended = st.builds(
    CommonExtendedNegotiation, uids, uids, st.lists(uids, max_size=3).map(tuple)
)
identity_rq = st.one_of(
    st.builds(
        UserIdentityRQ,
        st.just(UserIdentityType.USERNAME_AND_PASSCODE),
        st.booleans(),
        small_bytes,
        small_bytes,
    ),
    st.builds(
        UserIdentityRQ,
        st.sampled_from(
            [t for t in UserIdentityType if t != UserIdentityType.USERNAME_AND_PASSCODE]
        ),
        st.booleans(),
        small_bytes,
    ),
)
identity_ac = st.builds(UserIdentityAC, small_bytes)
raw_sub_items = st.builds(RawSubItem, st.integers(0x5A, 0xFF), small_bytes)


def user_information(
    identity: st.SearchStrategy[UserIdentityRQ | UserIdentityAC],
) -> st.SearchStrategy[UserInformation]:
    return st.builds(
        UserInformation,
        max_length=st.integers(0, 2**32 - 1),
        implementation_class_uid=uids,
        implementation_version_name=st.none() | version_names,
        async_ops_window=st.none()
        | st.builds(AsyncOpsWindow, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
        role_selections=st.lists(role_selections, max_size=3).map(tuple),
        extended_negotiations=st.lists(extended, max_size=2).map(tuple),
        common_extended_negotiations=st.lists(common_extended, max_size=2).map(tuple),
        user_identity=st.none() | identity,
        unknown=st.lists(raw_sub_items, max_size=2).map(tuple),
    )


contexts_rq = st.lists(
    st.builds(
        PresentationContextRQ, context_ids, uids, st.lists(uids, min_size=1, max_size=3).map(tuple)
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda pc: pc.id,
).map(tuple)


@st.composite
def _context_ac(draw: st.DrawFn) -> PresentationContextAC:
    result = draw(st.sampled_from(PresentationResult))
    # A rejected context's transfer syntax is not significant (PS3.8 Table 9-18).
    ts = draw(uids) if result == PresentationResult.ACCEPTANCE else draw(st.just("") | uids)
    return PresentationContextAC(draw(context_ids), result, ts)


contexts_ac = st.lists(_context_ac(), min_size=1, max_size=4, unique_by=lambda pc: pc.id).map(tuple)

associate_rq = st.builds(
    AssociateRQ,
    called_ae=ae_titles,
    calling_ae=ae_titles,
    presentation_contexts=contexts_rq,
    user_information=user_information(identity_rq),
    application_context=uids,
    protocol_version=st.integers(0, 0xFFFF),
)
associate_ac = st.builds(
    AssociateAC,
    called_ae=ae_titles,
    calling_ae=ae_titles,
    presentation_contexts=contexts_ac,
    user_information=user_information(identity_ac),
    application_context=uids,
    protocol_version=st.integers(0, 0xFFFF),
)
associate_rj = st.one_of(
    st.builds(
        AssociateRJ,
        st.sampled_from(RejectResult),
        st.just(RejectSource.SERVICE_USER),
        st.sampled_from(RejectReasonServiceUser),
    ),
    st.builds(
        AssociateRJ,
        st.sampled_from(RejectResult),
        st.just(RejectSource.SERVICE_PROVIDER_ACSE),
        st.sampled_from(RejectReasonACSE),
    ),
    st.builds(
        AssociateRJ,
        st.sampled_from(RejectResult),
        st.just(RejectSource.SERVICE_PROVIDER_PRESENTATION),
        st.sampled_from(RejectReasonPresentation),
    ),
)
pdvs = st.builds(PDV, context_ids, st.integers(0, 3), st.binary(max_size=300))
p_data = st.builds(PDataTF, st.lists(pdvs, min_size=1, max_size=4).map(tuple))
aborts = st.builds(Abort, st.sampled_from(AbortSource), st.sampled_from(AbortReason))

pdus: st.SearchStrategy[PDU] = st.one_of(
    associate_rq,
    associate_ac,
    associate_rj,
    p_data,
    st.just(ReleaseRQ()),
    st.just(ReleaseRP()),
    aborts,
)


@st.composite
def mutated_pdu_bytes(draw: st.DrawFn) -> bytes:
    """A valid PDU's bytes with a few bytes changed, inserted, or cut: near misses find more bugs
    than pure noise, which rarely gets past the header."""
    data = bytearray(draw(pdus).encode())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "set":
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[i]
        else:
            del data[i:]
    return bytes(data)
