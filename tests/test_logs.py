"""The loggers of dicomtls: a hostile value cannot start a log line or reach the terminal raw."""

from __future__ import annotations

import importlib
import io
import logging
import pkgutil
from collections.abc import Iterator
from typing import TextIO

import pytest

import dicomtls
from dicomtls.logs import PRINTABLE, get_logger

FORGED_LINE = "2026-01-01 00:00:00 WARNING dicomtls.net: FORGED"
HOSTILE = f"1.2.3\n{FORGED_LINE}\x1b[2J\u202e\x85"
ESCAPED = f"1.2.3\\n{FORGED_LINE}\\x1b[2J\\u202e\\x85"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # the CLI's


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    """What a handler like the CLI's writes for the logger ``dicomtls.test``."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    logger = get_logger("dicomtls.test")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_a_hostile_argument_stays_inside_its_line(written: io.StringIO) -> None:
    log = get_logger("dicomtls.test")
    log.warning("C-STORE from %s of %s refused", "127.0.0.1:5000", HOSTILE)
    log.warning(f"the same in an f-string: {HOSTILE}")  # a careless call site
    log.warning("%r as repr", HOSTILE)
    lines = _lines(written)
    assert len(lines) == 3
    assert all(" WARNING dicomtls.test: " in line for line in lines)
    assert not any(line.startswith(FORGED_LINE) for line in lines)
    assert "\x1b" not in written.getvalue() and "\u202e" not in written.getvalue()
    assert lines[0].endswith(f"C-STORE from 127.0.0.1:5000 of {ESCAPED} refused")
    assert lines[1].endswith(f"the same in an f-string: {ESCAPED}")


def test_a_traceback_keeps_its_lines_but_not_the_peers(written: io.StringIO) -> None:
    log = get_logger("dicomtls.test")
    try:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise ValueError(f"bad UID {HOSTILE}") from exc
    except ValueError:
        log.exception("handler for %s failed", "127.0.0.1:5001")
    text = written.getvalue()
    lines = _lines(written)
    assert lines[0].endswith("ERROR dicomtls.test: handler for 127.0.0.1:5001 failed")
    assert "Traceback (most recent call last):" in lines
    assert "The above exception was the direct cause of the following exception:" in lines
    assert f"ValueError: bad UID {ESCAPED}" in lines
    assert not any(line.startswith(FORGED_LINE) for line in lines)
    assert "\x1b" not in text and "\x85" not in text


def test_a_clean_message_keeps_its_format_and_arguments() -> None:
    """Handlers that group records by format string still can."""
    records: list[logging.LogRecord] = []
    logger = get_logger("dicomtls.test.args")

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning("association from %s rejected", "127.0.0.1:5002")
        logger.warning("association from %s rejected", HOSTILE)
    finally:
        logger.removeHandler(handler)
    assert records[0].msg == "association from %s rejected"
    assert records[0].args == ("127.0.0.1:5002",)
    assert records[1].getMessage() == f"association from {ESCAPED} rejected"


def test_a_broken_call_is_still_reported_by_logging() -> None:
    """The filter never swallows a record, not even one whose arguments do not fit: the
    handler still gets it, and logging's own error report (handleError) still happens."""
    failed: list[object] = []

    class Reporting(logging.StreamHandler[TextIO]):
        def handleError(self, record: logging.LogRecord) -> None:
            failed.append(record.msg)

    logger = get_logger("dicomtls.test.broken")
    handler = Reporting(io.StringIO())
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("%d objects", "not a number")
    finally:
        logger.removeHandler(handler)
    assert failed == ["%d objects"]


def test_a_module_that_names_its_logger_itself_is_covered() -> None:
    """node/store_scp.py (like net/scp.py and net/association.py) still calls
    logging.getLogger: the logger is the same object, and its filter is ours."""
    from dicomtls.node import node, store_scp

    assert store_scp.log is node.log
    assert PRINTABLE in store_scp.log.filters


def test_every_dicomtls_logger_escapes() -> None:
    """Import every module: no logger of ours is without the filter, whoever made it."""
    for module in pkgutil.walk_packages(dicomtls.__path__, "dicomtls."):
        importlib.import_module(module.name)
    ours = [
        logger
        for name, logger in logging.Logger.manager.loggerDict.items()
        if name.startswith("dicomtls.")
        and not name.startswith("dicomtls.test")
        and isinstance(logger, logging.Logger)
    ]
    assert {logger.name for logger in ours} >= {
        "dicomtls.net",
        "dicomtls.node",
        "dicomtls.tls",
        "dicomtls.audit",
    }
    assert all(PRINTABLE in logger.filters for logger in ours), [
        logger.name for logger in ours if PRINTABLE not in logger.filters
    ]
