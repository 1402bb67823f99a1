"""The one JSON line an SCU peer prints for bench.py: its three clock spans and counts."""

from __future__ import annotations

import json


def print_result(
    t0: float, t1: float, t2: float, n: int, failed: int, cipher: str | None, **extra: object
) -> None:
    """``t0`` before connecting, ``t1`` once associated, ``t2`` after the last C-STORE."""
    result = {"elapsed": t2 - t0, "transfer": t2 - t1, "setup": t1 - t0, "n": n, "failed": failed}
    print(json.dumps({**result, **extra, "cipher": cipher}), flush=True)
