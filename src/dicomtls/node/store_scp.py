"""The storage SCP's handler: each C-STORE streams into the durable store, Success only once on disk."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
from pydicom.dataset import Dataset

from dicomtls.dimse.command import CommandSet, Tag
from dicomtls.dimse.status import Status
from dicomtls.node.storage import DurableStore, IncomingObject, StorageError
from dicomtls.ul.acse import IMPLEMENTATION_CLASS_UID

if TYPE_CHECKING:
    from dicomtls.net.association import Association

__all__ = ["DurableStoreHandler", "OnStored"]

log = logging.getLogger("dicomtls.node")

OnStored = Callable[[Path, Dataset], None]
"""Told of each object once it is on disk (e.g. to index it)."""


def _check_dataset(path: Path, sop_instance_uid: str, peer: str) -> tuple[int, Dataset | None]:
    """Parse what arrived (up to the pixel data) before it may count as stored.

    A failure status when pydicom cannot read it (0xC000) or it names another
    instance than the command (0xA900); else SUCCESS and the parsed header.
    """
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        for element in dataset:  # pydicom converts lazily: make every value parse now
            _ = element.value
        stored_uid = str(dataset.get("SOPInstanceUID", ""))
    except Exception as exc:
        log.warning("C-STORE from %s: the data set cannot be parsed: %s", peer, exc)
        return Status.CANNOT_UNDERSTAND, None
    if stored_uid != sop_instance_uid:
        log.warning(
            "C-STORE from %s: the data set holds SOP instance %r, the command named %r",
            peer, stored_uid, sop_instance_uid,
        )  # fmt: skip
        return Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, None
    return Status.SUCCESS, dataset


def _refused(peer: str, sop_instance_uid: str, reason: object) -> int:
    """One clear log line for an object that was not stored, and the status that says so."""
    log.warning(
        "C-STORE from %s of %s refused (0x%04X out of resources): %s",
        peer, sop_instance_uid or "?", Status.OUT_OF_RESOURCES, reason,
    )  # fmt: skip
    return Status.OUT_OF_RESOURCES


class _Job:
    """One incoming object; after a write error it swallows the rest and reports it at commit."""

    def __init__(
        self,
        incoming: IncomingObject | None,
        failure: StorageError | None,
        sop_instance_uid: str = "",
        on_stored: OnStored | None = None,
        peer: str = "?",
    ) -> None:
        self._peer = peer
        self._incoming = incoming
        self.failure = failure
        self._sop_instance_uid = sop_instance_uid
        self._on_stored = on_stored

    def write(self, data: memoryview) -> None:
        if self._incoming is None:
            return
        try:
            self._incoming.write(data)
        except StorageError as exc:
            self._incoming, self.failure = None, exc

    def commit(self) -> int:
        """Store and index the object; the status to answer. Success only once both are done."""
        incoming, self._incoming = self._incoming, None
        if incoming is None:
            return _refused(self._peer, self._sop_instance_uid, self.failure)
        status, dataset = _check_dataset(incoming.partial_path, self._sop_instance_uid, self._peer)
        if status != Status.SUCCESS or dataset is None:
            incoming.abort()
            return status
        try:
            stored = incoming.commit(index_pending=self._on_stored is not None)
        except StorageError as exc:
            self.failure = exc
            return _refused(self._peer, self._sop_instance_uid, exc)
        if self._on_stored is not None:
            try:
                self._on_stored(stored.path, dataset)
            except Exception as exc:  # e.g. sqlite3.OperationalError: database or disk is full
                incoming.withdraw()
                fate = "kept, re-indexed at the next start" if stored.replaced else "removed"
                return _refused(
                    self._peer,
                    self._sop_instance_uid,
                    f"written but not indexed ({exc}); the file was {fate}",
                )
        incoming.settle()
        return Status.SUCCESS

    def abort(self) -> None:
        if self._incoming is not None:
            self._incoming.abort()
            self._incoming = None


class DurableStoreHandler:
    """Plugs a :class:`DurableStore` into the SCP (``Services(store=...)``).

    Created before the node listens, it first indexes (through ``on_stored``) the
    objects an earlier crash left committed but maybe not indexed.
    """

    def __init__(self, store: DurableStore, on_stored: OnStored | None = None) -> None:
        self.store = store
        self.on_stored = on_stored
        self.reindexed = self._index_unindexed()

    def _index_unindexed(self) -> int:
        indexed = 0
        for path, markers in self.store.unindexed().items():
            if self.on_stored is not None:
                try:
                    self.on_stored(path, pydicom.dcmread(path, stop_before_pixels=True))
                except Exception as exc:
                    log.warning("cannot index %s, stored before a crash: %s", path, exc)
                    continue
                indexed += 1
            self.store.settle(markers)
        if indexed:
            log.warning("indexed %d object(s) stored just before an earlier crash", indexed)
        return indexed

    def begin(self, association: Association, command: CommandSet, transfer_syntax: str) -> _Job:
        sop_instance = str(command[Tag.AffectedSOPInstanceUID])
        try:
            incoming = self.store.begin(
                str(command[Tag.AffectedSOPClassUID]),
                sop_instance,
                transfer_syntax,
                implementation_class_uid=IMPLEMENTATION_CLASS_UID,
                source_ae_title=association.calling_ae,
            )
        except StorageError as exc:
            return _Job(None, exc, sop_instance, peer=association.peer)
        return _Job(incoming, None, sop_instance, self.on_stored, peer=association.peer)
