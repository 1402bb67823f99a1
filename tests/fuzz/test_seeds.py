"""The captured DCMTK, pynetdicom and dicomtls sessions (fuzz/corpus, made by
fuzz/capture_seeds.py) parse cleanly, round-trip, and pass every fuzzing oracle."""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzz._oracles import (
    check_acse,
    check_assembler,
    check_command,
    check_pdu,
    check_reader,
    check_upper_layer,
)

from dicomtls.dimse.command import command_field, decode_command, encode_command
from dicomtls.dimse.pdv import CommandReceived, DatasetFragment
from dicomtls.ul import (
    AbortReason,
    AbortSource,
    AssociateAC,
    AssociateRQ,
    PDataTF,
    PDUReader,
    decode_pdu,
)
from dicomtls.ul.acse import AcceptorPolicy, answer_request
from dicomtls.ul.connection import (
    Aborted,
    AssociationRequested,
    Closed,
    DataReceived,
    ReleaseRequested,
    Role,
    UpperLayer,
)
from tests.fuzz.seeds import files

STREAMS = files("pdu", ".stream")
PDU_FILES = files("pdu", ".pdu")
COMMAND_FILES = files("dimse", ".command")
PDATA_FILES = files("dimse", ".pdata")
ACCEPTOR_INPUTS = files("upper_layer", ".stream")
REQUESTS = files("acse", ".pdu")


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_the_corpus_covers_every_kind_of_session() -> None:
    names = " ".join(p.name for p in STREAMS)
    for session in (
        "dcmtk-echoscu",
        "dcmtk-storescu",
        "dcmtk-findscu",
        "pynetdicom-scu",
        "ours-store-dcmtk-storescp",
        "dcmtk-echoscu-rejected",
        "dcmtk-echoscu-abort",
    ):
        assert f"{session}.to-acceptor" in names, session
    kinds = {p.name.rsplit("-", 1)[-1] for p in PDU_FILES}
    assert {"rq.pdu", "ac.pdu", "rj.pdu", "pdata.pdu", "rp.pdu", "abort.pdu"} <= kinds
    total = sum(p.stat().st_size for p in Path(STREAMS[0]).parents[1].rglob("*") if p.is_file())
    assert total < 1 << 20, f"the committed corpus is {total} bytes"


@pytest.mark.parametrize("path", STREAMS, ids=_ids(STREAMS))
def test_real_streams_frame_cleanly_and_round_trip(path: Path) -> None:
    stream = path.read_bytes()
    reader = PDUReader()
    reader.feed(stream)
    pdus = list(reader)  # no PDUError: real peers' bytes are valid
    assert pdus and reader.buffered == 0
    assert b"".join(p.encode() for p in pdus if not isinstance(p, AssociateRQ | AssociateAC)) == (
        b"".join(
            f.read_bytes()
            for f in sorted(path.parent.glob(f"{path.stem}.*.pdu"))
            if f.read_bytes()[0] not in (1, 2)
        )
    )
    for pdu in pdus:
        assert decode_pdu(pdu.encode()) == pdu
    for sizes in (b"\x00", b"\x06\x01\xff", b"\x49"):
        check_reader(stream, sizes, 0)


@pytest.mark.parametrize("path", PDU_FILES, ids=_ids(PDU_FILES))
def test_real_pdus_pass_the_codec_oracle(path: Path) -> None:
    data = path.read_bytes()
    pdu = check_pdu(data)
    assert pdu is not None
    if path.name.startswith("ours-") and ".to-acceptor." in path.name:
        assert pdu.encode() == data, "our own PDUs re-encode byte for byte"


@pytest.mark.parametrize("path", COMMAND_FILES, ids=_ids(COMMAND_FILES))
def test_real_command_sets_decode_and_round_trip(path: Path) -> None:
    data = path.read_bytes()
    command = decode_command(data)
    command_field(command)  # every real command carries what it must
    assert decode_command(encode_command(command)) == command
    check_command(data)


@pytest.mark.parametrize("path", PDATA_FILES, ids=_ids(PDATA_FILES))
def test_real_pdata_reassembles_into_the_captured_commands(path: Path) -> None:
    reader = PDUReader()
    reader.feed(path.read_bytes())
    pdvs = [pdv for pdu in reader if isinstance(pdu, PDataTF) for pdv in pdu.pdvs]
    out = check_assembler(pdvs)
    commands = [e.command for e in out if isinstance(e, CommandReceived)]
    captured = sorted(path.parent.glob(f"{path.stem}.*.command"))
    assert commands == [decode_command(c.read_bytes()) for c in captured]
    fragments = [e for e in out if isinstance(e, DatasetFragment)]
    assert all(not isinstance(e, tuple) for e in out)
    assert sum(e.last for e in fragments) == sum(c.get(0x0800) != 0x0101 for c in commands)


@pytest.mark.parametrize("path", REQUESTS, ids=_ids(REQUESTS))
def test_real_requests_negotiate(path: Path) -> None:
    for selector in (0, 0x0FF, 0x100, 0x2AA, 0x3FF):
        check_acse(path.read_bytes(), selector)


@pytest.mark.parametrize("path", ACCEPTOR_INPUTS, ids=_ids(ACCEPTOR_INPUTS))
def test_real_sessions_drive_an_acceptor_to_the_end(path: Path) -> None:
    stream = path.read_bytes()
    for sizes, max_pdu in ((b"\xff", 1 << 20), (b"\x00\x05", 16384), (b"\x40", 4 << 20)):
        check_upper_layer(stream, sizes, max_pdu, 0x3FF)

    # Accepting everything, the session runs exactly as the real peer meant it to.
    ul = UpperLayer(Role.ACCEPTOR, max_pdu_length=1 << 20)
    kinds: list[type] = []
    for event in ul.receive_data(stream[: 6 + int.from_bytes(stream[2:6], "big")]):
        kinds.append(type(event))
        assert isinstance(event, AssociationRequested)
        rq = event.request
        supported: dict[str, list[str]] = {}
        for context in rq.presentation_contexts:
            supported.setdefault(context.abstract_syntax, []).extend(context.transfer_syntaxes)
        answer = answer_request(rq, AcceptorPolicy("X", supported, require_called_ae=False))
        assert isinstance(answer, AssociateAC)
        ul.accept(answer)
    events = ul.receive_data(stream[6 + int.from_bytes(stream[2:6], "big") :])
    kinds += [type(e) for e in events]
    assert kinds[0] is AssociationRequested
    if "abort" in path.name:  # echoscu --abort: A-ABORT from the service user after the echo
        assert DataReceived in kinds and kinds[-2:] == [Aborted, Closed]
        aborted = events[-2]
        assert isinstance(aborted, Aborted)
        assert aborted == Aborted(
            AbortSource.SERVICE_USER, AbortReason.REASON_NOT_SPECIFIED, True, aborted.message
        )
        assert ul.ended
    elif "rejected" in path.name:  # the node refused it, so the peer sent nothing more
        assert kinds == [AssociationRequested]
    else:
        assert DataReceived in kinds and kinds[-1] is ReleaseRequested
        assert not any(isinstance(e, Aborted) for e in events)
