"""Near-miss inputs: valid encodings with one structural field or a few bits damaged.

Random bytes rarely get past a PDU header; a valid PDU with its PDU length, an item length
or a PDV length tampered with, a bit flipped or its tail cut off reaches the decoders of
every item and sub-item, which is where parsers go wrong.
"""

from __future__ import annotations

from hypothesis import strategies as st

from dicomtls.dimse.command import Tag, Value, encode_command
from tests.fuzz import seeds
from tests.ul.strategies import ae_titles, pdus

__all__ = [
    "command_sets",
    "item_length_offsets",
    "mutate",
    "mutated_commands",
    "mutated_pdus",
    "pdv_length_offsets",
    "uids",
    "valid_pdu_bytes",
]

#: Item types whose value is a list of sub-items (PS3.8 9.3.2), with the bytes before it.
_NESTED = {0x20: 4, 0x21: 4, 0x50: 0}


def _walk_items(data: bytes, start: int, end: int, out: list[int]) -> None:
    pos = start
    while pos + 4 <= end:
        item_type = data[pos]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        out.append(pos)
        value = pos + 4
        if value + length > end:
            return
        if item_type in _NESTED:
            _walk_items(data, value + _NESTED[item_type], value + length, out)
        pos = value + length


def item_length_offsets(pdu: bytes) -> list[int]:
    """Offsets of every item and sub-item header in an A-ASSOCIATE-RQ/AC."""
    out: list[int] = []
    if pdu[:1] in (b"\x01", b"\x02"):
        _walk_items(pdu, 74, len(pdu), out)
    return out


def pdv_length_offsets(pdu: bytes) -> list[int]:
    """Offsets of every PDV item's 4-byte length in a P-DATA-TF."""
    out: list[int] = []
    if pdu[:1] == b"\x04":
        pos = 6
        while pos + 4 <= len(pdu):
            out.append(pos)
            pos += 4 + int.from_bytes(pdu[pos : pos + 4], "big")
    return out


def _length_value(draw: st.DrawFn, actual: int, bits: int) -> int:
    top = (1 << bits) - 1
    near = [max(actual - 1, 0), min(actual + 1, top), min(actual + 4, top)]  # an earlier
    # mutation may have left the field at its maximum: stay inside what it can hold
    return draw(st.sampled_from([0, 1, 2, 3, 4, *near, top]) | st.integers(0, top))


@st.composite
def mutate(draw: st.DrawFn, data: bytes, max_ops: int = 3) -> bytes:
    """``data`` with 1..max_ops structural or bit-level mutations."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, max_ops))):
        if not buf:
            break
        op = draw(
            st.sampled_from(
                ["flip", "truncate", "pdu_length", "item_length", "pdv_length", "insert", "delete"]
            )
        )
        if op == "pdu_length" and len(buf) >= 6:
            value = _length_value(draw, len(buf) - 6, 32)
            buf[2:6] = value.to_bytes(4, "big")
        elif op == "item_length" and (offsets := item_length_offsets(bytes(buf))):
            at = draw(st.sampled_from(offsets))
            actual = int.from_bytes(buf[at + 2 : at + 4], "big")
            buf[at + 2 : at + 4] = _length_value(draw, actual, 16).to_bytes(2, "big")
        elif op == "pdv_length" and (offsets := pdv_length_offsets(bytes(buf))):
            at = draw(st.sampled_from(offsets))
            actual = int.from_bytes(buf[at : at + 4], "big")
            buf[at : at + 4] = _length_value(draw, actual, 32).to_bytes(4, "big")
        elif op == "truncate":
            del buf[draw(st.integers(0, len(buf) - 1)) :]
        elif op == "insert":
            at = draw(st.integers(0, len(buf)))
            buf[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            at = draw(st.integers(0, len(buf) - 1))
            del buf[at : at + draw(st.integers(1, 8))]
        else:
            at = draw(st.integers(0, len(buf) - 1))
            buf[at] ^= 1 << draw(st.integers(0, 7))
    return bytes(buf)


#: Valid PDUs as bytes: generated ones, and the real ones captured from DCMTK and pynetdicom
#: (cheap to draw, and what peers actually send).
valid_pdu_bytes = pdus.map(lambda pdu: pdu.encode()) | st.sampled_from(seeds.PDUS)

#: A valid PDU's bytes, mutated.
mutated_pdus = valid_pdu_bytes.flatmap(mutate)

#: Cheaper to draw than a regex: digits and dots, at most 64 characters.
uids = st.lists(st.integers(0, 99999), min_size=1, max_size=8).map(
    lambda parts: ".".join(map(str, parts))[:64].rstrip(".")
)
_text = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)
_VALUES: dict[Tag, st.SearchStrategy[Value]] = {
    Tag.AffectedSOPClassUID: uids,
    Tag.RequestedSOPClassUID: uids,
    Tag.AffectedSOPInstanceUID: uids,
    Tag.RequestedSOPInstanceUID: uids,
    Tag.MoveDestination: ae_titles,
    Tag.MoveOriginatorApplicationEntityTitle: ae_titles,
    Tag.ErrorComment: _text,
    Tag.OffendingElement: st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=3).map(tuple),
}
_US = [t for t in Tag if t not in _VALUES and t != Tag.CommandGroupLength]

#: Valid command sets (tag -> value), as decode_command returns them.
_OPTIONAL: dict[Tag, st.SearchStrategy[Value]] = {
    **_VALUES,
    **{tag: st.integers(0, 0xFFFF) for tag in _US if tag != Tag.CommandField},
}
command_sets = st.fixed_dictionaries(
    {Tag.CommandField: st.sampled_from([0x0001, 0x8001, 0x0020, 0x8020, 0x0030, 0x8030])},
    optional=_OPTIONAL,
).map(lambda d: {int(k): v for k, v in d.items()})

#: A valid command set's bytes (generated or captured), mutated.
mutated_commands = (command_sets.map(encode_command) | st.sampled_from(seeds.COMMANDS)).flatmap(
    mutate
)
