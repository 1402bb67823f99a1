"""What a store folder's file says it holds, for a store without an index (C-GET --out)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from dicomtls.dimse.part10 import encode_file_header
from dicomtls.node.held_files import file_identity
from dicomtls.node.store_scp import IDENTITY

from .test_storage import CT, SERIES_UID, STUDY_UID, _make_file


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def test_the_identity_of_an_object_is_read_as_it_was_received(tmp_path: Path) -> None:
    path = tmp_path / "ct.dcm"
    _make_file(path, pixels=1000)
    assert file_identity(path, IDENTITY) == {
        "PatientID": "P1",
        "StudyInstanceUID": STUDY_UID,
        "SeriesInstanceUID": SERIES_UID,
        "SOPClassUID": CT,
    }


def test_nothing_there_is_none_and_what_is_no_dicom_object_holds_nothing(tmp_path: Path) -> None:
    assert file_identity(tmp_path / "absent.dcm", IDENTITY) is None
    (tmp_path / "notes.dcm").write_text("the user's notes")
    os.mkfifo(tmp_path / "fifo.dcm")  # opened, it would wait for a writer for ever
    (tmp_path / "folder.dcm").mkdir()
    for name in ("notes.dcm", "fifo.dcm", "folder.dcm"):
        assert file_identity(tmp_path / name, IDENTITY) == {}, name


def test_a_sequence_of_a_hundred_thousand_items_is_walked_not_built(tmp_path: Path) -> None:
    """A sender's object may put 100,000 items before the values wanted (pydicom built them
    all: 5 s and 130 MiB for this 2.6 MB file); the scan steps over them, and stops past the
    values wanted, before the pixel data it never reads."""
    item = (
        struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        + _element(0x0008, 0x0100, b"SH", b"AB")
        + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    )
    sequence = struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF)
    data_set = (
        _element(0x0008, 0x0016, b"UI", CT.encode() + b"\0")
        + sequence
        + item * 100_000
        + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        + _element(0x0010, 0x0020, b"LO", b"P1")
        + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 1 << 30)  # a gigabyte never sent
    )
    path = tmp_path / "hostile.dcm"
    path.write_bytes(encode_file_header(CT, "1.2.3", "1.2.840.10008.1.2.1", "1.2.3.4") + data_set)
    assert file_identity(path, IDENTITY) == {"PatientID": "P1", "SOPClassUID": CT}
