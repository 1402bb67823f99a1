"""The streaming data-set check, against data sets pydicom wrote, cut at every byte.

pydicom is the reference here: what it writes must scan, in any fragmenting; what the
scan keeps must decode to the values pydicom reads back; and everything cut short or
mangled must be refused with a reason.
"""

from __future__ import annotations

import tracemalloc
import zlib
from pathlib import Path

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_charset_files
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from dicomtls.dimse.dataset_scan import DatasetScanError, DatasetScanner
from dicomtls.dimse.part10 import read_header

KEEP = [
    Tag(k)
    for k in ("SpecificCharacterSet", "SOPInstanceUID", "PatientName", "PatientID", "StudyDate")
]


def _dataset(*, undefined: bool = False) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.1432.99.1"
    ds.StudyDate = "20261201"
    ds.PatientName = "Müller^Jörg"
    ds.PatientID = "P-1"
    inner = Dataset()
    inner.CodeValue = "9"
    item = Dataset()
    item.CodeValue = "123"
    item.CodeMeaning = "a code"
    item.ConceptCodeSequence = Sequence([inner])
    ds.ProcedureCodeSequence = Sequence([item, Dataset()])
    if undefined:
        ds.ProcedureCodeSequence.is_undefined_length = True
        item.ConceptCodeSequence.is_undefined_length = True
        for each in (item, inner, ds.ProcedureCodeSequence[1]):
            each.is_undefined_length_sequence_item = True
    ds.Rows, ds.Columns, ds.BitsAllocated = 4, 4, 16
    ds.PixelData = bytes(range(32))
    return ds


def _encode(ds: Dataset, syntax: str) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian = syntax != ExplicitVRBigEndian
    buffer.is_implicit_VR = syntax == ImplicitVRLittleEndian
    write_dataset(buffer, ds)
    raw = buffer.getvalue()
    if syntax == DeflatedExplicitVRLittleEndian:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        raw = compressor.compress(raw) + compressor.flush()
    return bytes(raw)


def _scan(raw: bytes, syntax: str, pieces: list[int] | None = None) -> DatasetScanner:
    scanner = DatasetScanner(syntax, KEEP)
    position = 0
    for size in pieces or [len(raw)]:
        scanner.feed(raw[position : position + size])
        position += size
    scanner.feed(raw[position:])
    return scanner


SYNTAXES = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
]


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined-lengths"])
def test_what_pydicom_writes_scans_and_keeps_what_pydicom_reads(
    syntax: str, undefined: bool
) -> None:
    original = _dataset(undefined=undefined)
    raw = _encode(original, syntax)
    scanned = _scan(raw, syntax).finish()
    assert sorted(scanned.kept) == sorted(KEEP)
    texts = scanned.texts(["PatientName", "SOPInstanceUID", "StudyDate", "SOPClassUID"])
    assert texts == {
        "PatientName": "Müller^Jörg",  # decoded with its ISO_IR 100 character set
        "SOPInstanceUID": original.SOPInstanceUID,
        "StudyDate": "20261201",
    }  # only what was asked for is kept: not the SOP class
    assert scanned.text(0x00080016) == ""
    assert scanned.transfer_syntax == syntax


@pytest.mark.parametrize("path", get_charset_files("*.dcm"), ids=lambda p: Path(p).name)
def test_names_in_every_character_set_pydicom_ships_decode_as_pydicom_reads_them(path: str) -> None:
    """Real files in 14 character sets, ISO 2022 escapes (Japanese, Korean, Chinese) included."""
    header = read_header(Path(path))
    scanner = DatasetScanner(
        header.transfer_syntax_uid, [Tag("PatientName"), Tag("SpecificCharacterSet")]
    )
    scanner.feed(Path(path).read_bytes()[header.dataset_offset :])
    expected = str(pydicom.dcmread(path).get("PatientName", ""))
    assert scanner.finish().texts(["PatientName"]).get("PatientName", "") == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), max_size=40), st.sampled_from(SYNTAXES))
def test_fragment_boundaries_do_not_change_the_result(pieces: list[int], syntax: str) -> None:
    raw = _encode(_dataset(undefined=True), syntax)
    whole = _scan(raw, syntax).finish()
    assert _scan(raw, syntax, pieces).finish() == whole


LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def _top_level_boundaries(raw: bytes, syntax: str) -> set[int]:
    """Offsets where pydicom sees a top-level element begin, and the end of the data set."""
    implicit = syntax == ImplicitVRLittleEndian
    starts: set[int] = set()
    # pydicom's annotation asks for a BinaryIO, which its own DicomBytesIO is not
    dataset = read_dataset(DicomBytesIO(raw), implicit, True)  # type: ignore[arg-type]
    for element in dataset.values():
        assert isinstance(element, RawDataElement)  # read, not yet converted
        header = 8 if implicit or element.VR not in LONG_VRS else 12
        starts.add(element.value_tell - header)
    return starts | {len(raw)}


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_a_data_set_cut_anywhere_but_between_top_level_elements_is_refused(syntax: str) -> None:
    raw = _encode(_dataset(undefined=True), syntax)
    accepted = set()
    for cut in range(1, len(raw) + 1):
        try:
            scanner = DatasetScanner(syntax)
            scanner.feed(raw[:cut])
            scanner.finish()
        except DatasetScanError:
            continue
        accepted.add(cut)
    # A cut between two top-level elements leaves a shorter, valid data set: the end of
    # the message (the last PDV) is what says the data set is whole, not its contents.
    assert accepted == _top_level_boundaries(raw, syntax) - {0}


BROKEN = {
    "unknown VR": b"\x08\x00\x18\x00XX\x04\x001.2.",
    "item outside a sequence": b"\xfe\xff\x00\xe0\x00\x00\x00\x00",
    "sequence delimiter with nothing open": b"\xfe\xff\xdd\xe0\x00\x00\x00\x00",
    "unknown delimiter": b"\x08\x00\x06\x11SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x01\xe0\x00\x00\x00\x00",
    "element inside a sequence, not an item": b"\x08\x00\x06\x11SQ\x00\x00\x08\x00\x00\x00\x10\x00\x10\x00PN\x00\x00",
    "element running past its item": (
        b"\x08\x00\x06\x11SQ\x00\x00\x12\x00\x00\x00"  # sequence of 18 bytes
        b"\xfe\xff\x00\xe0\x0a\x00\x00\x00"  # an item of 10 bytes
        b"\x08\x00\x00\x01SH\x04\x00ABCD"  # a 12-byte element inside it
    ),
    "undefined length on a text VR": b"\x10\x00\x10\x00UT\x00\x00\xff\xff\xff\xff",
    "delimiter with a length": b"\x08\x00\x06\x11SQ\x00\x00\xff\xff\xff\xff\xfe\xff\xdd\xe0\x04\x00\x00\x00",
    "sequence never closed": b"\x08\x00\x06\x11SQ\x00\x00\xff\xff\xff\xff",
    "value cut short": b"\x10\x00\x10\x00PN\x08\x00Doe",
    "header cut short": b"\x10\x00\x10\x00PN",
}


@pytest.mark.parametrize("name", BROKEN)
def test_broken_encodings_are_refused_with_a_reason(name: str) -> None:
    scanner = DatasetScanner(ExplicitVRLittleEndian)
    with pytest.raises(DatasetScanError) as raised:
        scanner.feed(BROKEN[name])
        scanner.finish()
    assert str(raised.value)
    with pytest.raises(DatasetScanError):  # and it stays broken
        scanner.finish()


def test_a_deflated_data_set_that_does_not_inflate_is_refused() -> None:
    scanner = DatasetScanner(DeflatedExplicitVRLittleEndian)
    with pytest.raises(DatasetScanError, match="does not inflate"):
        scanner.feed(b"\xff\xff\xff\xff not deflate")
        scanner.finish()


def _deflated_zeros(size: int) -> bytes:
    """A deflated data set of one OB element holding ``size`` zero bytes: a deflate bomb."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    header = b"\x09\x00\x10\x10OB\x00\x00" + size.to_bytes(4, "little")  # (0009,1010) OB
    out = [packer.compress(header)]
    zeros = bytes(1 << 20)
    for _ in range(size >> 20):
        out.append(packer.compress(zeros))
    out.append(packer.flush())
    return b"".join(out)


def test_a_deflate_bomb_is_refused_before_it_is_inflated() -> None:
    bomb = _deflated_zeros(256 << 20)  # 256 MiB of zeros in a few hundred kilobytes
    scanner = DatasetScanner(DeflatedExplicitVRLittleEndian)
    with pytest.raises(DatasetScanError, match="refused as a deflate bomb"):
        for start in range(0, len(bomb), 16 << 10):
            scanner.feed(bomb[start : start + (16 << 10)])
    assert len(bomb) < 1 << 20
    assert scanner.inflated < 32 << 20  # stopped soon after the 16 MiB floor


def test_a_well_compressed_deflated_data_set_within_the_ratio_is_scanned() -> None:
    dataset = _deflated_zeros(4 << 20)  # 4 MiB: under the floor, whatever its ratio
    scanner = DatasetScanner(DeflatedExplicitVRLittleEndian)
    scanner.feed(dataset)
    assert scanner.finish().length == 12 + (4 << 20)


def test_encapsulated_pixel_data_is_stepped_over_fragment_by_fragment() -> None:
    ds = _dataset()
    del ds.PixelData
    ds.add_new("PixelData", "OB", b"")
    header = _encode(ds, ExplicitVRLittleEndian)[:-12]  # everything up to the empty pixel data
    fragments = b"".join(
        b"\xfe\xff\x00\xe0" + len(f).to_bytes(4, "little") + f
        for f in (b"", b"\xff\xd8" * 50, b"\x01\x02")
    )
    pixels = (
        b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff"
        + fragments
        + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    )
    scanned = _scan(header + pixels, JPEGBaseline8Bit, [7] * 60).finish()
    assert scanned.length == len(header + pixels)
    with pytest.raises(DatasetScanError, match="ends inside the fragments"):
        _scan(header + pixels[:-8], JPEGBaseline8Bit).finish()


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
)
def test_encapsulated_pixel_data_in_a_native_syntax_is_refused(syntax: str) -> None:
    """Only the compressed syntaxes encapsulate (PS3.5 A.4): elsewhere Pixel Data has a
    defined length, in implicit VR too, where an undefined length would read as a sequence."""
    little = syntax != ExplicitVRBigEndian
    tag = b"\xe0\x7f\x10\x00" if little else b"\x7f\xe0\x00\x10"
    vr = b"" if syntax == ImplicitVRLittleEndian else b"OB\x00\x00"
    item = (b"\xfe\xff\x00\xe0" if little else b"\xff\xfe\xe0\x00") + bytes(4)
    pixels = tag + vr + b"\xff\xff\xff\xff" + item
    with pytest.raises(DatasetScanError, match=r"Pixel Data \(7FE0,0010\) .* native"):
        _scan(pixels, syntax)


def test_an_un_sequence_of_undefined_length_is_read_as_implicit_vr() -> None:
    # PS3.5 6.2.2: a UN value of undefined length is a sequence encoded in implicit VR LE.
    inner = b"\x08\x00\x00\x01\x04\x00\x00\x00ABCD"  # (0008,0100), implicit VR, 4 bytes
    item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + inner + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    element = (
        b"\x09\x00\x10\x10UN\x00\x00\xff\xff\xff\xff" + item + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    )
    after = b"\x10\x00\x20\x00LO\x02\x00P1"
    scanned = _scan(element + after, ExplicitVRLittleEndian).finish()
    assert scanned.kept[0x00100020] == ("LO", b"P1")


def test_a_huge_value_costs_no_memory() -> None:
    scanner = DatasetScanner(ExplicitVRLittleEndian, KEEP)
    scanner.feed(b"\xe0\x7f\x10\x00OW\x00\x00" + (64 << 20).to_bytes(4, "little"))
    block = bytes(1 << 20)
    tracemalloc.start()
    for _ in range(64):
        scanner.feed(block)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert scanner.finish().length == 12 + (64 << 20)
    assert peak < 64 << 10  # 64 MiB of pixel data went by; nothing of it was kept


def test_values_too_large_to_be_identifiers_are_not_kept() -> None:
    big = b"x" * (70 << 10)
    raw = b"\x10\x00\x20\x00UT\x00\x00" + len(big).to_bytes(4, "little") + big
    scanned = DatasetScanner(ExplicitVRLittleEndian, [0x00100020])
    scanned.feed(raw)
    assert scanned.finish().kept == {}
