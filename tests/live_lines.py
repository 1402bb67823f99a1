"""A child process's output, read line by line by a thread as it comes, for tests to wait on."""

from __future__ import annotations

import threading
from collections.abc import Iterable


class LiveLines:
    """The lines read so far and a condition notified at each new line and at the end.

    A reader thread, because select() on a pipe cannot see lines already in Python's buffer
    and a blocking readline could wait forever; waiters hold ``changed`` while they look.
    """

    def __init__(self, stream: Iterable[str], already: Iterable[str] = ()) -> None:
        self.lines: list[str] = list(already)
        self.changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: Iterable[str]) -> None:
        for line in stream:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def join(self, timeout: float) -> None:
        self._reader.join(timeout=timeout)
