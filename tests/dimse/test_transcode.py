"""Converting a stored object to a syntax the peer accepted: the same instance, other bytes."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pydicom.data
import pytest
from pydicom.uid import UID, generate_uid

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
def test_a_decompressed_object_keeps_its_instance_uid(
    tmp_path: Path, source: str, target: str
) -> None:
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
    converted.file_meta.TransferSyntaxUID = UID(target)
    assert (converted.pixel_array == original.pixel_array).all()


@pytest.mark.parametrize(
    ("source", "lossy", "method"),
    [
        ("SC_rgb_jpeg_dcmtk.dcm", True, "ISO_10918_1"),
        ("JPEGLSNearLossless_16.dcm", True, "ISO_14495_1"),
        ("JPEG2000.dcm", True, "ISO_15444_1"),
        ("MR_small_RLE.dcm", False, None),
        ("MR_small_jp2klossless.dcm", False, None),
    ],
)
def test_decoded_lossy_pixels_say_they_were_lossy(
    tmp_path: Path, source: str, lossy: bool, method: str | None
) -> None:
    """Once decoded, nothing else tells a reader the pixels went through lossy compression
    (PS3.3 C.7.6.1.1.5): the data set says so, as DCMTK's decoders do."""
    original = pydicom.dcmread(TEST_FILES / source)
    for keyword in ("LossyImageCompression", "LossyImageCompressionMethod"):
        if keyword in original:  # some encoders said so already: here, none did
            delattr(original, keyword)
    path = tmp_path / "object.dcm"
    original.save_as(path, enforce_file_format=True)

    converted = decode_dataset(transcode(read_header(path), EXPLICIT_VR_LE), EXPLICIT_VR_LE)

    assert converted.get("LossyImageCompression") == ("01" if lossy else None)
    assert converted.get("LossyImageCompressionMethod") == method
