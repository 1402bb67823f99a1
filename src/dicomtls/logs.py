"""The loggers of dicomtls, each unable to write a raw control character into a log line.

Log lines quote peers all the time (a refused UID, a calling AE title, the reason a
certificate failed), and a single ``%s`` of a hostile value used to forge a log line or
send an escape sequence to the terminal of whoever reads the log. Escaping at every call
site would be forgotten once; so every module takes its logger from :func:`get_logger`,
which attaches :data:`PRINTABLE`, a filter that escapes the finished message with
:func:`dicomtls.text.printable`. The CLI adds the same filter to its log handler, which
also covers loggers that are not ours (asyncio's, for one).

The message is escaped whole, so a dicomtls log message is always one line: text that is
several lines on purpose (a certificate dump, the doctor's report) belongs on the
console, never in the log. A traceback (``exc_info``) keeps its lines, as it must; what
its exceptions *say* (their messages and notes, which may quote a peer) is escaped whole
like a message, and the rest (frames, our source lines) loses its control characters.
"""

from __future__ import annotations

import logging
import traceback
from types import TracebackType
from typing import TypeAlias

from dicomtls.text import printable, printable_lines

__all__ = ["PRINTABLE", "PrintableFilter", "get_logger"]

_ExcInfo: TypeAlias = (
    tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
)


def _traceback(exc_info: _ExcInfo) -> str:
    """The traceback as :meth:`logging.Formatter.formatException` writes it, made safe.

    Which chunks are messages is known from the exceptions themselves (each one's
    ``format_exception_only``); members of an exception group, whose lines the traceback
    module indents, fall back to losing only their control characters.
    """
    _, value, tb = exc_info
    if value is None:
        return "NoneType: None"
    formatted = traceback.TracebackException(type(value), value, tb, compact=True)
    said: set[str] = set()
    pending = [formatted]
    while pending:
        current = pending.pop()
        said.update(current.format_exception_only())
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
        pending += current.exceptions or []
    chunks = (
        printable(chunk.removesuffix("\n")) + "\n" if chunk in said else printable_lines(chunk)
        for chunk in formatted.format()
    )
    return "".join(chunks).removesuffix("\n")


class PrintableFilter(logging.Filter):
    """Escapes each record's message (and traceback) in place; never drops a record.

    A message with nothing to escape keeps its ``msg`` and ``args``, so handlers that
    group records by their format string still can; one with something to escape becomes
    its escaped text, with no arguments left to format.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True  # a broken call: logging reports it when a handler formats it
        escaped = printable(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _traceback(record.exc_info)
        return True


PRINTABLE = PrintableFilter()
"""The one filter instance: adding it twice to a logger or handler is a no-op."""


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with :data:`PRINTABLE` attached (once)."""
    logger = logging.getLogger(name)
    logger.addFilter(PRINTABLE)
    return logger
