"""Fuzz target: DIMSE command-set decoding and PDV reassembly.

The input is tried three ways: as a command set (decode_command, command_field: only
CommandError; decoded sets round-trip), as a stream of P-DATA-TF PDUs whose PDVs go to a
MessageAssembler, and as a compact PDV list ([context, control, length, payload]*); the
assembler may raise MessageError only.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._driver import fuzz_main, instrumented

with instrumented():
    from dicomtls.ul import PDV, PDataTF, PDUError, PDUReader
    from fuzz._oracles import check_assembler, check_command, pdvs_from


def _pdvs_of_stream(data: bytes) -> Iterator[PDV]:
    """The PDVs of the P-DATA-TF PDUs at the start of ``data``, up to a malformed one."""
    reader = PDUReader()
    reader.feed(data)
    try:
        for pdu in reader:
            if isinstance(pdu, PDataTF):
                yield from pdu.pdvs
    except PDUError:
        return


def TestOneInput(data: bytes) -> None:
    check_command(data)
    pdvs = list(_pdvs_of_stream(data))
    if pdvs:
        check_assembler(pdvs)
    else:
        check_assembler(pdvs_from(data))


if __name__ == "__main__":
    fuzz_main(TestOneInput)
