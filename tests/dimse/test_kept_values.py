"""A value the scanner was asked to keep but will not (longer than MAX_KEPT) is reported, never
passed off as empty: issue 13 found a 70,000-byte PatientID indexed as ""."""

from __future__ import annotations

import struct

import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomtls.dimse.dataset_scan import MAX_KEPT, DatasetScanner

PATIENT_ID, PATIENT_NAME, STUDY_DATE = 0x00100020, 0x00100010, 0x00080020


def _implicit(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def _explicit_long(tag: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr, 0, len(value)) + value


def _scan(data: bytes, syntax: str, piece: int) -> DatasetScanner:
    scanner = DatasetScanner(syntax, [PATIENT_ID, PATIENT_NAME, STUDY_DATE])
    for start in range(0, len(data), piece):
        scanner.feed(data[start : start + piece])
    return scanner


@pytest.mark.parametrize("piece", [1 << 20, 4096, 7])
def test_a_patient_id_of_70000_bytes_is_reported_not_kept(piece: int) -> None:
    """Implicit VR: LO's 64 characters are not enforced by a 2-byte length field there."""
    data = (
        _implicit(STUDY_DATE, b"20260101")
        + _implicit(PATIENT_NAME, b"Doe^Jane")
        + _implicit(PATIENT_ID, b"P" * 70_000)
    )
    scanned = _scan(data, ImplicitVRLittleEndian, piece).finish()
    assert scanned.too_long == {PATIENT_ID: 70_000}
    assert PATIENT_ID not in scanned.kept  # nothing of it held in memory either
    assert scanned.text(PATIENT_NAME) == "Doe^Jane"  # the rest is kept as before
    assert scanned.length == len(data)


def test_the_bound_is_exact_and_holds_in_explicit_vr_too() -> None:
    at_bound = _explicit_long(PATIENT_ID, b"UT", b"1" * MAX_KEPT)
    scanned = _scan(at_bound, ExplicitVRLittleEndian, 65_536).finish()
    assert scanned.too_long == {} and len(scanned.text(PATIENT_ID)) == MAX_KEPT
    over = _explicit_long(PATIENT_ID, b"UN", b"1" * (MAX_KEPT + 1))
    scanned = _scan(over, ExplicitVRLittleEndian, 65_536).finish()
    assert scanned.too_long == {PATIENT_ID: MAX_KEPT + 1} and scanned.text(PATIENT_ID) == ""


def test_long_values_not_asked_for_are_not_reported() -> None:
    data = _implicit(0x00081030, b"d" * 100_000) + _implicit(PATIENT_ID, b"P1")  # StudyDescription
    scanned = _scan(data, ImplicitVRLittleEndian, 1 << 20).finish()
    assert scanned.too_long == {} and scanned.text(PATIENT_ID) == "P1"
