"""Just enough hand-built DICOM upper-layer PDUs (PS3.8 9.3) to prove a secure link carries DICOM.

The TLS interop tests use these to speak to DCMTK over our link; the real upper
layer lives in ``dicomtls.ul``, which has tests of its own.
"""

from __future__ import annotations

import struct

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"


def _item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def _ae(title: str) -> bytes:
    return title.encode("ascii").ljust(16, b" ")


def a_associate_rq(called: str = "ANY-SCP", calling: str = "DICOMTLS-TEST") -> bytes:
    """An A-ASSOCIATE-RQ proposing Verification with Implicit VR Little Endian."""
    context = (
        bytes([1, 0, 0, 0])
        + _item(0x30, VERIFICATION_SOP_CLASS.encode())
        + _item(0x40, IMPLICIT_VR_LITTLE_ENDIAN.encode())
    )
    user_info = _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.826.0.1.3680043.10.1")
    variable = (
        _item(0x10, APPLICATION_CONTEXT.encode()) + _item(0x20, context) + _item(0x50, user_info)
    )
    fixed = struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + bytes(32)
    body = fixed + variable
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def a_associate_rj() -> bytes:
    """A-ASSOCIATE-RJ: rejected-permanent, by the service user, no reason given."""
    return struct.pack(">BBIBBBB", 0x03, 0, 4, 0, 1, 1, 1)


def a_release_rq() -> bytes:
    return struct.pack(">BBII", 0x05, 0, 4, 0)


def pdu_type(data: bytes) -> int:
    return data[0]


def read_pdu_length(data: bytes) -> int:
    """Total PDU length including its 6-byte header."""
    return 6 + int(struct.unpack(">I", data[2:6])[0])
