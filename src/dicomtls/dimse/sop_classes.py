"""The SOP classes a node deals with, from pydicom's UID dictionary, and the service of each.

pydicom costs a tenth of a second to import, so the storage classes are read from its
dictionary the first time someone asks (``STORAGE_SOP_CLASSES``, ``service_of``), not
when this module is imported: a client that only stores files never pays for it.
"""

from __future__ import annotations

import enum
import functools
from typing import TYPE_CHECKING, Any

from dicomtls.dimse.transfer_syntax import UNCOMPRESSED
from dicomtls.dimse.uids import VERIFICATION

__all__ = [
    "COMMON_STORAGE_SOP_CLASSES",
    "STORAGE_SOP_CLASSES",
    "UNCOMPRESSED",
    "VERIFICATION",
    "Service",
    "service_of",
]


if TYPE_CHECKING:
    #: Every non-retired storage SOP class (PS3.4 Annex B) pydicom knows.
    STORAGE_SOP_CLASSES: tuple[str, ...]
    #: The storage classes a C-GET proposes by default (an association holds 128 contexts).
    COMMON_STORAGE_SOP_CLASSES: tuple[str, ...]


_COMMON = {
    "CTImageStorage",
    "EnhancedCTImageStorage",
    "MRImageStorage",
    "EnhancedMRImageStorage",
    "UltrasoundImageStorage",
    "UltrasoundMultiFrameImageStorage",
    "ComputedRadiographyImageStorage",
    "DigitalXRayImageStorageForPresentation",
    "DigitalXRayImageStorageForProcessing",
    "DigitalMammographyXRayImageStorageForPresentation",
    "SecondaryCaptureImageStorage",
    "MultiFrameGrayscaleByteSecondaryCaptureImageStorage",
    "MultiFrameTrueColorSecondaryCaptureImageStorage",
    "NuclearMedicineImageStorage",
    "PositronEmissionTomographyImageStorage",
    "XRayAngiographicImageStorage",
    "XRayRadiofluoroscopicImageStorage",
    "RTImageStorage",
    "RTDoseStorage",
    "RTStructureSetStorage",
    "RTPlanStorage",
    "EncapsulatedPDFStorage",
    "BasicTextSRStorage",
    "EnhancedSRStorage",
    "ComprehensiveSRStorage",
    "GrayscaleSoftcopyPresentationStateStorage",
    "SegmentationStorage",
    "VLPhotographicImageStorage",
    "KeyObjectSelectionDocumentStorage",
}


@functools.cache
def _storage_sop_classes() -> tuple[str, ...]:
    from pydicom._uid_dict import UID_dictionary  # the data dictionary we depend on (3.x)

    return tuple(
        uid
        for uid, (name, kind, _info, retired, _keyword) in UID_dictionary.items()
        if kind == "SOP Class" and name.endswith("Storage") and retired != "Retired"
    )


@functools.cache
def _common_storage_sop_classes() -> tuple[str, ...]:
    from pydicom._uid_dict import UID_dictionary

    return tuple(uid for uid, entry in UID_dictionary.items() if entry[4] in _COMMON)


@functools.cache
def _storage() -> frozenset[str]:
    return frozenset(_storage_sop_classes())


def __getattr__(name: str) -> Any:
    if name == "STORAGE_SOP_CLASSES":
        return _storage_sop_classes()
    if name == "COMMON_STORAGE_SOP_CLASSES":
        return _common_storage_sop_classes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Service(enum.StrEnum):
    """The DIMSE services a node offers, the unit an access policy grants."""

    ECHO = "echo"
    STORE = "store"
    FIND = "find"
    MOVE = "move"
    GET = "get"


# Query/Retrieve SOP classes (PS3.4 C.6): Patient Root, Study Root, and the retired
# Patient/Study Only model that old devices still propose.
_QUERY_RETRIEVE = {
    "1.2.840.10008.5.1.4.1.2.1.1": Service.FIND,
    "1.2.840.10008.5.1.4.1.2.1.2": Service.MOVE,
    "1.2.840.10008.5.1.4.1.2.1.3": Service.GET,
    "1.2.840.10008.5.1.4.1.2.2.1": Service.FIND,
    "1.2.840.10008.5.1.4.1.2.2.2": Service.MOVE,
    "1.2.840.10008.5.1.4.1.2.2.3": Service.GET,
    "1.2.840.10008.5.1.4.1.2.3.1": Service.FIND,
    "1.2.840.10008.5.1.4.1.2.3.2": Service.MOVE,
    "1.2.840.10008.5.1.4.1.2.3.3": Service.GET,
}


def service_of(abstract_syntax: str) -> Service | None:
    """Which service a presentation context's abstract syntax is for (None: none of ours)."""
    if abstract_syntax == VERIFICATION:
        return Service.ECHO
    if abstract_syntax in _storage():
        return Service.STORE
    return _QUERY_RETRIEVE.get(abstract_syntax)
