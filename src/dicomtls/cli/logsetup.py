"""Where the command's log lines go, at what level, and which ones it says itself instead.

Every handler gets :data:`~dicomtls.logs.PRINTABLE`, so lines quoting a peer are escaped
whoever logs them (asyncio too), and so are warnings, which are logged. A client command reports a failed TLS handshake as its
error, the one line the user needs; the secure link logs the same failure as a warning
for servers, where no one else would, so :class:`SaidElsewhere` drops that copy.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

from dicomtls.logs import PRINTABLE

__all__ = ["LEVELS", "SaidElsewhere", "configure", "handshake_failures_said_here"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: int, file: Path | None = None) -> logging.Handler:
    """Log at ``level`` to stderr, or appended to ``file``; replaces earlier handlers."""
    handler: logging.Handler
    handler = (
        logging.StreamHandler() if file is None else logging.FileHandler(file, encoding="utf-8")
    )
    handler.addFilter(PRINTABLE)
    handler.setFormatter(logging.Formatter(_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    _warnings_logged()
    return handler


def _warnings_logged() -> None:
    """Warnings go through the log handler, escaped like every line, never to stderr as
    they are: a library's warning may quote a peer (pydicom's ``Unknown encoding '...'``
    quotes a Specific Character Set as the peer wrote it, line breaks and ESC included).
    pydicom logs each of its warnings already (``warn_and_log``), and so does dicomtls (a
    retired TLS profile), so their copies are dropped: the copy is the warning again, after
    a file name and a line of our source."""
    logging.captureWarnings(True)
    for logged in (r"pydicom(\.|$)", r"dicomtls(\.|$)"):
        warnings.filterwarnings("ignore", category=UserWarning, module=logged)


#: How :class:`~dicomtls.tls.errors.TLSHandshakeError` begins; matched when a record's
#: arguments were already turned into text (a message with something escaped).
_HANDSHAKE = re.compile(r"^TLS handshake with \S+ failed \((?P<side>client|server) side, stage ")


class SaidElsewhere(logging.Filter):
    """Drops the log records of TLS handshake failures of ``sides`` (the command reports them)."""

    def __init__(self, *sides: str) -> None:
        super().__init__()
        self.sides = frozenset(sides)

    def filter(self, record: logging.LogRecord) -> bool:
        from dicomtls.tls.errors import TLSHandshakeError

        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) == 1 and isinstance(args[0], TLSHandshakeError):
            return str(args[0].side) not in self.sides
        try:
            found = _HANDSHAKE.match(record.getMessage())
        except Exception:
            return True
        return found is None or found["side"] not in self.sides


@contextlib.contextmanager
def handshake_failures_said_here(*sides: str) -> Iterator[None]:
    """While inside, the link's log lines for failed handshakes of ``sides`` stay off the
    root handlers: the command shows those failures itself."""
    said = SaidElsewhere(*sides)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(said)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(said)
