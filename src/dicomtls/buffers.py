"""Large byte buffers used again once nothing can see them any more.

A block read from a file and the ciphertext taken from the TLS engine leave their owner as
memoryviews (PDVs cut from the block, handed to the TLS engine or queued by the transport
when the socket is full), and whoever holds such a view may keep it for a while. A fresh
buffer of megabytes costs an allocation and, when the allocator returns memory to the kernel
and takes it again, page faults; a reused one costs neither, but it may be reused only once
no view of it is left. CPython's bytearray knows: it refuses to change size while any buffer
export of it exists (every memoryview and every slice of one, every C call holding its
Py_buffer), so :func:`viewed` asks it that.
"""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["BufferPool", "viewed"]


def viewed(buffer: bytearray) -> bool:
    """Whether some view of ``buffer`` still exists, anywhere (any thread).

    A one-byte shrink and regrow: bytearray raises BufferError before changing anything
    while it is exported, and within its allocation neither step moves or copies it.
    """
    if not buffer:
        return False
    try:
        last = buffer.pop()
    except BufferError:
        return True
    buffer.append(last)
    return False


class BufferPool:
    """Bytearrays of ``smallest`` to ``largest`` bytes, kept after use and handed out again
    once :func:`viewed` says nothing sees them, up to ``budget`` bytes kept per thread.

    Per thread, so without a lock: the event loop that takes a buffer gives it back. A
    buffer given back while views of it are out is handed out only after they are gone.
    """

    def __init__(self, smallest: int, largest: int, budget: int) -> None:
        self._smallest = smallest
        self._largest = largest
        self._budget = budget
        self._local = threading.local()

    def _kept(self) -> deque[bytearray]:
        kept: deque[bytearray] | None = getattr(self._local, "kept", None)
        if kept is None:
            kept = self._local.kept = deque()
        return kept

    def take(self, size: int) -> bytearray:
        """A bytearray of exactly ``size`` bytes, its content undefined: a kept one nothing
        views any more, else a new one."""
        if self._smallest <= size <= self._largest:
            kept = self._kept()
            for index, buffer in enumerate(kept):
                if len(buffer) == size and not viewed(buffer):
                    del kept[index]
                    return buffer
        return bytearray(size)

    def give_back(self, buffer: bytearray) -> None:
        """Keep ``buffer`` for a later :meth:`take` (once its views are gone); the oldest
        kept ones are dropped beyond the budget."""
        kept = self._kept()
        if not self._smallest <= len(buffer) <= self._largest or any(b is buffer for b in kept):
            return
        kept.append(buffer)
        total = sum(len(b) for b in kept)
        while total > self._budget:
            total -= len(kept.popleft())
