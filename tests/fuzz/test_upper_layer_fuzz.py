"""The acceptor's state machine fed arbitrary, damaged and real byte streams: it ends in
events and/or an A-ABORT with a reason, raises nothing, and buffers at most one PDU."""

from __future__ import annotations

from fuzz._oracles import IMPLICIT, VERIFICATION, check_upper_layer, reader_bound
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dicomtls.dimse.command import encode_command
from dicomtls.dimse.messages import c_echo_rq
from dicomtls.dimse.pdv import message_pdvs
from dicomtls.ul import AbortReason, PDataTF, PDUError, PDUReader, ReleaseRQ, decode_pdu
from dicomtls.ul.acse import Proposal, build_request
from dicomtls.ul.connection import Aborted, Role, UpperLayer
from dicomtls.ul.states import State
from tests.fuzz import seeds
from tests.fuzz.mutations import mutate, valid_pdu_bytes

max_lengths = st.sampled_from([16384, 65536, 4 << 20]) | st.integers(1, 1 << 17)
sizes = st.binary(min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), sizes, max_lengths, st.integers(0, 0x3FF))
def test_noise_into_an_acceptor(stream: bytes, cuts: bytes, max_pdu: int, selector: int) -> None:
    check_upper_layer(stream, cuts, max_pdu, selector)


def _session(called: str) -> list[bytes]:
    """A well-formed requestor's PDUs: request, one C-ECHO, release."""
    rq = build_request("SCU", called, [Proposal(VERIFICATION, (IMPLICIT,))]).encode()
    echo = b"".join(
        PDataTF((pdv,)).encode()
        for pdv in message_pdvs(1, encode_command(c_echo_rq(1)), None, 16384)
    )
    return [rq, echo, ReleaseRQ().encode()]


@st.composite
def damaged_sessions(draw: st.DrawFn) -> bytes:
    """A real or generated session with some PDUs damaged, dropped, repeated or added."""
    base = draw(st.sampled_from([_session("ANY"), *(_frames(s) for s in seeds.UPPER_LAYER)]))
    out = []
    for frame in base:
        choice = draw(st.sampled_from(["keep", "keep", "mutate", "drop", "twice", "insert"]))
        if choice == "mutate":
            out.append(draw(mutate(frame)))
        elif choice == "twice":
            out += [frame, frame]
        elif choice == "insert":
            out += [draw(valid_pdu_bytes), frame]
        elif choice == "keep":
            out.append(frame)
    return b"".join(out)


def _frames(stream: bytes) -> list[bytes]:
    reader_frames = []
    pos = 0
    while pos + 6 <= len(stream):
        end = pos + 6 + int.from_bytes(stream[pos + 2 : pos + 6], "big")
        reader_frames.append(stream[pos:end])
        pos = end
    return reader_frames


@settings(max_examples=100, deadline=None)
@given(damaged_sessions(), sizes, max_lengths, st.integers(0, 0x3FF))
def test_damaged_sessions_into_an_acceptor(
    stream: bytes, cuts: bytes, max_pdu: int, selector: int
) -> None:
    check_upper_layer(stream, cuts, max_pdu, selector)


@settings(max_examples=12, deadline=None)
@given(st.sampled_from([0x01, 0x02, 0x04, 0x05]), st.integers(1 << 20, 2**32 - 1))
@example(0x01, 1 << 20)  # exactly the A-ASSOCIATE limit: buffered, then refused once
def test_regression_a_pdu_header_cannot_make_an_unassociated_acceptor_buffer_gigabytes(
    pdu_type: int, length: int
) -> None:
    """Found while writing the buffered-bytes invariant: before the association was negotiated the
    acceptor's reader had no P-DATA-TF limit (max 0), so six bytes announcing a 4 GiB
    P-DATA-TF made it buffer everything that followed until the PDU was complete, only to
    abort then. Our maximum now applies from the first byte."""
    ul = UpperLayer(Role.ACCEPTOR, max_pdu_length=16384)
    events = ul.receive_data(bytes((pdu_type, 0)) + length.to_bytes(4, "big"))
    for _ in range(3):
        events += ul.receive_data(bytes(1 << 19))
        assert ul._reader.buffered <= reader_bound(16384)
    (aborted,) = [e for e in events if isinstance(e, Aborted)]
    assert aborted.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    assert [decode_pdu(b).pdu_type for b in ul.data_to_send()] == [0x07]
    assert ul.state is State.STA13


def test_regression_bytes_after_a_framing_error_get_no_second_abort() -> None:
    """Found by the test above (hypothesis, PDU length exactly 1 MiB): after a malformed PDU
    the reader stays broken and re-raised
    its error on every later receive_data, so each further read from the socket made the
    acceptor write another A-ABORT (AA-7 in Sta13). The error is now answered once."""
    ul = UpperLayer(Role.ACCEPTOR, max_pdu_length=16384)
    events = ul.receive_data(b"\x09\x00\x00\x00\x00\x02\x00\x00")  # unknown PDU type
    assert [type(e) for e in events] == [Aborted]
    assert len(ul.data_to_send()) == 1
    for _ in range(5):
        assert ul.receive_data(b"more garbage") == []
        assert ul.data_to_send() == []
    assert ul.connection_closed() and ul.ended


def test_regression_a_requestor_refuses_huge_pdata_before_the_accept() -> None:
    ul = UpperLayer(Role.REQUESTOR)
    ul.request(
        build_request("SCU", "SCP", [Proposal(VERIFICATION, (IMPLICIT,))], max_pdu_length=16384)
    )
    ul.data_to_send()
    events = ul.receive_data(b"\x04\x00\xff\xff\xff\xff" + bytes(1 << 20))
    assert ul._reader.buffered == 0
    assert any(isinstance(e, Aborted) and "16384" in e.message for e in events)


def test_the_reader_limit_still_follows_the_negotiated_maximum() -> None:
    reader = PDUReader(max_pdu_length=16384)
    reader.max_pdu_length = 100
    reader.feed(b"\x04\x00\x00\x00\x00\x65")
    try:
        reader.next_pdu()
    except PDUError as exc:
        assert "100" in str(exc)
    else:
        raise AssertionError("a 101-byte P-DATA-TF passed a 100-byte limit")
