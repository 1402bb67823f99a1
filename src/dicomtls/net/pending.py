"""Bounds on TLS handshakes in progress: what a peer that has proven nothing can make us hold.

Each pending handshake costs an OpenSSL connection and its record buffers, for as long as
the handshake timeout allows: 55-65 KiB measured, from a peer that says nothing to one
whose whole ClientHello was answered. Without a bound, 4,000 such connections took a node
from 56 to 270-310 MiB. :class:`PendingHandshakes` counts them per peer address and in
total; a connection over either bound is closed before any TLS work is done for it (the
same flood then peaks 35-40 MiB above the start).

A flood must not flood the log either: the first refusal of an episode names the bound
and the peer, the first refusal from each further address over its own bound names that
address (up to :data:`_NAMED_PER_EPISODE`), everything else is counted and summed up in
one line when the flood is over (no handshake pending any more) or once a minute while
it goes on.

When the count falls back to zero after a high mark, :func:`return_memory` asks glibc to
give freed heap pages back to the system: OpenSSL's buffers are freed, but the heap they
fragmented keeps the process's RSS at its peak otherwise (measured after 512 pending: 97
MiB kept without it, 66 MiB with it, 56 before the flood; after 4,000 unbounded: 312 MiB
kept, 77 MiB trimmed, in 12 ms). Lowering glibc's mmap or trim thresholds (``mallopt``)
gave nothing back; only the trim did.
"""

from __future__ import annotations

import ctypes
import functools
import ipaddress
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["HandshakeLimits", "PendingHandshakes", "address_key", "resident_mib", "return_memory"]

log = logging.getLogger("dicomtls.net")

#: Addresses named in the log per flood; beyond them, refusals are only counted. As many as
#: can hold the per-peer bound at once with the default bounds (512 / 32).
_NAMED_PER_EPISODE = 16
#: While a flood goes on, its summary comes this often (seconds).
_SUMMARY_EVERY = 60.0
#: Give memory back when the count falls to zero after at least this many were pending
#: (about 4 MiB of handshake buffers): a quiet node never pays for the call.
_TRIM_HIGH_MARK = 64


@dataclass(frozen=True)
class HandshakeLimits:
    """How many TLS handshakes may be in progress at once, from one peer and in total.

    A legitimate peer has at most its association limit in handshakes at once (all its
    associations starting together), so the defaults sit above :class:`~dicomtls.net.scp.Limits`'
    ``max_per_peer`` (20) and ``max_associations`` (100), and cost at most about 40 MiB.
    """

    per_peer: int = 32
    """Per IP address (per /64 network for IPv6, which one host usually holds whole)."""
    total: int = 512

    def __post_init__(self) -> None:
        if self.per_peer < 1 or self.total < 1:
            raise ValueError(f"handshake limits must be >= 1, got {self}")


def address_key(host: str) -> str:
    """Whose quota a connection from ``host`` counts against: the IPv4 address, or the
    IPv6 /64 network (one host is usually given a whole /64, so one address per connection
    would cost an attacker nothing)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class PendingHandshakes:
    """The TLS handshakes in progress on one server, bounded per peer address and in total.

    ``admit`` is asked before any TLS work; every admitted connection is ``release``\\ d
    once when its handshake ends (done, failed, timed out or the peer gone).
    """

    def __init__(
        self,
        limits: HandshakeLimits,
        on_refused: Callable[[str, str], None] | None = None,
        *,
        give_back: Callable[[], None] | None = None,
    ) -> None:
        self.limits = limits
        self._on_refused = on_refused
        self._give_back = give_back if give_back is not None else return_memory
        self._per_peer: Counter[str] = Counter()
        self.total = 0
        self._high = 0  # most pending at once since the count was last zero
        self._episode: _Episode | None = None

    def pending(self, key: str) -> int:
        return self._per_peer[key]

    def admit(self, key: str, peer: str, *, per_peer: bool = True) -> bool:
        """Count a new connection from ``peer`` (address ``key``), or refuse it: False.

        ``per_peer=False``: a trusted proxy's connection awaiting its PROXY header, counted
        in the total only (one balancer carries every client).
        """
        if self.total >= self.limits.total:
            self._refuse(key, peer, "pending-handshakes")
            return False
        if per_peer and self._per_peer[key] >= self.limits.per_peer:
            self._refuse(key, peer, "pending-handshakes-per-peer")
            return False
        self._per_peer[key] += 1
        self.total += 1
        self._high = max(self._high, self.total)
        return True

    def release(self, key: str) -> None:
        """One handshake from ``key`` has ended, whichever way."""
        self.total -= 1
        self._per_peer[key] -= 1
        if self._per_peer[key] <= 0:
            del self._per_peer[key]
        if self.total == 0:
            self._drained()

    def _refuse(self, key: str, peer: str, reason: str) -> None:
        episode = self._episode
        if episode is None:
            episode = self._episode = _Episode()
        if reason == "pending-handshakes":
            if not episode.total_named:
                episode.total_named = True
                log.warning(
                    "connection from %s refused: %d TLS handshakes already in progress "
                    "(max_pending_handshakes); further refusals are counted, not logged",
                    peer,
                    self.limits.total,
                )
        elif key not in episode.named and len(episode.named) < _NAMED_PER_EPISODE:
            episode.named.add(key)
            log.warning(
                "connection from %s refused: %d TLS handshakes from %s already in progress "
                "(max_pending_per_peer); further refusals are counted, not logged",
                peer,
                self.limits.per_peer,
                key,
            )
        episode.refused[key if key in episode.named else ""] += 1
        if self._on_refused is not None:
            self._on_refused(peer, reason)
        if time.monotonic() - episode.reported >= _SUMMARY_EVERY:
            self._summarize(episode, "still going on")
            episode.restart()

    def _drained(self) -> None:
        """No handshake pending: give memory back after a high mark, sum up the flood."""
        high, self._high = self._high, 0
        before = after = None
        if high >= _TRIM_HIGH_MARK:
            before = resident_mib()
            self._give_back()
            after = resident_mib()
        episode, self._episode = self._episode, None
        if episode is not None and episode.refused.total():
            memory = ""
            if before is not None and after is not None:
                memory = f"; memory given back: RSS {before} -> {after} MiB"
            self._summarize(episode, f"over, at most {high} were pending{memory}")

    @staticmethod
    def _summarize(episode: _Episode, state: str) -> None:
        refused = episode.refused.total()
        named = ", ".join(
            f"{count} from {key}" for key, count in episode.refused.most_common() if key and count
        )
        log.warning(
            "TLS handshake flood %s: %d connection(s) refused in %.0f s over the pending-"
            "handshake bounds%s",
            state,
            refused,
            time.monotonic() - episode.started,
            f" ({named})" if named else "",
        )


class _Episode:
    """Refusals since a flood began (or since its last summary)."""

    def __init__(self) -> None:
        self.named: set[str] = set()
        """Addresses already named in a log line: counted, not logged again."""
        self.total_named = False
        self.refused: Counter[str] = Counter()
        """Per named address; the rest under ``""``."""
        self.restart()

    def restart(self) -> None:
        self.started = self.reported = time.monotonic()
        self.refused.clear()


def resident_mib() -> int | None:
    """This process's resident memory in MiB (Linux), None where it cannot be read cheaply."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") >> 20


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on any other C library (musl, macOS, Windows)."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, ValueError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    call: Callable[[int], int] = trim
    return call


def return_memory() -> None:
    """Have glibc return free heap pages to the system (``malloc_trim(0)``); elsewhere a no-op.

    Freed memory stays in the process otherwise: the heap's top is rarely free after many
    small buffers came and went, and only the top is trimmed by itself.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
