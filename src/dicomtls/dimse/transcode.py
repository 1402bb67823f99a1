"""Re-encoding a stored object in another transfer syntax, for a peer that accepted only that.

A stored object goes out as it is whenever the peer accepted its syntax. When it did
not, an object with native pixel data converts to any other native syntax by reading
the data set and writing it again (pydicom, no codec). Compressed pixel data converts
only through a codec: pydicom's pixel data plugins (``pip install dicomtls[codecs]``
brings pylibjpeg with its JPEG, JPEG-LS, JPEG 2000 and RLE plugins). Converting reads
the whole object into memory, so it is the exception, not the path of every object.
"""

from __future__ import annotations

import array
import math
from typing import TYPE_CHECKING

from dicomtls.dimse.dataset_scan import DatasetScanError, DatasetScanner
from dicomtls.dimse.datasets import encode_dataset
from dicomtls.dimse.part10 import Part10Header, iter_blocks
from dicomtls.dimse.transfer_syntax import (
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    LOSSY,
    is_native,
    syntax_name,
)
from dicomtls.errors import DicomTLSError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["TARGETS", "TranscodeError", "transcode"]

#: What we can write: the native syntaxes pydicom encodes without deflating.
TARGETS: tuple[str, ...] = (EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE)
#: Values pydicom keeps as raw bytes although they are words: their byte order is ours to
#: turn when the data set changes endianness (PS3.5 7.3). Type codes of ``array`` by size.
_WORDS = {"OW": "H", "OF": "f", "OL": "I", "OD": "d", "OV": "Q"}
#: The most elements an object may have to be converted. pydicom holds each as an object
#: of some 450 bytes, so this many cost some 100 MB; and a peer that stores an object
#: chooses how many it has (a 26 MB one of a million sequence items took pydicom a minute
#: and 1.3 GB). An object past it goes out only in its own syntax.
MAX_CONVERTED_ELEMENTS = 200_000
#: The most pixel data a conversion decodes. Decoding holds it about three times (the
#: decoded frames, the data set's value, the encoded data set), and compressed pixel data a
#: peer stored may decode to far more than it sent: black frames in RLE, 64 times (4 MB
#: stored took the node's peak RSS up 771 MiB). A larger object goes out only compressed.
MAX_DECODED_BYTES = 128 << 20
#: Lossy Image Compression Method (PS3.3 C.7.6.1.1.5.1) of each lossy syntax.
_LOSSY_METHODS = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",
}


class TranscodeError(DicomTLSError, ValueError):
    """The object cannot be had in the wanted syntax; the text says why and what would help."""


def transcode(header: Part10Header, target: str) -> bytes:
    """The data set of ``header``'s file, encoded in ``target`` (one of :data:`TARGETS`)."""
    import pydicom  # only the rare object that needs converting pays for the reader

    if target not in TARGETS:
        raise TranscodeError(f"cannot write {syntax_name(target)}")
    source = header.transfer_syntax_uid
    _check_elements(header)
    try:  # through the path's own open: an object store's path reads from there
        with header.path.open("rb") as stored:
            dataset = pydicom.dcmread(stored)
    except Exception as exc:
        raise TranscodeError(f"cannot read {header.path.name}: {exc}") from None
    if not is_native(source):
        _decompress(dataset, header)
    try:
        if (source == EXPLICIT_VR_BE) != (target == EXPLICIT_VR_BE):
            _swap_words(dataset)
        return encode_dataset(dataset, target)
    except Exception as exc:
        raise TranscodeError(f"cannot encode in {syntax_name(target)}: {exc}") from None


def _check_elements(header: Part10Header) -> None:
    """TranscodeError if the object has more elements than :data:`MAX_CONVERTED_ELEMENTS`:
    counted by the scanner, which holds none of them, before pydicom builds them all."""
    scanner = DatasetScanner(header.transfer_syntax_uid)
    try:
        for block in iter_blocks(header):
            scanner.feed(block)
            if scanner.elements > MAX_CONVERTED_ELEMENTS:
                raise TranscodeError(
                    f"{header.path.name} has more than {MAX_CONVERTED_ELEMENTS:,} elements, "
                    "too many to convert in memory; it goes out only in "
                    f"{syntax_name(header.transfer_syntax_uid)}"
                )
    except (DatasetScanError, OSError):
        return  # pydicom may still read it, or says why not


def _decompress(dataset: Dataset, header: Part10Header) -> None:
    """Decode the pixel data in place, unless it would decode to more than
    :data:`MAX_DECODED_BYTES`."""
    source = header.transfer_syntax_uid
    size = _decoded_size(dataset, header)
    if size > MAX_DECODED_BYTES:
        raise TranscodeError(
            f"{header.path.name} would decode to {size:,} bytes of pixel data, more than "
            f"{MAX_DECODED_BYTES:,} to convert in memory; it goes out only in {syntax_name(source)}"
        )
    try:
        # The same instance in another syntax: the C-STORE names its UID (pydicom
        # would make up a new one by default).
        dataset.decompress(generate_instance_uid=False)
    except Exception as exc:  # no numpy, no plugin for this syntax, or broken pixel data
        raise TranscodeError(
            f"cannot decompress {syntax_name(source)} ({exc}); install dicomtls[codecs] "
            "for the JPEG, JPEG-LS, JPEG 2000 and RLE decoders"
        ) from None
    if source in LOSSY:
        _mark_lossy(dataset, source)


def _decoded_size(dataset: Dataset, header: Part10Header) -> int:
    """Bytes of pixel data the image attributes announce once decoded (PS3.3 C.7.6.3)."""
    try:
        dimensions = [
            int(dataset.get(keyword, default))
            for keyword, default in (
                ("Rows", 0),
                ("Columns", 0),
                ("SamplesPerPixel", 1),
                ("NumberOfFrames", 1),
            )
        ]
        bits = int(dataset.get("BitsAllocated", 8))
    except (TypeError, ValueError) as exc:
        raise TranscodeError(
            f"{header.path.name}: its image attributes cannot be read ({exc})"
        ) from None
    return math.prod(dimensions) * ((bits + 7) // 8)


def _mark_lossy(dataset: Dataset, source: str) -> None:
    """Decoded, lossy pixel data no longer says it was lossy: the data set must (PS3.3
    C.7.6.1.1.5), so a reader never takes it for the original acquisition."""
    dataset.LossyImageCompression = "01"
    method = _LOSSY_METHODS.get(source)
    if method is not None and "LossyImageCompressionMethod" not in dataset:
        dataset.LossyImageCompressionMethod = method


def _swap_words(dataset: Dataset) -> None:
    """Turn the byte order of every word-valued raw value (OW, OF, OL, OD, OV), in nested
    items too: pydicom re-encodes numbers by itself, but writes these bytes as they are."""
    bits = dataset.get("BitsAllocated", 16)
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                _swap_words(item)
            continue
        vr = element.VR
        if vr in ("OB or OW", "US or OW"):  # ambiguous in implicit VR: pixel data's own rule
            vr = "OW" if bits > 8 else "OB"
        code = _WORDS.get(vr)
        if code is None or not element.value:
            continue
        words = array.array(code)
        words.frombytes(element.value)
        words.byteswap()
        element.value = words.tobytes()
        element.VR = vr
