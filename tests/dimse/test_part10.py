"""Part 10 headers read and written by hand, checked byte for byte against pydicom."""

from __future__ import annotations

import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicomtls.dimse.part10 import Part10Error, encode_file_header, iter_blocks, read_header

CT = "1.2.840.10008.5.1.4.1.1.2"


def _pydicom_header(
    sop_class: str, sop_instance: str, syntax: str, impl: str, version: str | None, ae: str | None
) -> bytes:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = UID(impl)
    if version:
        meta.ImplementationVersionName = version
    if ae:
        meta.SourceApplicationEntityTitle = ae
    buffer = DicomBytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=version is not None)
    return bytes(buffer.getvalue())


@pytest.mark.parametrize("instance", ["1.2.3.4", "1.2.3.45", generate_uid()])  # even, odd lengths
@pytest.mark.parametrize(
    ("version", "ae"), [("DICOMTLS_010", "CT1"), ("ODD_NAME1", "SCANNER"), ("V", None)]
)
def test_the_file_header_is_what_pydicom_writes(
    instance: str, version: str, ae: str | None
) -> None:
    args = (CT, instance, ExplicitVRLittleEndian, "1.2.826.0.1.3680043.10.1432.1")
    assert encode_file_header(*args, version, ae) == _pydicom_header(*args, version, ae)


def _write(path: Path, syntax: str = ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CT, generate_uid()
    ds.PatientName = "Doe^Jane"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.save_as(path, enforce_file_format=True)
    return ds


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_read_header_agrees_with_pydicom(tmp_path: Path, syntax: str) -> None:
    path = tmp_path / "a.dcm"
    ds = _write(path, syntax)
    header = read_header(path)
    assert (header.sop_class_uid, header.sop_instance_uid, header.transfer_syntax_uid) == (
        CT,
        ds.SOPInstanceUID,
        syntax,
    )
    with path.open("rb") as handle:
        pydicom.filereader.read_preamble(handle, False)
        pydicom.filereader._read_file_meta_info(handle)
        assert header.dataset_offset == handle.tell()
    data = b"".join(bytes(b) for b in iter_blocks(header, 7))
    assert len(data) == header.dataset_length
    assert pydicom.dcmread(path).PatientName == "Doe^Jane"


def _meta(
    elements: list[tuple[int, bytes, bytes]], *, group_length: bool, implicit: bool = False
) -> bytes:
    body = b""
    for element, vr, value in elements:
        if implicit:
            body += struct.pack("<HHI", 2, element, len(value)) + value
        elif vr == b"OB":
            body += struct.pack("<HH2s2xI", 2, element, vr, len(value)) + value
        else:
            body += struct.pack("<HH2sH", 2, element, vr, len(value)) + value
    if group_length:
        body = struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(body)) + body
    return b"\x00" * 128 + b"DICM" + body


UIDS = [
    (0x0001, b"OB", b"\x00\x01"),
    (0x0002, b"UI", b"1.2.840.10008.5.1.4.1.1.2\x00"),
    (0x0003, b"UI", b"1.2.3.4 "),
    (0x0010, b"UI", b"1.2.840.10008.1.2.1\x00"),
]
DATASET = b"\x10\x00\x10\x00PN\x08\x00Doe^Jane"


@pytest.mark.parametrize(
    "meta",
    [
        _meta(UIDS, group_length=True),
        _meta(UIDS, group_length=False),  # group length is optional in practice
        _meta(UIDS, group_length=False, implicit=True),  # some writers got the VR wrong
        _meta([*UIDS, (0x0100, b"UI", b"9" * 6000)], group_length=True),  # longer than one read
    ],
    ids=["group-length", "no-group-length", "implicit-vr", "long-meta"],
)
def test_read_header_takes_what_other_writers_write(tmp_path: Path, meta: bytes) -> None:
    path = tmp_path / "x.dcm"
    path.write_bytes(meta + DATASET)
    header = read_header(path)
    assert header.sop_instance_uid == "1.2.3.4"  # padding stripped
    assert header.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert header.dataset_offset == len(meta)
    assert header.dataset_length == len(DATASET)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"just text, not DICOM", "not a DICOM Part 10 file"),
        (b"\x00" * 128 + b"DICX" + b"\x00" * 20, "not a DICOM Part 10 file"),
        (_meta(UIDS[:3], group_length=True) + DATASET, "lacks TransferSyntaxUID"),
        (_meta(UIDS, group_length=True)[:-8], "cut off in group 0002"),
        (_meta(UIDS[:1], group_length=False) + b"\x02\x00\x02\x00UI\xff\xff", "cut off"),
        (_meta(UIDS[:1], group_length=False)[: 128 + 4 + 8], "cut off"),  # in an OB header
        # pydicom's meta_missing_tsyntax.dcm: there, but empty (it cannot be proposed)
        (_meta([UIDS[0], (0x0002, b"UI", b""), *UIDS[2:]], group_length=True), "lacks Media"),
        (
            _meta([UIDS[0], (0x0002, b"UI", b"CT Image"), *UIDS[2:]], group_length=True),
            "MediaStorageSOPClassUID 'CT Image', which is not a UID",
        ),
    ],
    ids=[
        "text",
        "no-dicm",
        "no-syntax",
        "cut-off",
        "length-beyond-end",
        "long-header-cut",
        "empty-sop-class",
        "sop-class-not-a-uid",
    ],
)
def test_non_dicom_and_damaged_headers_are_named(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.dcm"
    path.write_bytes(content)
    with pytest.raises(Part10Error, match=message) as raised:
        read_header(path)
    assert str(path) in str(raised.value)


def test_an_unreadable_file_is_a_part10_error(tmp_path: Path) -> None:
    with pytest.raises(Part10Error, match="cannot read"):
        read_header(tmp_path / "missing.dcm")
