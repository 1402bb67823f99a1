"""The compatibility table's raw material: what each interop transfer did, one JSON line each.

Each test records every outcome it asserts on, as it happens, into the file named by
``DICOMTLS_INTEROP_RESULTS`` (nothing is written when it is unset); ``table.py`` runs the
suite with it set and renders ``docs/interop.md`` from the lines.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

RESULTS_ENV = "DICOMTLS_INTEROP_RESULTS"


@dataclass(frozen=True)
class Outcome:
    """One cell: ``peer`` x ``service`` x ``direction`` x ``syntax`` (empty for echo, find)."""

    peer: str
    service: str
    direction: str
    syntax: str
    result: str
    ok: bool


def record(outcome: Outcome) -> Outcome:
    """Append the outcome to the results file, if a table is being made."""
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as results:
            results.write(json.dumps(asdict(outcome), ensure_ascii=False) + "\n")
    return outcome


def read(path: str) -> list[Outcome]:
    with open(path, encoding="utf-8") as results:
        return [Outcome(**json.loads(line)) for line in results if line.strip()]
