"""The SOP classes and transfer syntaxes a node deals with, from pydicom's UID dictionary."""

from __future__ import annotations

from pydicom._uid_dict import UID_dictionary  # the data dictionary we depend on (pydicom 3.x)

__all__ = [
    "COMMON_STORAGE_SOP_CLASSES",
    "STORAGE_SOP_CLASSES",
    "UNCOMPRESSED",
    "VERIFICATION",
]

VERIFICATION = "1.2.840.10008.1.1"

#: Every non-retired storage SOP class (PS3.4 Annex B) pydicom knows.
STORAGE_SOP_CLASSES: tuple[str, ...] = tuple(
    uid
    for uid, (name, kind, _info, retired, _keyword) in UID_dictionary.items()
    if kind == "SOP Class" and name.endswith("Storage") and retired != "Retired"
)

#: Explicit VR Little Endian first (it carries VRs), then the default Implicit VR Little Endian.
UNCOMPRESSED: tuple[str, ...] = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")

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
