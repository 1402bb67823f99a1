"""Property tests: valid PDUs round-trip, any bytes give a PDU or a PDUError and nothing
else, and framing does not depend on how the stream is cut."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from dicomtls.ul import PDU, PDUError, PDUReader, decode_pdu
from tests.ul.strategies import mutated_pdu_bytes, pdus

fuzz_input = st.one_of(st.binary(max_size=300), mutated_pdu_bytes())


@given(pdus)
def test_valid_pdus_round_trip(pdu: PDU) -> None:
    wire = pdu.encode()
    assert decode_pdu(wire) == pdu
    assert decode_pdu(memoryview(bytearray(wire))) == pdu


@settings(max_examples=500)
@given(fuzz_input)
def test_decode_pdu_raises_only_pdu_error(data: bytes) -> None:
    try:
        pdu = decode_pdu(data)
    except PDUError as exc:
        assert isinstance(exc.reason, int)
        assert str(exc)
    else:
        # Whatever decodes must encode again to something that decodes the same.
        assert decode_pdu(pdu.encode()) == pdu


@settings(max_examples=300)
@given(st.lists(fuzz_input, max_size=4), st.integers(0, 2**16))
def test_reader_raises_only_pdu_error(chunks: list[bytes], max_pdu_length: int) -> None:
    reader = PDUReader(max_pdu_length=max_pdu_length)
    try:
        for chunk in chunks:
            reader.feed(chunk)
            list(reader)
    except PDUError:
        pass


def _drain(reader: PDUReader) -> list[object]:
    """Every PDU, then the error (type, reason, message) if one ends the stream."""
    out: list[object] = []
    try:
        out.extend(reader)
    except PDUError as exc:
        out.append(("error", exc.reason, str(exc)))
    return out


@given(
    st.lists(pdus, min_size=1, max_size=4),
    st.binary(max_size=20),
    st.lists(st.integers(0, 4000), max_size=10),
)
def test_framing_is_independent_of_chunking(
    sequence: list[PDU], tail: bytes, cuts: list[int]
) -> None:
    stream = b"".join(p.encode() for p in sequence) + tail

    whole = PDUReader()
    whole.feed(stream)
    expected = _drain(whole)
    assert expected[: len(sequence)] == sequence

    chunked = PDUReader()
    got: list[object] = []
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    for start, stop in itertools.pairwise(points):
        chunked.feed(stream[start:stop])
        got.extend(_drain(chunked))
        if got and isinstance(got[-1], tuple):
            break
    assert got == expected
    assert chunked.buffered == whole.buffered
