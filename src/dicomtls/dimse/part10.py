"""DICOM Part 10 files (PS3.10) as streams: read the header, then the data set in blocks.

A C-STORE SCU needs only the file meta information (SOP class and instance, the
transfer syntax) and the byte offset where the data set starts; the data set
itself goes to the network block by block, never loaded whole. A storage SCP
writes the same header in front of the bytes it receives.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dicomtls.buffers import BufferPool
from dicomtls.errors import DicomTLSError
from dicomtls.ul._wire import is_uid

__all__ = [
    "LONG_VRS",
    "Part10Error",
    "Part10Header",
    "encode_file_header",
    "iter_blocks",
    "read_header",
]

BLOCK_SIZE = 1 << 20  # 1 MiB reads: few syscalls, bounded memory
#: Read blocks, used again once nothing views them: two per file being sent, as the
#: PDV fragmenter holds the last PDV of one block while the next is read.
_BLOCKS = BufferPool(smallest=64 << 10, largest=16 << 20, budget=16 << 20)

_PREAMBLE = 128
_PREFIX = b"DICM"
_META_READ = 4096  # one read holds the file meta group of almost every file
_SHORT = struct.Struct("<HH2sH")  # tag, VR, 2-byte length (explicit VR)
_LONG = struct.Struct("<HH2s2xI")  # tag, VR, reserved, 4-byte length
_IMPLICIT = struct.Struct("<HHI")
#: Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 Table 7.1-1).
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_WANTED = {
    0x0002: "MediaStorageSOPClassUID",
    0x0003: "MediaStorageSOPInstanceUID",
    0x0010: "TransferSyntaxUID",
}


class Part10Error(DicomTLSError, ValueError):
    """A file that is not a readable DICOM Part 10 file."""


@dataclass(frozen=True)
class Part10Header:
    """What a sender needs from a Part 10 file, without its data set."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    dataset_offset: int
    dataset_length: int


def read_header(path: Path) -> Part10Header:
    """Read the preamble and file meta group (PS3.10 7.1) only; Part10Error for non-DICOM files.

    The group is parsed here rather than by pydicom: a sender reads it once per object
    sent, and it is a handful of explicit-VR elements.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(_PREAMBLE + len(_PREFIX) + _META_READ)
            if len(head) < _PREAMBLE + len(_PREFIX) or head[_PREAMBLE : _PREAMBLE + 4] != _PREFIX:
                raise Part10Error(
                    f"{path}: not a DICOM Part 10 file (no 'DICM' after the preamble)"
                )
            values, length = _file_meta(head, _PREAMBLE + len(_PREFIX), handle, path)
            size = handle.seek(0, 2)
    except OSError as exc:
        raise Part10Error(f"{path}: cannot read ({exc.strerror})") from None
    _check_meta(values, path)
    return Part10Header(
        path=path,
        sop_class_uid=values[0x0002],
        sop_instance_uid=values[0x0003],
        transfer_syntax_uid=values[0x0010],
        dataset_offset=length,
        dataset_length=size - length,
    )


def _check_meta(values: dict[int, str], path: Path) -> None:
    """The three UIDs a C-STORE sends must be there and be UIDs: a file whose meta names
    no SOP class cannot be proposed, and is skipped like a file that is not DICOM."""
    missing = [name for element, name in _WANTED.items() if not values.get(element)]
    if missing:
        raise Part10Error(f"{path}: file meta information lacks {', '.join(missing)}")
    for element, name in _WANTED.items():
        if not is_uid(values[element]):
            raise Part10Error(
                f"{path}: file meta information has {name} {values[element]!r}, which is not a UID"
            )


def _file_meta(head: bytes, pos: int, handle: BinaryIO, path: Path) -> tuple[dict[int, str], int]:
    """The UIDs of group 0002 and the offset where the data set starts (at the end of
    the file when the data set is empty)."""
    values: dict[int, str] = {}
    buffer = bytearray(head)
    while _fill(buffer, handle, pos + 8):
        group, element = _SHORT.unpack_from(buffer, pos)[:2]
        if group != 0x0002:
            break
        start, length = _value_span(buffer, pos, handle, path)
        end = start + length
        if not _fill(buffer, handle, end):
            raise Part10Error(f"{path}: damaged file meta information (cut off in group 0002)")
        if element in _WANTED:
            values[element] = bytes(buffer[start:end]).decode("ascii", "replace").strip("\0 ")
        pos = end
    return values, pos


def _value_span(buffer: bytearray, pos: int, handle: BinaryIO, path: Path) -> tuple[int, int]:
    """Where the value of the element at ``pos`` starts, and its length.

    Group 0002 is explicit VR little endian (PS3.10 7.1); a writer that used implicit
    VR is read too, as other toolkits do.
    """
    vr, short = _SHORT.unpack_from(buffer, pos)[2:]
    if not (vr.isalpha() and vr.isupper()):
        start, length = pos + 8, _IMPLICIT.unpack_from(buffer, pos)[2]
    elif vr not in LONG_VRS:
        start, length = pos + 8, short
    elif _fill(buffer, handle, pos + 12):
        start, length = pos + 12, _LONG.unpack_from(buffer, pos)[3]
    else:
        raise Part10Error(f"{path}: damaged file meta information (cut off in group 0002)")
    if length == 0xFFFFFFFF:
        raise Part10Error(f"{path}: damaged file meta information (undefined length in group 0002)")
    return start, length


def _fill(buffer: bytearray, handle: BinaryIO, size: int) -> bool:
    """Read on into ``buffer`` until it holds ``size`` bytes; False when the file is shorter."""
    if len(buffer) < size:
        buffer += _more(handle, size - len(buffer))
    return len(buffer) >= size


def _more(handle: BinaryIO, at_least: int) -> bytes:
    return handle.read(max(at_least, _META_READ))


def iter_blocks(header: Part10Header, block_size: int = BLOCK_SIZE) -> Iterator[memoryview]:
    """The data set's bytes in blocks, reusing no buffer a consumer may still hold.

    Read into pooled buffers rather than a new ``bytes`` per block: no allocation, and no
    page faults when the allocator hands megabytes back to the kernel and takes them again.
    """
    with header.path.open("rb", buffering=0) as handle:
        handle.seek(header.dataset_offset)
        while True:
            buffer = _BLOCKS.take(block_size)
            count = handle.readinto(buffer)
            if not count:
                _BLOCKS.give_back(buffer)
                return
            block = memoryview(buffer)[:count]
            # Given back while the block is out: the pool hands it out again only once the
            # block and every PDV sliced from it are gone (sent, or dropped by the consumer).
            _BLOCKS.give_back(buffer)
            yield block


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr in LONG_VRS:
        return _LONG.pack(0x0002, element, vr, len(value)) + value
    return _SHORT.pack(0x0002, element, vr, len(value)) + value


def _padded(text: str, pad: bytes) -> bytes:
    value = text.encode("ascii")
    return value + pad if len(value) % 2 else value


def encode_file_header(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    implementation_class_uid: str,
    implementation_version_name: str | None = None,
    source_ae_title: str | None = None,
) -> bytes:
    """The 128-byte preamble, ``DICM`` and the file meta group (PS3.10 7.1) for a received
    data set: explicit VR little endian, UIDs padded with NUL, text with a space."""
    elements = [
        _meta_element(0x0001, b"OB", b"\x00\x01"),
        _meta_element(0x0002, b"UI", _padded(sop_class_uid, b"\0")),
        _meta_element(0x0003, b"UI", _padded(sop_instance_uid, b"\0")),
        _meta_element(0x0010, b"UI", _padded(transfer_syntax_uid, b"\0")),
        _meta_element(0x0012, b"UI", _padded(implementation_class_uid, b"\0")),
    ]
    if implementation_version_name:
        elements.append(_meta_element(0x0013, b"SH", _padded(implementation_version_name, b" ")))
    if source_ae_title:
        elements.append(_meta_element(0x0016, b"AE", _padded(source_ae_title, b" ")))
    body = b"".join(elements)
    group_length = _SHORT.pack(0x0002, 0x0000, b"UL", 4) + struct.pack("<I", len(body))
    return bytes(_PREAMBLE) + _PREFIX + group_length + body
