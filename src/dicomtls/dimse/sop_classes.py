"""The SOP classes a node deals with, from pydicom's UID dictionary, and the service of each."""

from __future__ import annotations

import enum

from pydicom._uid_dict import UID_dictionary  # the data dictionary we depend on (pydicom 3.x)

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


#: Every non-retired storage SOP class (PS3.4 Annex B) pydicom knows.
STORAGE_SOP_CLASSES: tuple[str, ...] = tuple(
    uid
    for uid, (name, kind, _info, retired, _keyword) in UID_dictionary.items()
    if kind == "SOP Class" and name.endswith("Storage") and retired != "Retired"
)


_COMMON = {
    "CTImageStorage", "EnhancedCTImageStorage", "MRImageStorage", "EnhancedMRImageStorage",
    "UltrasoundImageStorage", "UltrasoundMultiFrameImageStorage", "ComputedRadiographyImageStorage",
    "DigitalXRayImageStorageForPresentation", "DigitalXRayImageStorageForProcessing",
    "DigitalMammographyXRayImageStorageForPresentation", "SecondaryCaptureImageStorage",
    "MultiFrameGrayscaleByteSecondaryCaptureImageStorage", "MultiFrameTrueColorSecondaryCaptureImageStorage",
    "NuclearMedicineImageStorage", "PositronEmissionTomographyImageStorage", "XRayAngiographicImageStorage",
    "XRayRadiofluoroscopicImageStorage", "RTImageStorage", "RTDoseStorage", "RTStructureSetStorage",
    "RTPlanStorage", "EncapsulatedPDFStorage", "BasicTextSRStorage", "EnhancedSRStorage",
    "ComprehensiveSRStorage", "GrayscaleSoftcopyPresentationStateStorage", "SegmentationStorage",
    "VLPhotographicImageStorage", "KeyObjectSelectionDocumentStorage",
}  # fmt: skip

#: The storage classes a C-GET proposes by default (an association holds at most 128 contexts).
COMMON_STORAGE_SOP_CLASSES: tuple[str, ...] = tuple(
    uid for uid, entry in UID_dictionary.items() if entry[4] in _COMMON
)


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
_STORAGE = frozenset(STORAGE_SOP_CLASSES)


def service_of(abstract_syntax: str) -> Service | None:
    """Which service a presentation context's abstract syntax is for (None: none of ours)."""
    if abstract_syntax == VERIFICATION:
        return Service.ECHO
    if abstract_syntax in _STORAGE:
        return Service.STORE
    return _QUERY_RETRIEVE.get(abstract_syntax)
