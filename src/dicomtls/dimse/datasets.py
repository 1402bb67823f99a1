"""Encoding and decoding the small data sets DIMSE carries (C-FIND identifiers), via pydicom.

Large objects never pass through here: C-STORE data sets stream as bytes. Query
identifiers are small, so pydicom's reader and writer are the right tool, in the
transfer syntax the presentation context negotiated.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import TYPE_CHECKING

from dicomtls.dimse.transfer_syntax import EXPLICIT_VR_BE, IMPLICIT_VR_LE
from dicomtls.errors import DicomTLSError

if TYPE_CHECKING:  # pydicom costs a tenth of a second to import: only who uses it pays
    from pydicom.dataset import Dataset

__all__ = ["DatasetError", "decode_dataset", "encode_dataset", "keyword_texts"]


class DatasetError(DicomTLSError, ValueError):
    """A data set pydicom cannot parse: answered with a DIMSE failure status, not a crash."""


def _flags(transfer_syntax: str) -> tuple[bool, bool]:
    """(implicit VR, little endian) for the uncompressed transfer syntaxes."""
    return transfer_syntax == IMPLICIT_VR_LE, transfer_syntax != EXPLICIT_VR_BE


def encode_dataset(dataset: Dataset, transfer_syntax: str) -> bytes:
    """The data set's bytes in ``transfer_syntax``.

    Text outside ASCII needs its character set declared (PS3.5 6.1.2.5; PS3.4 C.4.1.1.3.2
    for a C-FIND's query and answers): when the data set declares none, UTF-8 (ISO_IR 192)
    is declared for it, on a copy, rather than its text going out as "?".
    """
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    if "SpecificCharacterSet" not in dataset and _has_non_ascii_text(dataset):
        declared = Dataset()
        declared.SpecificCharacterSet = "ISO_IR 192"
        for element in dataset:  # the caller's data set stays as it was
            declared.add(element)
        dataset = declared
    implicit, little = _flags(transfer_syntax)
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = implicit, little
    write_dataset(buffer, dataset)
    return bytes(buffer.getvalue())


#: VRs whose values are in the data set's character set (PS3.5 6.1.2.3).
_CHARACTER_SET_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})


def _has_non_ascii_text(dataset: Dataset) -> bool:
    from pydicom.multival import MultiValue

    for element in dataset:
        if element.VR not in _CHARACTER_SET_VRS or element.value is None:
            continue
        values = element.value if isinstance(element.value, MultiValue) else [element.value]
        if any(not str(value).isascii() for value in values):
            return True
    return False


def decode_dataset(data: bytes | memoryview, transfer_syntax: str) -> Dataset:
    """A peer's small data set, parsed now: DatasetError if it does not parse.

    pydicom's value validation is off while it reads: a query's ``*`` in a UI element is
    legal there, and a peer's values are the handler's to judge, not pydicom's to log a
    warning per element about (a hostile identifier would flood the log).
    """
    from pydicom import config as pydicom_config
    from pydicom.filereader import read_dataset

    implicit, little = _flags(transfer_syntax)
    settings = pydicom_config.settings
    mode, settings.reading_validation_mode = settings.reading_validation_mode, pydicom_config.IGNORE
    try:
        dataset = read_dataset(
            io.BytesIO(bytes(data)), is_implicit_VR=implicit, is_little_endian=little
        )
        for element in dataset:  # force parsing now, so errors surface here and not later
            _ = element.value
    except Exception as exc:
        raise DatasetError(f"unreadable data set: {exc}") from None
    finally:
        settings.reading_validation_mode = mode
    return dataset


def keyword_texts(dataset: Dataset, keywords: Iterable[str]) -> dict[str, str]:
    """Keyword -> value as text for those of ``keywords`` the data set holds, the way
    :meth:`~dicomtls.dimse.dataset_scan.ScannedDataset.texts` gives them from the wire."""
    from pydicom.multival import MultiValue

    texts = {}
    for keyword in keywords:
        value = dataset.get(keyword)
        if value is None:
            continue
        if isinstance(value, MultiValue):
            texts[keyword] = "\\".join(str(v) for v in value)
        else:
            texts[keyword] = str(value).strip("\0 ")  # padding, as on the wire
    return texts
