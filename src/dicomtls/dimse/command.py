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


def _encode_value(tag: int, value: Value) -> bytes:
    vr = _VR.get(tag)
    if vr is None:
        raise CommandError(f"cannot encode unknown command element {_tag_name(tag)}", tag)
    if vr == "US":
        if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            raise CommandError(f"{_tag_name(tag)} must be an integer 0..65535, not {value!r}", tag)
        return struct.pack("<H", value)
    if vr == "UL":
        assert isinstance(value, int)
        return struct.pack("<I", value)
    if vr == "AT":
        if isinstance(value, int):
            value = (value,)
        assert isinstance(value, tuple)
        return b"".join(struct.pack("<HH", t >> 16, t & 0xFFFF) for t in value)
    if not isinstance(value, str):
        raise CommandError(f"{_tag_name(tag)} must be text, not {type(value).__name__}", tag)
    raw = value.encode("ascii", errors="strict")
    if len(raw) % 2:
        raw += b"\x00" if vr == "UI" else b" "
    return raw


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
    if vr in ("US", "UL", "AT"):
        size = {"US": 2, "UL": 4, "AT": 4}[vr]
        if len(raw) != size and not (vr == "AT" and len(raw) % 4 == 0 and raw):
            raise CommandError(
                f"{_tag_name(tag)} has length {len(raw)}, but its VR {vr} needs {size}", tag
            )
        if vr == "US":
            return int(struct.unpack("<H", raw)[0])
        if vr == "UL":
            return int(struct.unpack("<I", raw)[0])
        pairs = struct.iter_unpack("<HH", raw)
        return tuple((g << 16) | e for g, e in pairs)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise CommandError(f"{_tag_name(tag)} is not ASCII text", tag) from None
    return text.rstrip("\x00 ").lstrip(" ") if vr != "UI" else text.rstrip("\x00 ")


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


#: The elements each kind of command must carry (PS3.7 sections 9.3.1 - 9.3.5).
REQUIRED: Mapping[CommandField, tuple[Tag, ...]] = MappingProxyType(
    {
        CommandField.C_ECHO_RQ: (Tag.AffectedSOPClassUID, Tag.MessageID),
        CommandField.C_ECHO_RSP: (Tag.MessageIDBeingRespondedTo, Tag.Status),
        CommandField.C_STORE_RQ: (
            Tag.AffectedSOPClassUID,
            Tag.MessageID,
            Tag.Priority,
            Tag.AffectedSOPInstanceUID,
        ),
        CommandField.C_STORE_RSP: (Tag.MessageIDBeingRespondedTo, Tag.Status),
        CommandField.C_FIND_RQ: (Tag.AffectedSOPClassUID, Tag.MessageID, Tag.Priority),
        CommandField.C_FIND_RSP: (Tag.MessageIDBeingRespondedTo, Tag.Status),
        CommandField.C_MOVE_RQ: (
            Tag.AffectedSOPClassUID,
            Tag.MessageID,
            Tag.Priority,
            Tag.MoveDestination,
        ),
        CommandField.C_MOVE_RSP: (Tag.MessageIDBeingRespondedTo, Tag.Status),
        CommandField.C_GET_RQ: (Tag.AffectedSOPClassUID, Tag.MessageID, Tag.Priority),
        CommandField.C_GET_RSP: (Tag.MessageIDBeingRespondedTo, Tag.Status),
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


def has_dataset(command: CommandSet) -> bool:
    """Whether a data set follows this command (PS3.7 E.1: any value but 0x0101)."""
    return command.get(Tag.CommandDataSetType, NO_DATASET) != NO_DATASET
