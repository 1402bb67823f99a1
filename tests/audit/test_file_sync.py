"""The file sink's lines reach the disk, not only the OS: a thread fsyncs after writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from dicomtls.audit import FileSink

from .test_transport import message


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.01)


def test_lines_are_synced_by_a_thread_and_at_close(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    sink = FileSink(path)
    assert sink.synced == 0 and not any(
        t.name.startswith("audit-fsync") for t in threading.enumerate()
    )
    sink.send(message("one"))
    _until(lambda: sink.synced >= 1)  # the caller never waited for it
    for name in ("two", "three", "four"):
        sink.send(message(name))
    sink.close()
    synced = sink.synced
    assert synced >= 2  # what came after the first fsync was synced too, at the latest at close
    assert len(path.read_bytes().splitlines()) == 4
    assert not any(t.name == "audit-fsync-audit.log" for t in threading.enumerate())
    sink.close()  # twice is harmless
    assert sink.synced == synced
