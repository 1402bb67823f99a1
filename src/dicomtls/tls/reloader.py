"""Certificate rotation and CRL refresh without a restart.

A :class:`ReloadingSettings` holds the :class:`TLSSettings` in force and the
identity (inode, size, modification time) of every file they were read from.
Each new connection asks it for the settings (``settings()``): when a file
changed on disk it rebuilds them from the same arguments, which rereads and
rechecks every file and builds a fresh OpenSSL context. Connections already
running keep the context they started with; new ones get the new one. A
broken new file (a key that does not match, a half-written PEM) is refused
with one log line and the old settings stay in force until the files are fixed.

Checking costs a few ``stat`` calls per new connection, and nothing at all
while no one connects: no timer, no thread. ``reload()`` forces a reread (SIGHUP).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from pathlib import Path

from dicomtls.logs import get_logger
from dicomtls.tls.errors import TLSError
from dicomtls.tls.flags import Side
from dicomtls.tls.settings import TLSSettings, as_paths

__all__ = ["ReloadingSettings"]

log = get_logger("dicomtls.tls")

_Signature = tuple[tuple[str, tuple[int, int, int] | None], ...]


def watched_files(settings: TLSSettings) -> list[Path]:
    """Every file the settings were read from (a CA directory counts with its entries)."""
    files = [*as_paths(settings.certificate), *as_paths(settings.private_key)]
    files += [*as_paths(settings.ca_files), *as_paths(settings.crl_files)]
    if settings.ca_directory is not None:
        directory = Path(settings.ca_directory)
        files.append(directory)
        if directory.is_dir():
            files += sorted(p for p in directory.iterdir() if p.is_file())
    return files


def _signature(files: list[Path]) -> _Signature:
    def stat(path: Path) -> tuple[int, int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    return tuple((str(path), stat(path)) for path in files)


class ReloadingSettings:
    """TLS settings that follow their files on disk; call it for the settings in force."""

    def __init__(
        self,
        settings: TLSSettings,
        side: Side = Side.SERVER,
        *,
        on_reload: Callable[[TLSSettings | None, str | None], None] | None = None,
        quiet: bool = False,
    ) -> None:
        """``on_reload(new, None)`` after a successful reload, ``(None, why)`` after a refused one.

        ``quiet``: log nothing (a second reloader over the same files, e.g. our client side).
        """
        self._settings = settings
        self._quiet = quiet
        self._side = side
        self._on_reload = on_reload
        self._lock = threading.Lock()  # the metrics thread may ask too
        self._signature = _signature(watched_files(settings))
        self._refused: _Signature | None = None
        self.generation = 0
        """How many times new settings took over."""

    @property
    def current(self) -> TLSSettings:
        """The settings in force, without looking at the files."""
        return self._settings

    def __call__(self) -> TLSSettings:
        """The settings for a new connection: reloaded first if a file changed."""
        signature = _signature(watched_files(self._settings))
        if signature != self._signature and signature != self._refused:
            self._reload(signature, "changed on disk")
        return self._settings

    def reload(self) -> bool:
        """Reread every file now (SIGHUP); False when the new files were refused."""
        return self._reload(_signature(watched_files(self._settings)), "reload requested")

    def _reload(self, signature: _Signature, why: str) -> bool:
        with self._lock:
            old = self._settings
            try:
                new = dataclasses.replace(old)  # rereads and rechecks every file
                new.context(self._side)  # and OpenSSL must accept them together
            except (TLSError, ValueError, OSError) as exc:
                self._refused = signature
                message = f"TLS files {why} but were refused, still using the previous ones: {exc}"
                if not self._quiet:
                    log.error("%s", message)
                self._notify(None, message)
                return False
            self._settings = new
            self._signature = signature
            self._refused = None
            self.generation += 1
        if not self._quiet:
            log.warning("TLS files %s: reloaded (%s)", why, new.describe())
        self._notify(new, None)
        return True

    def _notify(self, new: TLSSettings | None, error: str | None) -> None:
        if self._on_reload is None:
            return
        try:
            self._on_reload(new, error)
        except Exception:
            log.exception("TLS reload observer failed")
