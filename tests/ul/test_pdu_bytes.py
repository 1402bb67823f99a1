"""Byte-exact checks against PDUs written out by hand from the PS3.8 9.3 tables.

The expected bytes are spelled out field by field (lengths counted by hand) rather
than produced by the codec, so a codec bug cannot hide behind its own output.
"""

from __future__ import annotations

from typing import cast

import pytest

from dicomtls.ul import (
    PDU,
    PDV,
    Abort,
    AbortReason,
    AbortSource,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    AsyncOpsWindow,
    CommonExtendedNegotiation,
    ExtendedNegotiation,
    PDataTF,
    PDUType,
    PresentationContextAC,
    PresentationContextRQ,
    PresentationResult,
    RawSubItem,
    RejectReasonServiceUser,
    RejectResult,
    RejectSource,
    ReleaseRP,
    ReleaseRQ,
    RoleSelection,
    UserIdentityAC,
    UserIdentityRQ,
    UserIdentityType,
    UserInformation,
    decode_pdu,
)
from dicomtls.ul.codes import ItemType

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"

FIXED_AE_FIELDS = (
    b"\x00\x01"  # protocol version 1
    b"\x00\x00"  # reserved
    b"ANY-SCP         "  # called AE title, 16 bytes space padded
    b"ECHOSCU         " + b"\x00" * 32  # calling AE title  # reserved
)
APP_CONTEXT_ITEM = b"\x10\x00\x00\x151.2.840.10008.3.1.1.1"  # 4 + 21 = 25 bytes

ASSOCIATE_RQ_BYTES = (
    b"\x01\x00\x00\x00\x00\xad"  # type 01, reserved, length 173 = 68 + 25 + 50 + 30
    + FIXED_AE_FIELDS
    + APP_CONTEXT_ITEM
    # presentation context 0x20, length 46 = 4 + 21 + 21
    + b"\x20\x00\x00\x2e"
    b"\x01\x00\x00\x00" + b"\x30\x00\x00\x11"
    b"1.2.840.10008.1.1" + b"\x40\x00\x00\x11"
    b"1.2.840.10008.1.2"
    # user information 0x50, length 26 = 8 + 11 + 7
     + b"\x50\x00\x00\x1a" + b"\x51\x00\x00\x04"
    b"\x00\x00\x40\x00"  # maximum length 16384
     + b"\x52\x00\x00\x07"
    b"1.2.3.4"  # implementation class UID
     + b"\x55\x00\x00\x03"
    b"DT1"  # implementation version name
)
ASSOCIATE_RQ = AssociateRQ(
    called_ae="ANY-SCP",
    calling_ae="ECHOSCU",
    presentation_contexts=(PresentationContextRQ(1, VERIFICATION, (IMPLICIT_LE,)),),
    user_information=UserInformation(16384, "1.2.3.4", implementation_version_name="DT1"),
)

ASSOCIATE_AC_BYTES = (
    b"\x02\x00\x00\x00\x00\x91"  # type 02, length 145 = 68 + 25 + 29 + 23
    + FIXED_AE_FIELDS
    + APP_CONTEXT_ITEM
    # presentation context 0x21, length 25 = 4 + 21: id 1, result 0 (acceptance)
    + b"\x21\x00\x00\x19"
    b"\x01\x00\x00\x00" + b"\x40\x00\x00\x11"
    b"1.2.840.10008.1.2"
    # user information, length 19 = 8 + 11
     + b"\x50\x00\x00\x13" + b"\x51\x00\x00\x04"
    b"\x00\x00\x40\x00" + b"\x52\x00\x00\x07"
    b"1.2.3.4"
)
ASSOCIATE_AC = AssociateAC(
    called_ae="ANY-SCP",
    calling_ae="ECHOSCU",
    presentation_contexts=(PresentationContextAC(1, PresentationResult.ACCEPTANCE, IMPLICIT_LE),),
    user_information=UserInformation(16384, "1.2.3.4"),
)

P_DATA_BYTES = (
    b"\x04\x00\x00\x00\x00\x12"  # type 04, length 18 = 10 + 8
    + b"\x00\x00\x00\x06"
    b"\x01\x03"
    b"\xaa\xbb\xcc\xdd"  # PDV: ctx 1, command+last
     + b"\x00\x00\x00\x04"
    b"\x03\x00"
    b"\xee\xff"  # PDV: ctx 3, data set, not last
)
P_DATA = PDataTF((PDV(1, 0x03, b"\xaa\xbb\xcc\xdd"), PDV(3, 0x00, b"\xee\xff")))

CASES = [
    pytest.param(ASSOCIATE_RQ_BYTES, ASSOCIATE_RQ, id="A-ASSOCIATE-RQ"),
    pytest.param(ASSOCIATE_AC_BYTES, ASSOCIATE_AC, id="A-ASSOCIATE-AC"),
    pytest.param(
        b"\x03\x00\x00\x00\x00\x04\x00\x01\x01\x07",
        AssociateRJ(
            RejectResult.PERMANENT,
            RejectSource.SERVICE_USER,
            RejectReasonServiceUser.CALLED_AE_NOT_RECOGNIZED,
        ),
        id="A-ASSOCIATE-RJ",
    ),
    pytest.param(P_DATA_BYTES, P_DATA, id="P-DATA-TF"),
    pytest.param(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00", ReleaseRQ(), id="A-RELEASE-RQ"),
    pytest.param(b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00", ReleaseRP(), id="A-RELEASE-RP"),
    pytest.param(
        b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x06",
        Abort(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER_VALUE),
        id="A-ABORT",
    ),
]


@pytest.mark.parametrize(("wire", "pdu"), CASES)
def test_encode_matches_the_standard_layout(wire: bytes, pdu: PDU) -> None:
    assert pdu.encode() == wire


@pytest.mark.parametrize(("wire", "pdu"), CASES)
def test_decode_of_the_standard_layout(wire: bytes, pdu: object) -> None:
    assert decode_pdu(wire) == pdu


def test_each_pdu_type_is_titled_as_the_standard_spells_it() -> None:
    """Messages name PDUs the way PS3.8 9.3 does; the cases above carry those names as IDs."""
    titles = {cast(PDU, case.values[1]).pdu_type.title: case.id for case in CASES}
    assert list(titles) == list(titles.values())
    assert len(titles) == len(PDUType) == 7


def test_p_data_parts_reference_the_payload_without_copying() -> None:
    payload = memoryview(bytearray(b"x" * 1000))
    parts = PDataTF((PDV(5, 0x02, payload),)).encode_parts()
    assert parts[0] == b"\x04\x00\x00\x00\x03\xee"  # 6 + 1000 = 1006
    assert parts[1] == b"\x00\x00\x03\xea\x05\x02"  # item length 1002, ctx 5, last
    assert parts[2] is payload


def test_decoded_pdv_data_are_views_of_the_input() -> None:
    pdu = decode_pdu(P_DATA_BYTES)
    assert isinstance(pdu, PDataTF)
    first, second = pdu.pdvs
    assert isinstance(first.data, memoryview) and first.data.obj is P_DATA_BYTES
    assert first.data.readonly
    assert (first.is_command, first.is_last) == (True, True)
    assert (second.is_command, second.is_last) == (False, False)


def test_reserved_message_control_bits_are_not_tested() -> None:
    wire = b"\x04\x00\x00\x00\x00\x07\x00\x00\x00\x03\x01\xfe\x00"
    pdu = decode_pdu(wire)
    assert isinstance(pdu, PDataTF)
    assert pdu.pdvs[0].message_control_header == 0x02


def test_uids_padded_by_the_peer_are_stripped() -> None:
    padded = bytearray(ASSOCIATE_RQ_BYTES)
    # Replace the abstract syntax "1.2.840.10008.1.1" by the same text plus a NUL pad;
    # that is one byte longer, so three lengths grow by one.
    old = b"\x30\x00\x00\x111.2.840.10008.1.1"
    start = padded.index(old)
    padded[start : start + len(old)] = b"\x30\x00\x00\x121.2.840.10008.1.1\x00"
    padded[5] += 1  # PDU length
    pc = padded.index(b"\x20\x00\x00\x2e")
    padded[pc + 3] += 1  # presentation context item length
    pdu = decode_pdu(bytes(padded))
    assert isinstance(pdu, AssociateRQ)
    assert pdu.presentation_contexts[0].abstract_syntax == VERIFICATION


def test_rejected_context_with_empty_transfer_syntax() -> None:
    item = b"\x21\x00\x00\x08\x03\x00\x03\x00\x40\x00\x00\x00"
    rejected = PresentationContextAC(3, PresentationResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, "")
    assert rejected.encode() == item
    assert PresentationContextAC.decode(memoryview(item)[4:]) == rejected


def test_rejected_context_without_transfer_syntax_sub_item_is_tolerated() -> None:
    value = memoryview(b"\x05\x00\x01\x00")
    assert PresentationContextAC.decode(value) == PresentationContextAC(
        5, PresentationResult.USER_REJECTION, ""
    )


ASYNC_WIRE = b"\x53\x00\x00\x04\x00\x05\x00\x01"
ROLE_WIRE = b"\x54\x00\x00\x0b\x00\x071.2.3.4\x01\x00"
EXTENDED_WIRE = b"\x56\x00\x00\x0a\x00\x071.2.3.4\x01"
COMMON_WIRE = (
    b"\x57\x00\x00\x1d"  # 29 = 9 + 7 + 13
    b"\x00\x07"
    b"1.2.3.4"
    b"\x00\x05"
    b"1.2.3"
    b"\x00\x0b"
    b"\x00\x09"
    b"1.2.3.4.5"
)
IDENTITY_RQ_WIRE = b"\x58\x00\x00\x0a\x02\x01\x00\x01u\x00\x03pwd"
IDENTITY_AC_WIRE = b"\x59\x00\x00\x04\x00\x02ok"

SubItem = (
    AsyncOpsWindow
    | RoleSelection
    | ExtendedNegotiation
    | CommonExtendedNegotiation
    | UserIdentityRQ
    | UserIdentityAC
)
ASYNC = AsyncOpsWindow(5, 1)
ROLE = RoleSelection("1.2.3.4", True, False)
EXTENDED = ExtendedNegotiation("1.2.3.4", b"\x01")
COMMON = CommonExtendedNegotiation("1.2.3.4", "1.2.3", ("1.2.3.4.5",))
IDENTITY_RQ = UserIdentityRQ(UserIdentityType.USERNAME_AND_PASSCODE, True, b"u", b"pwd")
IDENTITY_AC = UserIdentityAC(b"ok")

SUB_ITEMS = [
    pytest.param(ASYNC, ASYNC_WIRE, id="0x53-async-ops"),
    pytest.param(ROLE, ROLE_WIRE, id="0x54-role"),
    pytest.param(EXTENDED, EXTENDED_WIRE, id="0x56-extended"),
    pytest.param(COMMON, COMMON_WIRE, id="0x57-common-extended"),
    pytest.param(IDENTITY_RQ, IDENTITY_RQ_WIRE, id="0x58-identity-rq"),
    pytest.param(IDENTITY_AC, IDENTITY_AC_WIRE, id="0x59-identity-ac"),
]


@pytest.mark.parametrize(("sub_item", "wire"), SUB_ITEMS)
def test_user_information_sub_items_byte_exact(sub_item: SubItem, wire: bytes) -> None:
    assert sub_item.encode() == wire
    assert type(sub_item).decode(memoryview(wire)[4:]) == sub_item


@pytest.mark.parametrize(
    ("identity", "identity_wire", "identity_type"),
    [(IDENTITY_RQ, IDENTITY_RQ_WIRE, 0x58), (IDENTITY_AC, IDENTITY_AC_WIRE, 0x59)],
)
def test_user_information_with_every_sub_item(
    identity: UserIdentityRQ | UserIdentityAC, identity_wire: bytes, identity_type: int
) -> None:
    info = UserInformation(
        0,
        "1.2",
        implementation_version_name="V",
        async_ops_window=ASYNC,
        role_selections=(ROLE,),
        extended_negotiations=(EXTENDED,),
        common_extended_negotiations=(COMMON,),
        user_identity=identity,
        unknown=(RawSubItem(0xA0, b"hi"),),
    )
    value = b"".join(
        [
            b"\x51\x00\x00\x04\x00\x00\x00\x00",
            b"\x52\x00\x00\x031.2",
            ASYNC_WIRE,
            ROLE_WIRE,
            b"\x55\x00\x00\x01V",
            EXTENDED_WIRE,
            COMMON_WIRE,
            identity_wire,
            b"\xa0\x00\x00\x02hi",  # unknown sub-item kept verbatim, last
        ]
    )
    wire = info.encode()
    assert wire == bytes((ItemType.USER_INFORMATION, 0)) + len(value).to_bytes(2, "big") + value
    assert UserInformation.decode(memoryview(wire)[4:], identity_type) == info
