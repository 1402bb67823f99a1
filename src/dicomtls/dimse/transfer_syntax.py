"""The transfer syntaxes a storage node deals with (PS3.5 Annex A), and how they relate.

A storage SCP stores what it receives bit for bit, so what it accepts decides what it
keeps: a lossy syntax chosen for a context the SCU would also have sent uncompressed
would make the SCU compress, and lose data, for our sake. The default preference is
therefore uncompressed first, then lossless compression, then lossy; an SCU that offers
a lossy syntax alone (its data is already lossy) still gets it accepted.
"""

from __future__ import annotations

__all__ = [
    "DEFLATED",
    "EXPLICIT_VR_BE",
    "EXPLICIT_VR_LE",
    "IMPLICIT_VR_LE",
    "LOSSLESS",
    "LOSSY",
    "STORAGE_TRANSFER_SYNTAXES",
    "UNCOMPRESSED",
    "is_native",
    "syntax_name",
]

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"  # retired, still sent by old equipment
RLE = "1.2.840.10008.1.2.5"

#: Explicit VR Little Endian first (it carries VRs), then the default Implicit VR Little Endian.
UNCOMPRESSED: tuple[str, ...] = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)

_NAMES = {
    IMPLICIT_VR_LE: "Implicit VR Little Endian",
    EXPLICIT_VR_LE: "Explicit VR Little Endian",
    DEFLATED: "Deflated Explicit VR Little Endian",
    EXPLICIT_VR_BE: "Explicit VR Big Endian",
    "1.2.840.10008.1.2.1.98": "Encapsulated Uncompressed Explicit VR Little Endian",
    RLE: "RLE Lossless",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
    "1.2.840.10008.1.2.4.201": "HTJ2K Lossless",
    "1.2.840.10008.1.2.4.202": "HTJ2K Lossless RPCL",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.203": "HTJ2K",
    "1.2.840.10008.1.2.4.51": "JPEG Extended",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
}

#: Lossless compression (PS3.5 A.4), in the order a storage SCP prefers them.
LOSSLESS: tuple[str, ...] = (
    "1.2.840.10008.1.2.1.98",
    RLE,
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
)
#: Lossy compression: accepted only when an SCU offers nothing better for a context.
LOSSY: tuple[str, ...] = (
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.203",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.50",
)
#: What a storage SCP accepts by default, most preferred first.
STORAGE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    *UNCOMPRESSED,
    DEFLATED,
    EXPLICIT_VR_BE,
    *LOSSLESS,
    *LOSSY,
)
#: Pixel data as plain values, convertible between each other without a codec.
_NATIVE = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_LE, DEFLATED, EXPLICIT_VR_BE})


def is_native(transfer_syntax: str) -> bool:
    """Whether pixel data in this syntax is native (not encapsulated): convertible to any
    other native syntax by re-encoding the data set, no codec needed."""
    return transfer_syntax in _NATIVE


def syntax_name(transfer_syntax: str) -> str:
    """``JPEG Lossless SV1 (1.2.840.10008.1.2.4.70)``, or the bare UID for one we do not know."""
    name = _NAMES.get(transfer_syntax)
    return f"{name} ({transfer_syntax})" if name else transfer_syntax
