"""Fixtures for the audit tests: the schema (the real rsyslogd is in the root conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

__all__ = ["SCHEMA", "schema"]

SCHEMA = Path(__file__).with_name("audit-message.rng")


@pytest.fixture(scope="session")
def schema() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(SCHEMA)))
