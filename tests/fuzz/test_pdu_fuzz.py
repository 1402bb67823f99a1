"""PDU decoding and framing under damaged input: bit flips, truncations, and tampered PDU,
item and PDV lengths, fed whole and in arbitrary pieces."""

from __future__ import annotations

from fuzz._oracles import check_pdu, check_reader, reader_bound
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dicomtls.ul import PDU, AbortReason, PDataTF, PDUError, PDUReader, decode_pdu
from tests.fuzz import seeds
from tests.fuzz.mutations import (
    item_length_offsets,
    mutate,
    mutated_pdus,
    pdv_length_offsets,
    valid_pdu_bytes,
)
from tests.ul.strategies import associate_ac, associate_rq, p_data

#: Limits the reader is run with: none, a small negotiated one, the default.
max_lengths = st.sampled_from([0, 16384, 4 << 20]) | st.integers(1, 1 << 16)


@settings(max_examples=150, deadline=None)
@given(mutated_pdus)
@example(b"\x01\x00\x00\x00\x00\x44" + bytes(68))  # an A-ASSOCIATE-RQ with no items at all
@example(b"\x04\x00\x00\x00\x00\x06\x00\x00\x00\x01\x01\x03")  # PDV length 1: no header room
def test_mutated_pdus_decode_or_raise_pdu_error(data: bytes) -> None:
    check_pdu(data)


associates = (associate_rq | associate_ac).map(lambda p: p.encode()) | st.sampled_from(
    [p for p in seeds.PDUS if p[0] in (1, 2)]
)


@settings(max_examples=40, deadline=None)
@given(associates, st.data())
def test_item_length_tampering_is_a_pdu_error_or_a_valid_pdu(
    original: bytes, data: st.DataObject
) -> None:
    pdu = decode_pdu(original)
    wire = bytearray(original)
    offsets = item_length_offsets(bytes(wire))
    assert offsets, "every A-ASSOCIATE has items"
    at = data.draw(st.sampled_from(offsets))
    actual = int.from_bytes(wire[at + 2 : at + 4], "big")
    value = data.draw(st.integers(0, 0xFFFF).filter(lambda v: v != actual))
    wire[at + 2 : at + 4] = value.to_bytes(2, "big")
    # Any item length change leaves the PDU length wrong for its items, so something must
    # notice, unless the item was an unknown one whose new length happens to fit.
    try:
        decoded = decode_pdu(bytes(wire))
    except PDUError as exc:
        assert isinstance(exc.reason, AbortReason)
    else:
        check_pdu(bytes(wire))
        assert decoded != pdu or value == actual


@settings(max_examples=100, deadline=None)
@given(p_data, st.data())
def test_pdv_length_tampering_never_escapes_the_pdu(pdu: PDU, data: st.DataObject) -> None:
    wire = bytearray(pdu.encode())
    at = data.draw(st.sampled_from(pdv_length_offsets(bytes(wire))))
    actual = int.from_bytes(wire[at : at + 4], "big")
    value = data.draw(st.integers(0, 2**32 - 1).filter(lambda v: v != actual))
    wire[at : at + 4] = value.to_bytes(4, "big")
    try:
        decoded = decode_pdu(bytes(wire))
    except PDUError:
        return
    # Decodable only by moving PDV boundaries; the payload bytes are all still in there.
    check_pdu(bytes(wire))
    assert isinstance(decoded, PDataTF)
    assert sum(pdv.nbytes + 6 for pdv in decoded.pdvs) == len(wire) - 6


@st.composite
def damaged_streams(draw: st.DrawFn) -> bytes:
    """Valid PDUs back to back, some of them mutated, maybe a stray tail."""
    parts = [
        draw(mutate(p) if draw(st.booleans()) else st.just(p))
        for p in draw(st.lists(valid_pdu_bytes, min_size=1, max_size=4))
    ]
    return b"".join(parts) + draw(st.binary(max_size=12))


@settings(max_examples=80, deadline=None)
@given(damaged_streams(), st.binary(min_size=1, max_size=8), max_lengths)
def test_framing_of_damaged_streams_is_chunking_independent(
    stream: bytes, sizes: bytes, max_pdu_length: int
) -> None:
    check_reader(stream, sizes, max_pdu_length)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400), st.binary(min_size=1, max_size=4), max_lengths)
def test_framing_of_noise(stream: bytes, sizes: bytes, max_pdu_length: int) -> None:
    check_reader(stream, sizes, max_pdu_length)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(range(1, 8)), st.integers(1 << 20, 2**32 - 1), st.integers(1, 3))
def test_huge_length_fields_cannot_make_the_reader_hold_much(
    pdu_type: int, length: int, megabytes: int
) -> None:
    reader = PDUReader(max_pdu_length=16384)
    reader.feed(bytes((pdu_type, 0)) + length.to_bytes(4, "big"))
    for _ in range(megabytes):
        reader.feed(bytes(1 << 20))
        assert reader.buffered <= reader_bound(16384)
    try:
        pdu = reader.next_pdu()
    except PDUError as exc:
        assert isinstance(exc.reason, AbortReason)
    else:
        raise AssertionError(f"a {length}-byte PDU of type {pdu_type} was accepted: {pdu}")
