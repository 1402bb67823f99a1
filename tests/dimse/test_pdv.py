"""Fragmenting messages into P-DATA-TF PDUs and reassembling them, as a peer would see them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomtls.dimse.command import encode_command
from dicomtls.dimse.messages import c_echo_rq, c_store_rq
from dicomtls.dimse.pdv import (
    CommandReceived,
    MessageAssembler,
    MessageError,
    message_pdvs,
)
from dicomtls.ul import PDUReader
from dicomtls.ul.pdu import PDV, PDataTF


def _wire(command: bytes, dataset: list[bytes] | None, max_pdu: int) -> bytes:
    return b"".join(PDataTF((pdv,)).encode() for pdv in message_pdvs(1, command, dataset, max_pdu))


def _reassemble(wire: bytes, max_pdu: int) -> tuple[list[CommandReceived], bytes, int]:
    reader = PDUReader(max_pdu_length=max_pdu)
    reader.feed(wire)
    assembler = MessageAssembler()
    commands, data, pdus = [], bytearray(), 0
    for pdu in reader:
        assert isinstance(pdu, PDataTF)
        pdus += 1
        for event in assembler.feed(pdu.pdvs):
            if isinstance(event, CommandReceived):
                commands.append(event)
            else:
                data += event.data
    assert assembler.idle
    return commands, bytes(data), pdus


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=70_000),
    block=st.integers(min_value=1, max_value=20_000),
    max_pdu=st.sampled_from([0, 16, 4096, 16384, 65536]),
)
def test_any_size_any_blocks_round_trips(size: int, block: int, max_pdu: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    blocks = [payload[i : i + block] for i in range(0, size, block)]
    command = encode_command(c_store_rq(1, "1.2.840.10008.5.1.4.1.1.2", "1.2.3"))
    commands, data, pdus = _reassemble(_wire(command, blocks, max_pdu), max_pdu)
    assert len(commands) == 1 and commands[0].expects_dataset
    assert data == payload
    if max_pdu:
        per_pdu = max_pdu - 6
        expected = -(-len(command) // per_pdu) + max(1, -(-size // per_pdu))
        assert pdus == expected  # every PDU is filled to the peer's maximum


def test_command_without_dataset() -> None:
    commands, data, _ = _reassemble(_wire(encode_command(c_echo_rq(5)), None, 16384), 16384)
    assert commands[0].command[0x00000110] == 5 and not commands[0].expects_dataset
    assert data == b""


def test_out_of_order_fragments_are_refused() -> None:
    assembler = MessageAssembler()
    with pytest.raises(MessageError, match="before its command"):
        list(assembler.feed([PDV(1, 0x02, b"data")]))
    assembler = MessageAssembler()
    command = encode_command(c_store_rq(1, "1.2.3", "1.2.3.4"))
    list(assembler.feed([PDV(1, 0x01, command[:10])]))
    with pytest.raises(MessageError, match="context 3 in the middle of a message on context 1"):
        list(assembler.feed([PDV(3, 0x03, command[10:])]))
    assembler = MessageAssembler()
    with pytest.raises(MessageError, match="unreadable command set"):
        list(
            assembler.feed([PDV(1, 0x03, b"\x00\x00\x10\x01\xc8\x00\x00\x00\x01\x00")])
        )  # runs past


def test_fragments_are_views_not_copies() -> None:
    payload = bytearray(b"x" * 100_000)
    pdvs = list(message_pdvs(1, b"", [memoryview(payload)], 16384))
    assert all(isinstance(p.data, memoryview) for p in pdvs)
    data = pdvs[1].data
    assert isinstance(data, memoryview) and data.obj is payload  # a view of the caller's buffer
    parts = PDataTF((pdvs[1],)).encode_parts()
    assert parts[-1] is pdvs[1].data  # and the PDU encoder writes it as it is
