"""Run a fuzz target under atheris (libFuzzer, coverage-guided) or, if atheris is missing,
under a small mutation-based fallback with the same command line.

Targets are scripts: ``python fuzz/fuzz_pdu.py CORPUS_DIR -max_total_time=300 ...``. The
fallback understands ``-max_total_time``, ``-runs``, ``-artifact_prefix`` and corpus
directories (or files, to replay a crash); it is blind to coverage, so it only finds
shallow bugs, but it checks the same invariants.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

atheris: Any
try:
    import atheris  # type: ignore[import-untyped,no-redef]
except ImportError:  # pragma: no cover - depends on the environment
    atheris = None

Target = Callable[[bytes], None]


def instrumented() -> contextlib.AbstractContextManager[Any]:
    """Instrument dicomtls for coverage when atheris is there; import it plainly otherwise."""
    if atheris is None or "pytest" in sys.modules:
        return contextlib.nullcontext()
    hook: contextlib.AbstractContextManager[Any] = atheris.instrument_imports(include=["dicomtls"])
    return hook


def fuzz_main(target: Target) -> None:
    if atheris is not None and os.environ.get("DICOMTLS_FUZZ_FALLBACK") != "1":
        atheris.Setup(sys.argv, target)
        atheris.Fuzz()
    else:
        sys.exit(_fallback(target, sys.argv[1:]))


# --- the fallback driver ---------------------------------------------------------------------


def _inputs(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            yield file.read_bytes()


def _mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if not buf:
            buf += rng.randbytes(rng.randint(1, 16))
        i = rng.randrange(len(buf))
        if op == 0:
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[i] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            buf[i:i] = rng.randbytes(rng.randint(1, 8))
        elif op == 3:
            del buf[i : i + rng.randint(1, 8)]
        elif op == 4:
            del buf[i:]
        elif op == 5 and len(buf) >= i + 4:  # a length field: 16 or 32 bits, big endian
            width = rng.choice((2, 4))
            value = rng.choice((0, 1, 2, 4, 0xFFFF, 0xFFFFFFFF, rng.randrange(1 << 16)))
            buf[i : i + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big")
        else:  # splice in part of another input
            other = rng.choice(pool)
            j = rng.randrange(len(other) + 1)
            buf[i:i] = other[j : j + rng.randint(1, 64)]
    return bytes(buf)


def _fallback(target: Target, argv: list[str]) -> int:
    options = {a[1:].split("=", 1)[0]: a.split("=", 1)[1] for a in argv if a.startswith("-")}
    paths = [Path(a) for a in argv if not a.startswith("-")]
    max_time = float(options.get("max_total_time", "60"))
    max_runs = int(options.get("runs", "-1"))
    prefix = options.get("artifact_prefix", "./")
    pool = [d for d in _inputs(paths)] or [b""]
    replay = all(p.is_file() for p in paths) and paths
    rng = random.Random(int(options.get("seed", "0")) or None)
    start = time.monotonic()
    runs = 0
    while True:
        if replay:
            if runs >= len(pool):
                break
            data = pool[runs]
        else:
            if (max_runs >= 0 and runs >= max_runs) or time.monotonic() - start > max_time:
                break
            data = pool[runs] if runs < len(pool) else _mutate(rng, rng.choice(pool), pool)
        try:
            target(data)
        except Exception:
            traceback.print_exc()
            name = f"{prefix}crash-{hashlib.sha1(data).hexdigest()}"
            Path(name).write_bytes(data)
            print(f"==fallback== uncaught exception; input written to {name}", flush=True)
            return 1
        runs += 1
    elapsed = max(time.monotonic() - start, 1e-9)
    print(
        f"#{runs}\tDONE   cov: n/a (fallback driver) corp: {len(pool)} "
        f"exec/s: {int(runs / elapsed)}",
        flush=True,
    )
    return 0
