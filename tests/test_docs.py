"""docs/architecture.md names modules and functions so a newcomer can jump to them: each
named file must exist, and each named function or class must be defined in that file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "dicomtls"
DOC = ROOT / "docs" / "architecture.md"

# `net/link.py` or `net/link.py` (`serve`, `_LinkProtocol`)
REFERENCE = re.compile(r"`([a-z_]+/[a-z_]+\.py|[a-z_]+\.py)`(?: \(([^)]*)\))?")


def _references() -> list[tuple[str, list[str]]]:
    found = []
    for path, names in REFERENCE.findall(DOC.read_text()):
        found.append((path, re.findall(r"`([A-Za-z_][\w.]*)`", names)))
    return found


def test_the_page_names_modules() -> None:
    assert len(_references()) > 20  # the pattern still reads the page


@pytest.mark.parametrize(("path", "names"), _references())
def test_each_module_and_function_named_exists(path: str, names: list[str]) -> None:
    source = PACKAGE / path
    assert source.is_file(), f"docs/architecture.md names {path}, which is not in src/dicomtls"
    text = source.read_text()
    for name in names:
        last = name.rsplit(".", 1)[-1]
        assert re.search(rf"^\s*(?:async def|def|class) {re.escape(last)}\b", text, re.M), (
            f"docs/architecture.md names {name} in {path}, which defines no such thing"
        )
