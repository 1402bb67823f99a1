"""DICOM Part 10 files (PS3.10) as streams: read the header, then the data set in blocks.

A C-STORE SCU needs only the file meta information (SOP class and instance, the
transfer syntax) and the byte offset where the data set starts; the data set
itself goes to the network block by block, never loaded whole. A storage SCP
writes the same header in front of the bytes it receives.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

__all__ = ["Part10Error", "Part10Header", "encode_file_header", "iter_blocks", "read_header"]

BLOCK_SIZE = 1 << 20  # 1 MiB reads: few syscalls, bounded memory


class Part10Error(ValueError):
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
    """Read the preamble and file meta group only; raises Part10Error for non-DICOM files."""
    try:
        with path.open("rb") as handle:
            read_preamble(handle, force=False)
            meta = _read_file_meta_info(handle)
            offset = handle.tell()
            size = handle.seek(0, io.SEEK_END)
    except InvalidDicomError as exc:
        raise Part10Error(f"{path}: not a DICOM Part 10 file ({exc})") from None
    except OSError as exc:
        raise Part10Error(f"{path}: cannot read ({exc.strerror})") from None
    except Exception as exc:  # pydicom raises many kinds for a damaged header
        raise Part10Error(f"{path}: damaged file meta information ({exc})") from None
    try:
        return Part10Header(
            path=path,
            sop_class_uid=str(meta.MediaStorageSOPClassUID),
            sop_instance_uid=str(meta.MediaStorageSOPInstanceUID),
            transfer_syntax_uid=str(meta.TransferSyntaxUID),
            dataset_offset=offset,
            dataset_length=size - offset,
        )
    except AttributeError as exc:
        raise Part10Error(f"{path}: file meta information lacks {exc.name}") from None


def iter_blocks(header: Part10Header, block_size: int = BLOCK_SIZE) -> Iterator[memoryview]:
    """The data set's bytes in blocks, reusing no buffer a consumer may still hold."""
    with header.path.open("rb", buffering=0) as handle:
        handle.seek(header.dataset_offset)
        while True:
            block = handle.read(block_size)
            if not block:
                return
            yield memoryview(block)


def encode_file_header(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    implementation_class_uid: str,
    implementation_version_name: str | None = None,
    source_ae_title: str | None = None,
) -> bytes:
    """The 128-byte preamble, ``DICM`` and the file meta group for a received data set."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    meta.ImplementationClassUID = UID(implementation_class_uid)
    if implementation_version_name:
        meta.ImplementationVersionName = implementation_version_name
    if source_ae_title:
        meta.SourceApplicationEntityTitle = source_ae_title
    buffer = DicomBytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return bytes(buffer.getvalue())
