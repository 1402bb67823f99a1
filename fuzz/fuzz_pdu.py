"""Fuzz target: PDU framing (PDUReader) and decoding (decode_pdu) of any byte stream.

Invariants (fuzz/_oracles.py): only PDUError escapes; whatever decodes round-trips; the
stream frames the same fed whole or in pieces; never more buffered than one allowed PDU.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._driver import fuzz_main, instrumented

with instrumented():
    from fuzz._oracles import check_pdu, check_reader

_MAX_PDU = (0, 16384, 4 << 20)


def TestOneInput(data: bytes) -> None:
    check_pdu(data)
    sizes = bytes((len(data) & 0xFF, data[-1] if data else 0, len(data) >> 8 & 0xFF))
    check_reader(data, sizes, _MAX_PDU[len(data) % 3])


if __name__ == "__main__":
    fuzz_main(TestOneInput)
