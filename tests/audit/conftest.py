"""Fixtures for the audit tests: the schema, and a real rsyslogd (see rsyslog.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from .rsyslog import audit_pki, rsyslog

__all__ = ["audit_pki", "rsyslog", "schema"]

SCHEMA = Path(__file__).with_name("audit-message.rng")


@pytest.fixture(scope="session")
def schema() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(SCHEMA)))
