"""DIMSE command sets (PS3.7 section 9.3 and Annex E): group 0000, Implicit VR Little Endian.

A command set is small and always encoded the same way, so it is coded here
directly rather than through pydicom: that keeps the per-message cost to a few
``struct`` calls and lets the decoder be strict about every element it reads
(wrong length for the VR, an odd value length, an element outside group 0000).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from types import MappingProxyType

from dicomtls.dimse.status import AnsweredStatus
from dicomtls.errors import DicomTLSError

__all__ = [
    "NO_DATASET",
    "CommandError",
    "CommandField",
    "CommandSet",
    "Tag",
    "command_field",
    "decode_command",
    "encode_command",
    "has_dataset",
    "number",
]

#: (0000,0800) CommandDataSetType value meaning "no data set follows" (PS3.7 E.1).
NO_DATASET = 0x0101


class CommandError(DicomTLSError, ValueError):
    """A command set that cannot be understood; the SCP answers it with status 0xC000-ish."""

    def __init__(self, message: str, tag: int | None = None) -> None:
        super().__init__(message)
        self.tag = tag


class CommandField(enum.IntEnum):
    """(0000,0100) Command Field values (PS3.7 Table E.1-1)."""

    C_STORE_RQ = 0x0001
    C_STORE_RSP = 0x8001
    C_GET_RQ = 0x0010
    C_GET_RSP = 0x8010
    C_FIND_RQ = 0x0020
    C_FIND_RSP = 0x8020
    C_MOVE_RQ = 0x0021
    C_MOVE_RSP = 0x8021
    C_ECHO_RQ = 0x0030
    C_ECHO_RSP = 0x8030
    C_CANCEL_RQ = 0x0FFF

    @property
    def is_response(self) -> bool:
        return bool(self.value & 0x8000)


class Tag(enum.IntEnum):
    """The command elements (group 0000) this toolkit reads and writes, with their VRs below."""

    CommandGroupLength = 0x00000000
    AffectedSOPClassUID = 0x00000002
    RequestedSOPClassUID = 0x00000003
    CommandField = 0x00000100
    MessageID = 0x00000110
    MessageIDBeingRespondedTo = 0x00000120
    MoveDestination = 0x00000600
    Priority = 0x00000700
    CommandDataSetType = 0x00000800
    Status = 0x00000900
    OffendingElement = 0x00000901
    ErrorComment = 0x00000902
    ErrorID = 0x00000903
    AffectedSOPInstanceUID = 0x00001000
    RequestedSOPInstanceUID = 0x00001001
    NumberOfRemainingSuboperations = 0x00001020
    NumberOfCompletedSuboperations = 0x00001021
    NumberOfFailedSuboperations = 0x00001022
    NumberOfWarningSuboperations = 0x00001023
    MoveOriginatorApplicationEntityTitle = 0x00001030
    MoveOriginatorMessageID = 0x00001031


_VR: Mapping[int, str] = MappingProxyType(
    {
        Tag.CommandGroupLength: "UL",
        Tag.AffectedSOPClassUID: "UI",
        Tag.RequestedSOPClassUID: "UI",
        Tag.CommandField: "US",
        Tag.MessageID: "US",
        Tag.MessageIDBeingRespondedTo: "US",
        Tag.MoveDestination: "AE",
        Tag.Priority: "US",
        Tag.CommandDataSetType: "US",
        Tag.Status: "US",
        Tag.OffendingElement: "AT",
        Tag.ErrorComment: "LO",
        Tag.ErrorID: "US",
        Tag.AffectedSOPInstanceUID: "UI",
        Tag.RequestedSOPInstanceUID: "UI",
        Tag.NumberOfRemainingSuboperations: "US",
        Tag.NumberOfCompletedSuboperations: "US",
        Tag.NumberOfFailedSuboperations: "US",
        Tag.NumberOfWarningSuboperations: "US",
        Tag.MoveOriginatorApplicationEntityTitle: "AE",
        Tag.MoveOriginatorMessageID: "US",
    }
)

Value = int | str | tuple[int, ...]
CommandSet = dict[int, Value]
"""Tag -> value: ints for US/UL, str for UI/AE/LO, a tuple of tags for AT."""

_ELEMENT_HEADER = struct.Struct("<HHI")


def _tag_name(tag: int) -> str:
    try:
        return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {Tag(tag).name}"
    except ValueError:
        return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


#: The number VRs of command elements, as packed.
_NUMBERS = {"US": struct.Struct("<H"), "UL": struct.Struct("<I")}


def _encode_value(tag: int, value: Value) -> bytes:
    vr = _VR.get(tag)
    if vr is None:
        raise CommandError(f"cannot encode unknown command element {_tag_name(tag)}", tag)
    if vr in _NUMBERS:
        return _encode_number(tag, value, _NUMBERS[vr])
    if vr == "AT":
        tags = (value,) if isinstance(value, int) else value
        assert isinstance(tags, tuple)
        return b"".join(struct.pack("<HH", t >> 16, t & 0xFFFF) for t in tags)
    # Text pads to an even length: a UID with NUL, other text with a space (PS3.5 6.2).
    return _encode_text(tag, value, pad=b"\x00" if vr == "UI" else b" ")


def _encode_number(tag: int, value: Value, packer: struct.Struct) -> bytes:
    top = (1 << (8 * packer.size)) - 1
    if not isinstance(value, int) or not 0 <= value <= top:
        raise CommandError(f"{_tag_name(tag)} must be an integer 0..{top}, not {value!r}", tag)
    return packer.pack(value)


def _encode_text(tag: int, value: Value, *, pad: bytes) -> bytes:
    if not isinstance(value, str):
        raise CommandError(f"{_tag_name(tag)} must be text, not {type(value).__name__}", tag)
    raw = value.encode("ascii", errors="strict")
    return raw + pad if len(raw) % 2 else raw


def encode_command(command: CommandSet) -> bytes:
    """Encode a command set, adding (0000,0000) CommandGroupLength first."""
    parts = []
    for tag in sorted(t for t in command if t != Tag.CommandGroupLength):
        raw = _encode_value(tag, command[tag])
        parts.append(_ELEMENT_HEADER.pack(0x0000, tag & 0xFFFF, len(raw)))
        parts.append(raw)
    body = b"".join(parts)
    return _ELEMENT_HEADER.pack(0, 0, 4) + struct.pack("<I", len(body)) + body


def _decode_value(tag: int, raw: bytes) -> Value:
    vr = _VR[tag]
    if vr in _NUMBERS:
        packer = _NUMBERS[vr]
        if len(raw) != packer.size:
            raise _length_error(tag, raw, vr, packer.size)
        return int(packer.unpack(raw)[0])
    if vr == "AT":
        if not raw or len(raw) % 4:
            raise _length_error(tag, raw, vr, 4)
        return tuple((g << 16) | e for g, e in struct.iter_unpack("<HH", raw))
    if vr == "LO":  # a comment for people: a peer's Latin-1 must not cost its status
        text = raw.decode("ascii", errors="backslashreplace")
        return text.rstrip("\x00 ").lstrip(" ")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise CommandError(f"{_tag_name(tag)} is not ASCII text", tag) from None
    # Padding is not part of a value; leading spaces are not significant in AE or LO text.
    return text.rstrip("\x00 ") if vr == "UI" else text.rstrip("\x00 ").lstrip(" ")


def _length_error(tag: int, raw: bytes, vr: str, size: int) -> CommandError:
    return CommandError(
        f"{_tag_name(tag)} has length {len(raw)}, but its VR {vr} needs {size}", tag
    )


def decode_command(data: bytes | bytearray | memoryview) -> CommandSet:
    """Decode a complete command set.

    Elements we do not know (retired ones, private additions) are skipped, as PS3.7
    asks; what a known element holds must fit its VR. Elements of another group than
    0000 have no place in a command set, but they are skipped too, whole: Orthanc 1.10
    puts a failed C-GET's Failed SOP Instance UID List (0008,0058) there, and nothing in
    them can change what the command says.
    """
    view = memoryview(data)
    command: CommandSet = {}
    offset = 0
    while offset < len(view):
        if len(view) - offset < 8:
            raise CommandError(f"command set ends inside an element header at byte {offset}")
        group, element, length = _ELEMENT_HEADER.unpack_from(view, offset)
        offset += 8
        tag = (group << 16) | element
        if length > len(view) - offset:
            raise CommandError(
                f"element {_tag_name(tag)} length {length} runs past the command set "
                f"({len(view) - offset} bytes left)",
                tag,
            )
        raw = bytes(view[offset : offset + length])
        offset += length
        if tag in _VR and tag != Tag.CommandGroupLength:  # the length is derived, not kept
            command[tag] = _decode_value(tag, raw)
    return command


# Every request names its SOP class and its message ID; every response the message it
# answers and its status.
_RQ = (Tag.AffectedSOPClassUID, Tag.MessageID)
_RSP = (Tag.MessageIDBeingRespondedTo, Tag.Status)

#: The elements each kind of command must carry (PS3.7 sections 9.3.1 - 9.3.5).
REQUIRED: Mapping[CommandField, tuple[Tag, ...]] = MappingProxyType(
    {
        CommandField.C_ECHO_RQ: _RQ,
        CommandField.C_ECHO_RSP: _RSP,
        CommandField.C_STORE_RQ: (*_RQ, Tag.Priority, Tag.AffectedSOPInstanceUID),
        CommandField.C_STORE_RSP: _RSP,
        CommandField.C_FIND_RQ: (*_RQ, Tag.Priority),
        CommandField.C_FIND_RSP: _RSP,
        CommandField.C_MOVE_RQ: (*_RQ, Tag.Priority, Tag.MoveDestination),
        CommandField.C_MOVE_RSP: _RSP,
        CommandField.C_GET_RQ: (*_RQ, Tag.Priority),
        CommandField.C_GET_RSP: _RSP,
        CommandField.C_CANCEL_RQ: (Tag.MessageIDBeingRespondedTo,),
    }
)


def command_field(command: CommandSet) -> CommandField:
    """The command's kind, checking that every element it requires is present."""
    raw = command.get(Tag.CommandField)
    if not isinstance(raw, int):
        raise CommandError("command set has no (0000,0100) CommandField", Tag.CommandField)
    try:
        field = CommandField(raw)
    except ValueError:
        raise CommandError(f"unknown CommandField 0x{raw:04X}", Tag.CommandField) from None
    missing = [t for t in REQUIRED[field] if t not in command]
    if missing:
        names = ", ".join(_tag_name(t) for t in missing)
        raise CommandError(f"{field.name} lacks required element(s) {names}", missing[0])
    if Tag.CommandDataSetType not in command:
        raise CommandError(
            f"{field.name} lacks (0000,0800) CommandDataSetType", Tag.CommandDataSetType
        )
    return field


def number(command: CommandSet, tag: Tag, default: int | None = None) -> int:
    """A US/UL element's value (``default`` when absent); CommandError if it is not a number."""
    value = command.get(tag, default)
    if not isinstance(value, int):
        raise CommandError(f"{_tag_name(tag)} is missing or not a number: {value!r}", tag)
    return value


def answered_status(command: CommandSet) -> AnsweredStatus:
    """A response's Status with its Error Comment, if the peer gave one (an LO: the first 64
    characters, padding stripped; the peer's text, to be escaped wherever it is shown)."""
    comment = command.get(Tag.ErrorComment)
    said = comment[:64] if isinstance(comment, str) and comment else None
    return AnsweredStatus(number(command, Tag.Status), said)


def has_dataset(command: CommandSet) -> bool:
    """Whether a data set follows this command (PS3.7 E.1: any value but 0x0101)."""
    return command.get(Tag.CommandDataSetType, NO_DATASET) != NO_DATASET
