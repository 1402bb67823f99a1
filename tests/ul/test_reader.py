"""PDUReader: framing, limits checked at the header, and large P-DATA-TF PDUs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomtls.ul import (
    PDV,
    Abort,
    AbortReason,
    LocalProtocolError,
    PDataTF,
    PDUError,
    PDUReader,
    ReleaseRQ,
)
from tests.ul.test_pdu_bytes import ASSOCIATE_RQ, ASSOCIATE_RQ_BYTES, P_DATA, P_DATA_BYTES


def test_byte_by_byte() -> None:
    reader = PDUReader()
    stream = ASSOCIATE_RQ_BYTES + P_DATA_BYTES + ReleaseRQ().encode()
    out: list[object] = []
    for i in range(len(stream)):
        reader.feed(stream[i : i + 1])
        out.extend(reader)
    assert out == [ASSOCIATE_RQ, P_DATA, ReleaseRQ()]
    assert reader.buffered == 0
    assert reader.next_pdu() is None


def test_partial_pdu_is_reported_as_buffered() -> None:
    reader = PDUReader()
    reader.feed(P_DATA_BYTES[:9])
    assert reader.next_pdu() is None
    assert reader.buffered == 9


def test_caller_may_reuse_its_buffer_after_feed() -> None:
    reader = PDUReader()
    buf = bytearray(P_DATA_BYTES)
    reader.feed(buf)
    buf[:] = bytes(len(buf))
    assert reader.next_pdu() == P_DATA


def test_unknown_type_fails_at_the_header() -> None:
    reader = PDUReader()
    reader.feed(Abort().encode() + b"\x09\x00\x00\x00\x00\x04")
    assert reader.next_pdu() == Abort()
    with pytest.raises(PDUError) as info:
        reader.next_pdu()
    assert info.value.reason == AbortReason.UNRECOGNIZED_PDU
    # Broken for good: more bytes change nothing.
    reader.feed(ReleaseRQ().encode())
    with pytest.raises(PDUError):
        reader.next_pdu()


def test_p_data_longer_than_advertised_fails_before_buffering() -> None:
    reader = PDUReader(max_pdu_length=16384)
    reader.feed(b"\x04\x00\x00\x00\x40\x01")  # 16385
    with pytest.raises(PDUError, match="more than the maximum length 16384") as info:
        reader.next_pdu()
    assert info.value.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    assert reader.buffered == 0


def test_p_data_at_the_limit_is_accepted() -> None:
    payload = bytes(16384 - 6)
    reader = PDUReader(max_pdu_length=16384)
    reader.feed(PDataTF((PDV(1, 0, payload),)).encode())
    pdu = reader.next_pdu()
    assert isinstance(pdu, PDataTF) and pdu.pdvs[0].data == payload


def test_a_4_gib_associate_request_is_refused_at_the_header() -> None:
    reader = PDUReader()
    reader.feed(b"\x01\x00\xff\xff\xff\xff")
    with pytest.raises(PDUError, match="more than the 1048576 bytes") as info:
        reader.next_pdu()
    assert info.value.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_fixed_length_pdus_with_other_lengths_fail_at_the_header() -> None:
    reader = PDUReader()
    reader.feed(b"\x05\x00\x00\x01\x00\x00")
    with pytest.raises(PDUError, match="fixes it at 4"):
        reader.next_pdu()


def test_decode_error_comes_after_the_good_pdus_before_it() -> None:
    reader = PDUReader()
    bad_abort = b"\x07\x00\x00\x00\x00\x04\x00\x00\x01\x00"
    reader.feed(ReleaseRQ().encode() + bad_abort + ReleaseRQ().encode())
    assert reader.next_pdu() == ReleaseRQ()
    with pytest.raises(PDUError, match="source 1"):
        reader.next_pdu()
    with pytest.raises(PDUError, match="source 1"):
        reader.next_pdu()


@pytest.mark.parametrize("size", [8 << 20, (16 << 20) + 100])
def test_large_p_data_in_small_chunks(size: int) -> None:
    """Several megabytes fed in 64 KiB pieces, both below and above the pre-allocation
    limit; the PDV comes back as a view of the reader's buffer, not a copy."""
    payload = bytes(range(256)) * (size // 256)
    wire = PDataTF((PDV(1, 2, payload),)).encode()
    reader = PDUReader()
    view = memoryview(wire)
    for start in range(0, len(wire), 65536):
        reader.feed(view[start : start + 65536])
    pdu = reader.next_pdu()
    assert isinstance(pdu, PDataTF)
    data = pdu.pdvs[0].data
    assert isinstance(data, memoryview) and data.readonly
    assert data.nbytes == len(payload) and data == payload
    assert reader.next_pdu() is None


def test_bad_limits_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError):
        PDUReader(max_pdu_length=-1)


def _receive_in_place(reader: PDUReader, stream: bytes, reads: list[int]) -> list[object]:
    """Write the stream into get_buffer() in reads of the given sizes, as a TLS layer would."""
    out: list[object] = []
    position, turn = 0, 0
    while position < len(stream):
        buffer = reader.get_buffer()
        size = min(len(buffer), reads[turn % len(reads)], len(stream) - position)
        buffer[:size] = stream[position : position + size]
        reader.buffer_updated(size)
        position, turn = position + size, turn + 1
        out.extend(reader)
    return out


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 70_000), min_size=1, max_size=12))
def test_receiving_in_place_gives_what_feeding_gives(reads: list[int]) -> None:
    big = PDataTF((PDV(1, 0x02, bytes(range(256)) * 800),))  # 200 KiB body: received in place
    stream = ASSOCIATE_RQ_BYTES + P_DATA_BYTES + big.encode() + ReleaseRQ().encode()
    fed = PDUReader()
    fed.feed(stream)
    assert (
        _receive_in_place(PDUReader(), stream, reads)
        == list(fed)
        == [
            ASSOCIATE_RQ,
            P_DATA,
            big,
            ReleaseRQ(),
        ]
    )


def test_a_large_body_is_received_where_it_stays() -> None:
    reader = PDUReader()
    body = PDataTF((PDV(1, 0x02, b"x" * 100_000),)).encode()
    first = reader.get_buffer()
    first[:6] = body[:6]  # the header, into the scratch buffer
    reader.buffer_updated(6)
    inside = reader.get_buffer()  # now the body itself: the rest of the PDU, no scratch
    assert len(inside) == len(body) - 6
    inside[:] = body[6:]
    reader.buffer_updated(len(inside))
    pdu = reader.next_pdu()
    assert isinstance(pdu, PDataTF) and bytes(pdu.pdvs[0].data) == b"x" * 100_000
    data = pdu.pdvs[0].data
    assert isinstance(data, memoryview) and inside.obj is data.obj  # a view of what we wrote into
