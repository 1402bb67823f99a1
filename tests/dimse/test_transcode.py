"""Converting a stored object to a syntax the peer accepted: the same instance, other bytes."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pydicom.data
import pytest
from pydicom.uid import generate_uid

from dicomtls.dimse.datasets import decode_dataset
from dicomtls.dimse.part10 import read_header
from dicomtls.dimse.transcode import transcode
from dicomtls.dimse.transfer_syntax import EXPLICIT_VR_LE, IMPLICIT_VR_LE

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"


@pytest.mark.parametrize(
    "source",
    ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "SC_rgb_jpeg_dcmtk.dcm", "JPEG2000.dcm"],
)
@pytest.mark.parametrize("target", [EXPLICIT_VR_LE, IMPLICIT_VR_LE])
def test_a_decompressed_object_keeps_its_instance_uid(tmp_path: Path, source: str, target: str) -> None:
    """The C-STORE that carries a converted object names the stored instance: the data set
    must name the same one (pydicom's decompress makes up a new UID unless told not to)."""
    original = pydicom.dcmread(TEST_FILES / source)
    original.SOPInstanceUID = original.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / "object.dcm"
    original.save_as(path, enforce_file_format=True)

    converted = decode_dataset(transcode(read_header(path), target), target)

    assert converted.SOPInstanceUID == original.SOPInstanceUID
    assert "PixelData" in converted and converted.PixelData != original.PixelData
    converted.file_meta = pydicom.dataset.FileMetaDataset()
    converted.file_meta.TransferSyntaxUID = target
    assert (converted.pixel_array == original.pixel_array).all()
