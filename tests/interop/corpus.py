"""The objects the interop suite moves: real encoded files pydicom ships, one per transfer
syntax a modality sends, each copy given fresh UIDs and a non-ASCII patient name.

pydicom's ``data/test_files`` holds real JPEG, JPEG-LS, JPEG 2000, RLE, deflated and big
endian objects made by DCMTK, GDCM and others. Several share a SOP Instance UID, and a
peer keeps one object per UID, so every scenario gets its own copies: new SOP Instance,
Series and Study UIDs, one patient per scenario, whose name needs UTF-8 (ISO_IR 192).
Only non-pixel elements change; the pixel data stays byte for byte what its encoder wrote.

Comparing what arrived with what was sent: the data set bytes (after the file meta
information) must be identical when the syntax was kept, and the decoded pixels equal
when someone converted it; the patient name must survive either way.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomtls.dimse.part10 import read_header
from dicomtls.dimse.transfer_syntax import syntax_name

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
PATIENT_NAME = "Müller^Jürgen=ミュラー^ユルゲン"
CHARSET = "ISO_IR 192"


@dataclass(frozen=True)
class Sample:
    """One kind of object: a label for the table, the shipped file it comes from, its syntax."""

    label: str
    source: str
    syntax: str

    @property
    def lossy(self) -> bool:
        """Lossy pixel data: two decoders may round a sample differently."""
        return self.syntax in LOSSY


LOSSY = frozenset(
    {
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.91",
    }
)

#: Every syntax issue 14 names, from files present in the installed pydicom (listed, never
#: fetched: pydicom's get_testdata_file downloads names it does not have).
SAMPLES: tuple[Sample, ...] = (
    Sample("Explicit VR Little Endian", "MR_small.dcm", "1.2.840.10008.1.2.1"),
    Sample("Implicit VR Little Endian", "MR_small_implicit.dcm", "1.2.840.10008.1.2"),
    Sample("Explicit VR Big Endian", "MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),
    Sample("Deflated Explicit VR Little Endian", "image_dfl.dcm", "1.2.840.10008.1.2.1.99"),
    Sample("JPEG Baseline", "SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50"),
    Sample("JPEG Extended (12 bit)", "JPGExtended.dcm", "1.2.840.10008.1.2.4.51"),
    Sample("JPEG Lossless SV1", "SC_rgb_jpeg_gdcm.dcm", "1.2.840.10008.1.2.4.70"),
    Sample("JPEG-LS Lossless", "MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
    Sample("JPEG-LS Near-Lossless", "JPEGLSNearLossless_16.dcm", "1.2.840.10008.1.2.4.81"),
    Sample("JPEG 2000 Lossless", "MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),
    Sample("JPEG 2000", "JPEG2000.dcm", "1.2.840.10008.1.2.4.91"),
    Sample("RLE Lossless", "MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),
)


@dataclass(frozen=True)
class Item:
    """One prepared copy of a sample, as written for a scenario."""

    sample: Sample
    path: Path
    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class Scenario:
    """The objects of one transfer scenario: one patient, one study, one series."""

    folder: Path
    study_uid: str
    series_uid: str
    patient_id: str
    items: tuple[Item, ...]

    def by_uid(self, sop_instance_uid: str) -> Item:
        return next(i for i in self.items if i.sop_instance_uid == sop_instance_uid)


def prepare(folder: Path, name: str) -> Scenario:
    """Fresh copies of every sample under ``folder``, in one new study of patient ``name``."""
    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    items = []
    for number, sample in enumerate(SAMPLES, start=1):
        ds = pydicom.dcmread(TEST_FILES / sample.source)
        assert ds.file_meta.TransferSyntaxUID == sample.syntax, sample
        uid = generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SeriesNumber, ds.InstanceNumber = 1, number
        ds.SpecificCharacterSet = CHARSET
        ds.PatientName, ds.PatientID = PATIENT_NAME, name
        ds.StudyID, ds.AccessionNumber = "1", name[:16]
        ds.Modality = ds.get("Modality") or "OT"
        path = folder / f"{number:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        items.append(Item(sample, path, str(ds.SOPClassUID), uid))
    return Scenario(folder, study, series, name, tuple(items))


def dataset_bytes(part10: bytes | Path) -> tuple[str, bytes]:
    """(transfer syntax, data set bytes) of a Part 10 file's content or path."""
    if isinstance(part10, bytes):
        ds = pydicom.dcmread(io.BytesIO(part10), stop_before_pixels=True)
        meta_end = _meta_end(part10)
        return str(ds.file_meta.TransferSyntaxUID), part10[meta_end:]
    header = read_header(part10)
    return header.transfer_syntax_uid, part10.read_bytes()[header.dataset_offset :]


def _meta_end(part10: bytes) -> int:
    """Where the data set starts: after the preamble, 'DICM' and the group 2 elements."""
    assert part10[132:138] == b"\x02\x00\x00\x00UL", "file meta without a group length first"
    return 144 + int.from_bytes(part10[140:144], "little")


def decode(part10: bytes | Path) -> Dataset:
    source: Path | io.BytesIO = part10 if isinstance(part10, Path) else io.BytesIO(part10)
    return pydicom.dcmread(source)


@dataclass(frozen=True)
class Comparison:
    """What happened to one object on its way: kept or converted, and whether it survived."""

    sent_syntax: str
    received_syntax: str
    identical: bool
    """The data set bytes are the ones sent."""
    values_equal: bool
    """Every element has the value sent (the encoding may differ: item lengths, a VR); for
    a converted object, every element but those describing the pixels."""
    pixels_equal: bool
    max_difference: int
    name_kept: bool

    @property
    def converted(self) -> bool:
        return self.sent_syntax != self.received_syntax

    def ok(self, sample: Sample, *, re_encoding_peer: bool = False) -> bool:
        """Bit for bit when the syntax was kept (values equal for a peer that re-encodes
        every data set it stores or sends); equal pixels when converted (lossy data decoded
        by two decoders may differ by one in a sample)."""
        if not self.name_kept:
            return False
        if not self.converted:
            return self.identical or (re_encoding_peer and self.values_equal)
        pixels = self.pixels_equal or (sample.lossy and 0 <= self.max_difference <= 1)
        return pixels and self.values_equal

    def describe(self) -> str:
        if not self.converted:
            if self.identical:
                return "identical"
            return "re-encoded, values equal" if self.values_equal else "same syntax, VALUES DIFFER"
        target = syntax_name(self.received_syntax).split(" (")[0].replace("Little Endian", "LE")
        if not self.values_equal:
            pixels = "OTHER VALUES DIFFER"
        elif self.pixels_equal:
            pixels = "pixel-equal"
        elif self.max_difference < 0:
            pixels = "PIXEL SHAPE DIFFERS"
        else:
            pixels = f"pixels within {self.max_difference}"
        return f"converted to {target}, {pixels}"


def compare(sent: Path, received: bytes | Path) -> Comparison:
    """Compare a received object (Part 10 bytes or file) with the file that was sent."""
    sent_syntax, sent_bytes = dataset_bytes(sent)
    got_syntax, got_bytes = dataset_bytes(received)
    original, arrived = decode(sent), decode(received)
    name_kept = str(arrived.PatientName) == str(original.PatientName) == PATIENT_NAME
    if sent_syntax == got_syntax and sent_bytes == got_bytes:
        return Comparison(sent_syntax, got_syntax, True, True, True, 0, name_kept)
    if sent_syntax == got_syntax:
        equal = _values_equal(original, arrived)
        return Comparison(sent_syntax, got_syntax, False, equal, equal, 0, name_kept)
    # Converted: the pixels decode the same, and every other element keeps its value;
    # decoding may change the colour model the pixels are described in, and decoded lossy
    # pixels must say they were lossy (PS3.3 C.7.6.1.1.5), nothing else.
    lossy = sent_syntax in LOSSY
    ignore = DECODING_CHANGES | (LOSSY_MARKS if lossy else frozenset())
    marked = not lossy or arrived.get("LossyImageCompression") == "01"
    values = marked and _values_equal(original, arrived, ignore=ignore)
    a, b = original.pixel_array, arrived.pixel_array
    if a.shape != b.shape:
        return Comparison(sent_syntax, got_syntax, False, values, False, -1, name_kept)
    difference = int(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64)))) if a.size else 0
    return Comparison(
        sent_syntax, got_syntax, False, values, difference == 0, difference, name_kept
    )


def _values_equal(a: Dataset, b: Dataset, ignore: frozenset[int] = frozenset()) -> bool:
    """Same elements with the same values, items compared the same way. The VR may differ
    only where the standard fixes it: encapsulated pixel data is OB (some encoders wrote OW).
    Data Set Trailing Padding is there for media and any application may drop it (PS3.10 7.2)."""
    skip = {PADDING, *ignore}
    if set(a.keys()) - skip != set(b.keys()) - skip:
        return False
    for x in a:
        if x.tag in skip:
            continue
        tag, y = x.tag, b[x.tag]
        if x.VR == "SQ" or y.VR == "SQ":
            if x.VR != y.VR or len(x.value) != len(y.value):
                return False
            if not all(_values_equal(i, j) for i, j in zip(x.value, y.value, strict=True)):
                return False
        elif x.value != y.value or (x.VR != y.VR and tag != PIXEL_DATA):
            return False
    return True


PIXEL_DATA, PADDING = 0x7FE00010, 0xFFFCFFFC
#: Pixel Data, Photometric Interpretation, Planar Configuration: a decoder writes its own.
DECODING_CHANGES = frozenset({PIXEL_DATA, 0x00280004, 0x00280006})
#: Lossy Image Compression, its ratio and method: set when lossy pixels are decoded.
LOSSY_MARKS = frozenset({0x00282110, 0x00282112, 0x00282114})
