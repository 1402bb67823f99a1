"""Fuzz target: the acceptor's upper-layer state machine fed the input in pieces.

Driven like the SCP drives it (answer the request, reassemble data, agree to release).
Invariants: no exception at all; an A-ABORT written whenever we abort; only valid PDUs
written; the reader never holds more than one allowed PDU; a closed transport ends it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._driver import fuzz_main, instrumented

with instrumented():
    from fuzz._oracles import check_upper_layer

_MAX_PDU = (16384, 65536, 4 << 20)


def TestOneInput(data: bytes) -> None:
    sizes = bytes((len(data) & 0xFF, len(data) >> 8 & 0xFF, data[-1] if data else 0))
    check_upper_layer(data, sizes, _MAX_PDU[len(data) % 3], len(data) * 0x9E37 & 0x3FF)


if __name__ == "__main__":
    fuzz_main(TestOneInput)
