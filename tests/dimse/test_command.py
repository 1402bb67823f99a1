"""Command sets: byte-exact against pydicom's reading of them, and strict on bad input."""

from __future__ import annotations

import contextlib
import io
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset

from dicomtls.dimse.command import (
    NO_DATASET,
    CommandError,
    CommandField,
    Tag,
    command_field,
    decode_command,
    encode_command,
    has_dataset,
)
from dicomtls.dimse.messages import c_echo_rq, c_move_rsp, c_store_rq, c_store_rsp
from dicomtls.dimse.status import Category, status_category, status_name

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def _pydicom(raw: bytes) -> Dataset:
    return read_dataset(io.BytesIO(raw), is_implicit_VR=True, is_little_endian=True)


def test_store_request_reads_the_same_in_pydicom() -> None:
    raw = encode_command(c_store_rq(7, CT_IMAGE, "1.2.3.4.5", move_originator=("MOVER", 3)))
    ds = _pydicom(raw)
    assert ds.CommandGroupLength == len(raw) - 12
    assert ds.CommandField == CommandField.C_STORE_RQ
    assert ds.MessageID == 7
    assert ds.AffectedSOPClassUID == CT_IMAGE
    assert ds.AffectedSOPInstanceUID == "1.2.3.4.5"
    assert ds.MoveOriginatorApplicationEntityTitle == "MOVER"
    assert ds.CommandDataSetType != NO_DATASET
    assert len(raw) % 2 == 0


def test_round_trip_and_required_elements() -> None:
    for command in (
        c_echo_rq(1),
        c_store_rsp(9, CT_IMAGE, "1.2.3", 0xA700, "disk full"),
        c_move_rsp(4, CT_IMAGE, 0xFF00, (3, 2, 1, 0)),
    ):
        decoded = decode_command(encode_command(command))
        assert decoded == command
        command_field(decoded)  # every required element is there
    assert not has_dataset(c_echo_rq(1))
    assert has_dataset(c_store_rq(1, CT_IMAGE, "1.2"))


def test_missing_required_element_is_named() -> None:
    command = c_store_rq(1, CT_IMAGE, "1.2")
    del command[Tag.AffectedSOPInstanceUID]
    with pytest.raises(CommandError, match=r"C_STORE_RQ lacks required element\(s\) \(0000,1000\)"):
        command_field(decode_command(encode_command(command)))


def test_wrong_vr_length_and_foreign_group() -> None:
    bad_us = struct.pack("<HHI", 0, 0x0110, 4) + b"\x01\x00\x00\x00"  # MessageID with 4 bytes
    with pytest.raises(CommandError, match="MessageID has length 4, but its VR US needs 2"):
        decode_command(bad_us)
    foreign = struct.pack("<HHI", 0x0008, 0x0016, 2) + b"1\x00"
    assert decode_command(foreign) == {}  # skipped whole, as an unknown element is
    with pytest.raises(CommandError, match="runs past"):
        decode_command(struct.pack("<HHI", 0x0008, 0x0058, 200) + b"1\x00")
    with pytest.raises(CommandError, match="runs past"):
        decode_command(struct.pack("<HHI", 0, 0x0110, 200) + b"\x01\x00")


@given(st.binary(max_size=200))
def test_random_bytes_only_ever_give_command_errors(data: bytes) -> None:
    with contextlib.suppress(CommandError):
        command_field(decode_command(data))


def test_status_names() -> None:
    assert status_category(0x0000) is Category.SUCCESS
    assert status_category(0xFF00) is Category.PENDING
    assert status_category(0xB000) is Category.WARNING
    assert status_category(0xA700) is Category.FAILURE
    assert status_name(0xA700) == "0xA700 out of resources (failure)"
    assert status_name(0x0122) == "0x0122 SOP class not supported (failure)"


def test_a_failed_get_response_with_a_data_set_element_in_its_command_decodes() -> None:
    """Orthanc 1.10 answers a failed C-GET with (0008,0058) inside the command set."""
    from dicomtls.dimse.messages import c_get_rsp

    wire = bytearray(
        encode_command(c_get_rsp(7, "1.2.840.10008.5.1.4.1.2.2.3", 0xA702, (0, 0, 1, 0)))
    )
    uid = b"1.2.3.4\x00"
    wire += struct.pack("<HHI", 0x0008, 0x0058, len(uid)) + uid
    command = decode_command(bytes(wire))
    assert command[Tag.Status] == 0xA702 and command[Tag.NumberOfFailedSuboperations] == 1
    assert command_field(command) is CommandField.C_GET_RSP


def test_an_error_comment_beyond_ascii_keeps_its_status() -> None:
    """A peer's Latin-1 Error Comment (an LO for people) is read escaped: refusing it would
    have cost the response its status and the association."""
    from dicomtls.dimse.command import answered_status

    sent = encode_command(
        {Tag.CommandField: 0x8001, Tag.Status: 0xA700, Tag.ErrorComment: "Platte voll!!"}
    )
    status = answered_status(decode_command(sent.replace(b"voll!!", b"voll\xfc\xfc")))
    assert status == 0xA700
    assert status.comment == "Platte voll\\xfc\\xfc"
