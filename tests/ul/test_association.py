"""Two upper layers back to back, in memory: the PS3.8 state machine end to end."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomtls.ul.acse import AcceptorPolicy, Negotiated, Proposal, answer_request, build_request
from dicomtls.ul.codes import AbortReason, AbortSource, PresentationResult, RejectReasonServiceUser
from dicomtls.ul.connection import (
    Aborted,
    AssociationAccepted,
    AssociationRejected,
    AssociationRequested,
    Closed,
    DataReceived,
    ReleaseConfirmed,
    ReleaseRequested,
    Role,
    UpperLayer,
)
from dicomtls.ul.errors import LocalProtocolError
from dicomtls.ul.pdu import PDV, AssociateRJ, PDataTF, ReleaseRQ
from dicomtls.ul.states import NEXT_STATE, TRANSITIONS, Action, Event, State

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT, EXPLICIT = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
POLICY = AcceptorPolicy(
    "SCP", {VERIFICATION: [IMPLICIT], CT: [EXPLICIT, IMPLICIT]}, max_pdu_length=16384
)


def _pump(sender: UpperLayer, receiver: UpperLayer) -> list[object]:
    events: list[object] = []
    for chunk in sender.data_to_send():
        events += receiver.receive_data(chunk)
    return events


def _associate() -> tuple[UpperLayer, UpperLayer, Negotiated]:
    scu, scp = UpperLayer(Role.REQUESTOR), UpperLayer(Role.ACCEPTOR)
    rq = build_request(
        "SCU",
        "SCP",
        [
            Proposal(VERIFICATION, (IMPLICIT,)),
            Proposal(CT, (IMPLICIT, EXPLICIT)),
            Proposal("1.2.3.4", (IMPLICIT,)),
        ],
        max_pdu_length=32768,
    )
    scu.request(rq)
    (requested,) = _pump(scu, scp)
    assert isinstance(requested, AssociationRequested) and scp.state is State.STA3
    assert not scp.artim_running  # AE-6 stopped it
    answer = answer_request(requested.request, POLICY)
    assert not isinstance(answer, AssociateRJ)
    scp.accept(answer)
    (accepted,) = _pump(scp, scu)
    assert isinstance(accepted, AssociationAccepted)
    # mypy keeps scp.state narrowed to STA3 across accept(): it assumes calls change no attribute
    assert scu.state is State.STA6 and scp.state is State.STA6  # type: ignore[comparison-overlap]
    return scu, scp, Negotiated.from_exchange(rq, accepted.accept, we_requested=True)


def test_associate_transfer_release() -> None:
    scu, scp, negotiated = _associate()
    assert [c.id for c in negotiated.contexts] == [1, 3]  # 1.2.3.4 was not accepted
    ct = negotiated.context_for(CT)
    assert ct is not None and ct.transfer_syntax == EXPLICIT  # the acceptor's preference wins
    assert scu.peer_max_pdu_length == 16384 and scp.peer_max_pdu_length == 32768
    scu.send_pdata(PDataTF((PDV(1, 0x03, b"hello"),)))
    (data,) = _pump(scu, scp)
    assert isinstance(data, DataReceived) and bytes(data.pdata.pdvs[0].data) == b"hello"
    scu.release()
    assert scu.state is State.STA7
    assert _pump(scu, scp) == [ReleaseRequested()]
    scp.release_response()
    assert scp.artim_running and scp.state is State.STA13
    assert _pump(scp, scu) == [ReleaseConfirmed(), Closed()]
    # mypy keeps scu.state narrowed to STA7 across the calls above
    assert scu.should_close and scu.state is State.STA1  # type: ignore[comparison-overlap]
    assert scp.connection_closed() == [Closed()] and scp.state is State.STA1


def test_rejection_reasons() -> None:
    scu, scp = UpperLayer(Role.REQUESTOR), UpperLayer(Role.ACCEPTOR)
    scu.request(build_request("SCU", "SOMEONE-ELSE", [Proposal(VERIFICATION, (IMPLICIT,))]))
    (requested,) = _pump(scu, scp)
    assert isinstance(requested, AssociationRequested)
    answer = answer_request(requested.request, POLICY)
    assert isinstance(answer, AssociateRJ)
    assert answer.reason == RejectReasonServiceUser.CALLED_AE_NOT_RECOGNIZED
    scp.reject(answer)
    events = _pump(scp, scu)
    assert isinstance(events[0], AssociationRejected) and isinstance(events[1], Closed)
    strict = AcceptorPolicy("SCP", POLICY.supported, calling_ae_allowed=lambda ae: ae == "KNOWN")
    rq = build_request("STRANGER", "SCP", [Proposal(VERIFICATION, (IMPLICIT,))])
    rj = answer_request(rq, strict)
    assert (
        isinstance(rj, AssociateRJ)
        and rj.reason == RejectReasonServiceUser.CALLING_AE_NOT_RECOGNIZED
    )


def test_unexpected_pdu_gets_an_abort_with_the_reason() -> None:
    scu, scp, _ = _associate()
    events = scp.receive_data(
        build_request("X", "SCP", [Proposal(VERIFICATION, (IMPLICIT,))]).encode()
    )
    (aborted,) = [e for e in events if isinstance(e, Aborted)]
    assert aborted.reason == AbortReason.UNEXPECTED_PDU and not aborted.by_peer
    assert "AssociateRQ in Sta6" in aborted.message
    abort_bytes = scp.data_to_send()
    assert abort_bytes and abort_bytes[0][0] == 0x07
    peer_events = scu.receive_data(abort_bytes[0])
    assert isinstance(peer_events[0], Aborted) and peer_events[0].by_peer
    assert peer_events[0].source == AbortSource.SERVICE_PROVIDER


def test_garbage_and_oversized_pdata() -> None:
    _, scp, _ = _associate()
    big = PDataTF((PDV(1, 0x03, b"x" * 20000),)).encode()  # we advertised 16384
    events = scp.receive_data(big)
    (aborted,) = [e for e in events if isinstance(e, Aborted)]
    assert "16384" in aborted.message
    fresh = UpperLayer(Role.ACCEPTOR)
    events = fresh.receive_data(b"\x09\x00\x00\x00\x00\x02\x00\x00")
    assert any(isinstance(e, Aborted) and e.reason == AbortReason.UNRECOGNIZED_PDU for e in events)


def test_release_collision_both_roles() -> None:
    scu, scp, _ = _associate()
    scu.release()
    scp.release()
    assert scu.receive_data(scp.data_to_send()[0]) == [ReleaseRequested(collision=True)]
    assert scp.receive_data(scu.data_to_send()[0]) == [ReleaseRequested(collision=True)]
    assert (scu.state, scp.state) == (State.STA9, State.STA10)
    scu.release_response()  # AR-9 -> Sta11
    assert scp.receive_data(scu.data_to_send()[0]) == [ReleaseConfirmed()]  # AR-10 -> Sta12
    scp.release_response()  # AR-4 -> Sta13
    assert scu.receive_data(scp.data_to_send()[0]) == [ReleaseConfirmed(), Closed()]  # AR-3


def test_artim_expiry_and_local_misuse() -> None:
    scp = UpperLayer(Role.ACCEPTOR)
    assert scp.artim_running
    events = scp.artim_expired()
    assert isinstance(events[0], Aborted) and "ARTIM" in events[0].message and scp.should_close
    scu = UpperLayer(Role.REQUESTOR)
    with pytest.raises(LocalProtocolError, match="Evt9 is not allowed in Sta4"):
        scu.send_pdata(PDataTF((PDV(1, 3, b"x"),)))
    with pytest.raises(LocalProtocolError):
        scu.release()


def test_table_is_complete_for_received_pdus() -> None:
    pdu_events = [
        Event.EVT3,
        Event.EVT4,
        Event.EVT6,
        Event.EVT10,
        Event.EVT12,
        Event.EVT13,
        Event.EVT16,
        Event.EVT17,
        Event.EVT19,
    ]
    for state in State:
        if state in (State.STA1, State.STA4):
            continue
        for event in pdu_events:
            assert (state, event) in TRANSITIONS, (state, event)
    assert all(action in NEXT_STATE for action in Action)
    assert TRANSITIONS[(State.STA7, Event.EVT12)] is Action.AR_8


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=6))
def test_random_bytes_into_an_acceptor_only_make_events(chunks: list[bytes]) -> None:
    scp = UpperLayer(Role.ACCEPTOR)
    for chunk in chunks:
        scp.receive_data(chunk)
    assert scp.state in State


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["pdata", "release_rq", "abort", "garbage", "rq"]), max_size=8))
def test_random_pdu_sequences_keep_a_defined_state(steps: list[str]) -> None:
    _, scp, _ = _associate()
    samples = {
        "pdata": PDataTF((PDV(1, 3, b"x"),)).encode(),
        "release_rq": ReleaseRQ().encode(),
        "abort": b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00",
        "garbage": b"\xff" * 10,
        "rq": build_request("A", "SCP", [Proposal(VERIFICATION, (IMPLICIT,))]).encode(),
    }
    for step in steps:
        scp.receive_data(samples[step])
        assert scp.state in State
    assert PresentationResult.ACCEPTANCE.value == 0
