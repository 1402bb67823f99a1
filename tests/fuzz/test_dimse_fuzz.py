"""The DIMSE command decoder and the PDV reassembler: any input gives a value or the
module's own error, never another exception."""

from __future__ import annotations

from fuzz._oracles import check_assembler, check_command
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dicomtls.dimse.command import (
    CommandError,
    CommandSet,
    command_field,
    decode_command,
    encode_command,
)
from dicomtls.dimse.pdv import CommandReceived, DatasetFragment, message_pdvs
from dicomtls.ul import PDV, decode_pdu
from dicomtls.ul.pdu import PDataTF
from tests.fuzz.mutations import command_sets, mutated_commands


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | mutated_commands)
@example(b"\x00\x00\x00\x01\x02\x00\x00\x00\x00\x00")  # (0000,0100) US of length 2... cut
@example(b"\x00\x00\x01\x09\x00\x00\x00\x00")  # OffendingElement (AT) of length 0
def test_command_decoder_raises_only_command_error(data: bytes) -> None:
    check_command(data)


@settings(max_examples=150, deadline=None)
@given(command_sets)
def test_valid_command_sets_round_trip(command: CommandSet) -> None:
    wire = encode_command(command)
    assert decode_command(wire) == command
    assert encode_command(decode_command(wire)) == wire
    try:
        command_field(command)
    except CommandError as exc:  # only for want of required elements
        assert "lacks" in str(exc)


pdv_payloads = st.binary(max_size=40) | command_sets.map(encode_command)
any_pdvs = st.builds(
    PDV, st.sampled_from([1, 3, 255]), st.integers(0, 3), pdv_payloads.map(memoryview)
)


@settings(max_examples=150, deadline=None)
@given(st.lists(any_pdvs, max_size=8))
def test_assembler_raises_only_message_error(pdvs: list[PDV]) -> None:
    check_assembler(pdvs)


@st.composite
def messages(draw: st.DrawFn) -> tuple[CommandSet, bytes | None]:
    command = draw(command_sets)
    dataset = draw(st.none() | st.binary(min_size=0, max_size=300))
    command[0x0800] = 0x0101 if dataset is None else 0x0000
    return command, dataset


def _over_the_wire(pdv: PDV) -> tuple[PDV, ...]:
    """The PDV as the receiving side decodes it from a P-DATA-TF."""
    pdu = decode_pdu(PDataTF((pdv,)).encode())
    assert isinstance(pdu, PDataTF)
    return pdu.pdvs


@settings(max_examples=100, deadline=None)
@given(st.lists(messages(), min_size=1, max_size=3), st.integers(7, 200))
def test_valid_messages_reassemble_exactly(
    sequence: list[tuple[CommandSet, bytes | None]], max_pdu: int
) -> None:
    pdvs = [
        pdv
        for command, dataset in sequence
        for sent in message_pdvs(
            1, encode_command(command), None if dataset is None else [dataset], max_pdu
        )
        for pdv in _over_the_wire(sent)
    ]
    out = check_assembler(pdvs)
    commands = [e.command for e in out if isinstance(e, CommandReceived)]
    assert commands == [c for c, _ in sequence]
    data = b"".join(bytes(e.data) for e in out if isinstance(e, DatasetFragment))
    assert data == b"".join(d for _, d in sequence if d is not None)
