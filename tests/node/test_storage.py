"""Durable storage: complete objects only, readable by pydicom, nothing partial left behind."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from dicomtls.dimse.part10 import Part10Error, iter_blocks, read_header
from dicomtls.node.storage import DurableStore, FileMeta, StorageError

CT = UID("1.2.840.10008.5.1.4.1.1.2")
STUDY_UID, SERIES_UID = generate_uid(), generate_uid()  # every test object belongs to one series


def _make_file(path: Path, pixels: int = 300_000, pixel_data: bytes | None = None) -> Dataset:
    """A CT object of ``pixels`` bytes of pixel data (a ramp, or ``pixel_data``)."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CT, generate_uid()
    ds.PatientName, ds.PatientID = "Doe^Jane", "P1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = STUDY_UID, SERIES_UID, "CT"
    frames = max(1, pixels // 1_000_000)  # Rows must stay a 16-bit value
    ds.BitsAllocated, ds.Rows, ds.Columns, ds.SamplesPerPixel = (
        8,
        pixels // (1000 * frames),
        1000,
        1,
    )
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixel_data if pixel_data is not None else bytes(i % 256 for i in range(pixels))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CT
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return ds


def test_stream_a_file_through_the_store(tmp_path: Path) -> None:
    source = tmp_path / "in.dcm"
    ds = _make_file(source)
    header = read_header(source)
    assert header.sop_instance_uid == ds.SOPInstanceUID
    assert header.transfer_syntax_uid == ExplicitVRLittleEndian
    store = DurableStore(tmp_path / "store")
    incoming = store.begin(
        FileMeta(
            header.sop_class_uid,
            header.sop_instance_uid,
            header.transfer_syntax_uid,
            implementation_class_uid="1.2.826.0.1.3680043.10.1",
            source_ae_title="SCU",
        )
    )
    for block in iter_blocks(header, block_size=65536):
        incoming.write(block)
    assert not list(store.objects.rglob("*.dcm"))  # nothing visible before commit
    stored = incoming.commit()
    assert stored.path == store.path_for(ds.SOPInstanceUID)
    back = pydicom.dcmread(stored.path)
    assert back.PixelData == ds.PixelData and back.PatientName == "Doe^Jane"
    assert back.file_meta.SourceApplicationEntityTitle == "SCU"
    original = source.read_bytes()[header.dataset_offset :]
    assert stored.path.read_bytes().endswith(original)
    assert list(store.incoming.iterdir()) == []


def test_abort_and_crash_leftovers(tmp_path: Path) -> None:
    store = DurableStore(tmp_path)
    incoming = store.begin(
        FileMeta(CT, "1.2.3", ExplicitVRLittleEndian, implementation_class_uid="1.2")
    )
    incoming.write(b"partial")
    incoming.abort()
    assert list(store.incoming.iterdir()) == [] and not store.path_for("1.2.3").exists()
    crashed = store.begin(
        FileMeta(CT, "1.2.4", ExplicitVRLittleEndian, implementation_class_uid="1.2")
    )
    crashed.write(b"half an object")  # the process dies here: no commit, no abort
    assert DurableStore(tmp_path).recover() == 1
    assert list(store.incoming.iterdir()) == [] and not store.path_for("1.2.4").exists()


def test_hostile_uid_and_non_dicom(tmp_path: Path) -> None:
    store = DurableStore(tmp_path)
    with pytest.raises(StorageError, match="refusing"):
        store.path_for("../../etc/passwd")
    junk = tmp_path / "junk.txt"
    junk.write_text("hello")
    with pytest.raises(Part10Error, match="not a DICOM Part 10 file"):
        read_header(junk)


def test_spares_are_made_in_batches_once_half_are_used(tmp_path: Path) -> None:
    """Each refill wakes a thread: one is asked for when half the spares are gone, and no
    second while it runs, so a stream of C-STOREs wakes the writer a few times, not per object."""
    store = DurableStore(tmp_path / "store")
    assert store.spares_wanted()  # none made yet
    assert not store.spares_wanted()  # one refill at a time
    store.prepare_spare()
    made = sorted(store.spares.iterdir())
    asked = []
    for n in range(len(made)):
        meta = FileMeta(CT, f"1.2.3.{n}", ExplicitVRLittleEndian, implementation_class_uid="1.2")
        incoming = store.begin(meta)
        incoming.abort()
        asked.append(store.spares_wanted())
        if asked[-1]:
            break
    assert asked == [False] * (len(made) // 2 - 1) + [True]  # asked once half were used
    assert not store.spares_wanted()  # and not again before that refill ran
    store.prepare_spare()
    assert len(list(store.spares.iterdir())) == len(made)
    store.close()
