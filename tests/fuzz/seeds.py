"""The captured real sessions in fuzz/corpus (see fuzz/capture_seeds.py), loaded once."""

from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus"


def files(target: str, suffix: str) -> list[Path]:
    return sorted((CORPUS / target).glob(f"*{suffix}"))


def _read(target: str, suffix: str) -> list[bytes]:
    return [path.read_bytes() for path in files(target, suffix)]


#: Every PDU that DCMTK, pynetdicom and dicomtls sent each other.
PDUS = _read("pdu", ".pdu")
#: Each direction of each session.
STREAMS = _read("pdu", ".stream")
#: What each requestor sent: an acceptor's input.
UPPER_LAYER = _read("upper_layer", ".stream")
#: Each A-ASSOCIATE-RQ.
REQUESTS = _read("acse", ".pdu")
#: Each command set, reassembled.
COMMANDS = _read("dimse", ".command")
