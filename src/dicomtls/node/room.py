"""How much of its disk a store may take: a free-space floor, and a bound on one run's bytes.

A peer with a valid certificate may store until the disk is full, and the index (SQLite and
its WAL) and the audit file usually live on that disk: once it is full, the index cannot
record what arrives and the audit records of everyone else's work are lost. So a store
keeps a **floor**: an object is refused (A700H Out of Resources, which a sender may retry
later) when the disk's free space is below it, before the disk is full, and what is left
stays for the index and the audit trail. A C-STORE announces no size (PS3.7 9.3.1), so
the floor is checked (one statvfs) when an object begins and again every :data:`CHECK_STEP`
bytes it brings: an object begun just above the floor goes below it by at most that much.

A C-GET into a folder (``dicomtls get --out``) has the same floor and, given
``max_bytes``, a bound on what one retrieval may bring: past it an object is refused and the
retrieval cancelled (:attr:`Room.refused` says why).
"""

from __future__ import annotations

import errno
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from dicomtls.errors import DicomTLSError

__all__ = [
    "CHECK_STEP",
    "DEFAULT_FLOOR",
    "Floor",
    "OutOfRoom",
    "Room",
    "parse_floor",
    "parse_size",
    "size_text",
]

#: Bytes an object brings between two looks at the disk's free space.
CHECK_STEP = 1 << 20
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?", re.IGNORECASE)


class OutOfRoom(DicomTLSError, OSError):
    """Refused before the disk is full: below the floor, or past a retrieval's bound (an
    ENOSPC of our own making, so whatever handles a full disk handles it)."""


def parse_size(value: str | int) -> int:
    """Bytes from ``1073741824``, ``"1GiB"``, ``"500 MB"`` or ``"2.5G"`` (KB = 1000, KiB = 1024)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"size {value!r}: give bytes, or a number with a unit, e.g. 1GiB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size {value}: give bytes >= 0")
        return value
    found = _SIZE.fullmatch(value.strip())
    if found is None:
        raise ValueError(f"size {value!r}: give bytes, or a number with a unit, e.g. 1GiB, 500MB")
    number, prefix, binary = found.groups()
    unit = 1024 ** "_kmgt".index(prefix.lower()) if binary else _UNITS[prefix.lower()]
    return int(float(number) * unit)


def size_text(size: int) -> str:
    """``size`` bytes as a person reads them: 812.4 MiB."""
    amount, unit = float(size), "bytes"
    for name in ("KiB", "MiB", "GiB", "TiB"):
        if amount < 1024:
            break
        amount, unit = amount / 1024, name
    return f"{size:,} bytes" if unit == "bytes" else f"{amount:.1f} {unit}"


@dataclass(frozen=True)
class Floor:
    """The free space a store leaves on its disk: ``size`` bytes or ``fraction`` of the disk,
    whichever is smaller (either may be None); ``Floor(0, None)`` is none at all."""

    size: int | None = 1 << 30
    fraction: float | None = 0.05

    def of(self, disk: int) -> int:
        """The floor in bytes on a disk of ``disk`` bytes."""
        given = [self.size, None if self.fraction is None else int(disk * self.fraction)]
        return min(b for b in given if b is not None) if any(b is not None for b in given) else 0

    def describe(self) -> str:
        parts = [size_text(self.size) if self.size is not None else None]
        parts.append(f"{self.fraction:.0%} of the disk" if self.fraction is not None else None)
        return " or ".join(p for p in parts if p) + (
            ", whichever is smaller" if None not in parts else ""
        )


DEFAULT_FLOOR = Floor()
"""1 GiB or 5% of the disk, whichever is smaller: a large store's disk keeps a day of index
growth and audit records, a small disk does not lose a tenth of itself to the floor."""


def parse_floor(value: str | int) -> Floor:
    """A floor as a setting gives it: a size (``"1GiB"``, 0 for none) or a share (``"5%"``)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1])
        except ValueError:
            share = -1.0
        if not 0 <= share < 100:
            raise ValueError(f"free space {value!r}: give a share from 0% to 99%, or a size")
        return Floor(None, share / 100)
    return Floor(parse_size(value), None)


class Room:
    """What a store at ``folder`` may still take: :meth:`admit` an object, :meth:`take` its
    bytes as they come, :meth:`give_back` those of an object that is not kept. Thread-safe:
    objects are written from worker threads."""

    def __init__(self, folder: Path, floor: Floor, max_bytes: int | None = None) -> None:
        self.folder = folder
        stat = os.statvfs(folder)
        self.floor = floor.of(stat.f_blocks * stat.f_frsize)
        self.max_bytes = max_bytes
        self.refused: str | None = None
        """Why the first object was refused for want of room (a C-GET then cancels)."""
        self._taken = 0
        self._lock = threading.Lock()

    def why_full(self) -> str | None:
        """Why an object was refused for want of room, None if none was (a C-GET's
        ``stop_when``)."""
        return self.refused

    def free(self) -> int:
        stat = os.statvfs(self.folder)
        return stat.f_bavail * stat.f_frsize

    def admit(self) -> None:
        """Raise :class:`OutOfRoom` unless the disk is above the floor (and the bound not met)."""
        if self.floor:
            free = self.free()
            if free < self.floor:
                self._refuse(
                    f"the disk of {self.folder} has {size_text(free)} free, below its floor "
                    f"of {size_text(self.floor)} (min_free_space)"
                )
        self.take(0)

    def take(self, size: int) -> None:
        """Count ``size`` more bytes; :class:`OutOfRoom` past ``max_bytes``."""
        with self._lock:
            over = self.max_bytes is not None and self._taken + size > self.max_bytes
            if not over:
                self._taken += size
        if over:
            bound = size_text(self.max_bytes or 0)
            self._refuse(f"this retrieval has received its --max-bytes of {bound}")

    def give_back(self, size: int) -> None:
        """The bytes of an object that is not kept no longer count."""
        with self._lock:
            self._taken -= size

    def _refuse(self, why: str) -> None:
        self.refused = self.refused or why
        raise OutOfRoom(errno.ENOSPC, why)
