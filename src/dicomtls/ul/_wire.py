"""Byte-level rules shared by every PDU and item codec (PS3.8 9.3.1).

All PDU headers are big endian; every item and sub-item starts with
type (1 byte), reserved (1 byte) and a 2-byte length. Text fields are
ISO 646 (ASCII). Keeping these rules in one place keeps the error messages
uniform: they always name the item type, its length and what was left.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator

from dicomtls.ul.codes import AbortReason
from dicomtls.ul.errors import LocalProtocolError, PDUError

U16 = struct.Struct(">H")
U32 = struct.Struct(">I")
ITEM_HEADER = struct.Struct(">BxH")
PDU_HEADER = struct.Struct(">BxI")

INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE
UNEXPECTED = AbortReason.UNEXPECTED_PDU_PARAMETER

_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
UID_MAX = 64
AE_LENGTH = 16


def as_byte_view(data: bytes | bytearray | memoryview) -> memoryview:
    """A flat unsigned-byte view, so indexing yields ints whatever the caller passed."""
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def item(item_type: int, value: bytes) -> bytes:
    """One item or sub-item; refuses values the 16-bit length field cannot describe."""
    if len(value) > 0xFFFF:
        raise LocalProtocolError(
            f"item 0x{item_type:02X} would be {len(value)} bytes long; "
            "an item length field holds at most 65535"
        )
    return ITEM_HEADER.pack(item_type, len(value)) + value


def iter_items(view: memoryview, where: str, most: int) -> Iterator[tuple[int, memoryview]]:
    """Yield (item type, value view) for consecutive items, checking every length; more
    than ``most`` items is a PDU error, raised before the rest are looked at."""
    pos = 0
    end = len(view)
    count = 0
    while pos < end:
        if count == most:
            raise PDUError(f"the {where} holds more than {most:,} items", INVALID)
        count += 1
        if end - pos < ITEM_HEADER.size:
            raise PDUError(
                f"{end - pos} trailing byte(s) in the {where} are too few for an item header",
                INVALID,
            )
        item_type, length = ITEM_HEADER.unpack_from(view, pos)
        start = pos + ITEM_HEADER.size
        stop = start + length
        if stop > end:
            raise PDUError(
                f"item 0x{item_type:02X} length {length} runs past the end of the "
                f"{where} ({end - start} bytes left)",
                INVALID,
            )
        yield item_type, view[start:stop]
        pos = stop


def read_u16_prefixed(view: memoryview, pos: int, what: str, where: str) -> tuple[bytes, int]:
    """Read a 2-byte length and that many bytes (user-information sub-item fields, Annex D)."""
    if pos + 2 > len(view):
        raise PDUError(f"{where} ends before the length of its {what}", INVALID)
    (length,) = U16.unpack_from(view, pos)
    start = pos + 2
    if start + length > len(view):
        raise PDUError(
            f"{what} length {length} runs past the end of the {where} "
            f"({len(view) - start} bytes left)",
            INVALID,
        )
    return bytes(view[start : start + length]), start + length


def u16_prefixed(value: bytes, what: str) -> bytes:
    """Encode a 2-byte length followed by the value."""
    if len(value) > 0xFFFF:
        raise LocalProtocolError(f"{what} is {len(value)} bytes; at most 65535 fit")
    return U16.pack(len(value)) + value


def is_uid(text: str) -> bool:
    """PS3.5 9.1 shape: digits and dots, non-empty components, at most 64 characters."""
    return len(text) <= UID_MAX and _UID.fullmatch(text) is not None


def encode_uid(uid: str, what: str) -> bytes:
    """UIDs go on the wire unpadded (PS3.8 Annex F); check them before they leave."""
    if not isinstance(uid, str) or not is_uid(uid):
        raise LocalProtocolError(
            f"{what} {uid!r} is not a UID (digits and dots, at most {UID_MAX} characters)"
        )
    return uid.encode("ascii")


def decode_uid(raw: bytes | memoryview, what: str) -> str:
    """Decode a UID, forgiving the trailing NUL or space padding some peers add."""
    data = bytes(raw).rstrip(b"\x00 ")
    text = data.decode("ascii", "replace")
    if not is_uid(text):
        raise PDUError(
            f"{what} {data[:80]!r} is not a UID (digits and dots, at most {UID_MAX} characters)",
            INVALID,
        )
    return text


def _bad_ae(text: str) -> bool:
    return not 1 <= len(text) <= AE_LENGTH or any(c == "\\" or not " " <= c <= "~" for c in text)


def is_ae_title(title: str) -> bool:
    """Whether ``title`` can go on the wire as an AE title (spaces around it are not kept)."""
    return not _bad_ae(title.strip(" "))


def encode_ae(title: str, what: str) -> bytes:
    """AE titles are 1..16 ISO 646 characters, no backslash or control characters (PS3.5)."""
    text = title.strip(" ") if isinstance(title, str) else title
    if not isinstance(text, str) or _bad_ae(text):
        raise LocalProtocolError(
            f"{what} {title!r} is not an AE title "
            "(1 to 16 printable ASCII characters, no backslash)"
        )
    return text.encode("ascii").ljust(AE_LENGTH, b" ")


def decode_ae(raw: memoryview, what: str) -> str:
    """Decode a 16-byte AE title field; leading and trailing spaces are not significant."""
    text = bytes(raw).decode("ascii", "replace").strip(" ")
    if _bad_ae(text):
        raise PDUError(f"{what} {bytes(raw)!r} is not an AE title", INVALID)
    return text


def encode_echoed_ae(title: str, what: str) -> bytes:
    """A-ASSOCIATE-AC AE fields only echo the request and are never tested (PS3.8 9.3.3)."""
    text = title.strip(" ") if isinstance(title, str) else title
    if not isinstance(text, str) or len(text) > AE_LENGTH:
        raise LocalProtocolError(f"{what} {title!r} is longer than {AE_LENGTH} characters")
    try:
        return text.encode("latin-1").ljust(AE_LENGTH, b" ")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} {title!r} is not single-byte text") from None


def decode_echoed_ae(raw: memoryview, what: str) -> str:
    """Decode an echoed AE field without testing it, as PS3.8 9.3.3 requires (so ``what``,
    there to match :func:`decode_ae`, never names it in an error)."""
    return bytes(raw).decode("latin-1").strip(" ")
