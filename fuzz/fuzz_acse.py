"""Fuzz target: decode an A-ASSOCIATE-RQ, then negotiate it (answer_request).

The PDU length field is set to match the input so that every input reaches the item
decoders. Invariants: only PDUError while decoding; answer_request always returns an AC or
an RJ that encodes; the AC answers each context once, accepts only offered transfer
syntaxes, and answers role selections only for accepted SOP classes, once each.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._driver import fuzz_main, instrumented

with instrumented():
    from fuzz._oracles import check_acse


def TestOneInput(data: bytes) -> None:
    check_acse(data, len(data) * 0x9E37 & 0x3FF)


if __name__ == "__main__":
    fuzz_main(TestOneInput)
