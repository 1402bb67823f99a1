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


def _check_dataset(path: Path, sop_instance_uid: str) -> tuple[int, Dataset | None]:
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
        log.warning("received data set cannot be parsed: %s", exc)
        return Status.CANNOT_UNDERSTAND, None
    if stored_uid != sop_instance_uid:
        log.warning(
            "data set holds SOP instance %r, the command named %r", stored_uid, sop_instance_uid
        )
        return Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, None
    return Status.SUCCESS, dataset


class _Job:
    """One incoming object; after a write error it swallows the rest and reports it at commit."""

    def __init__(
        self,
        incoming: IncomingObject | None,
        failure: StorageError | None,
        sop_instance_uid: str = "",
        on_stored: OnStored | None = None,
    ) -> None:
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
        if self._incoming is not None:
            status, dataset = _check_dataset(self._incoming.partial_path, self._sop_instance_uid)
            if status != Status.SUCCESS or dataset is None:
                self.abort()
                return status
            try:
                stored = self._incoming.commit()
            except StorageError as exc:
                self.failure = exc
            else:
                if self._on_stored is not None:
                    self._on_stored(stored.path, dataset)
                return Status.SUCCESS
        log.warning("store failed: %s", self.failure)
        return Status.OUT_OF_RESOURCES

    def abort(self) -> None:
        if self._incoming is not None:
            self._incoming.abort()
            self._incoming = None


class DurableStoreHandler:
    """Plugs a :class:`DurableStore` into the SCP (``Services(store=...)``)."""

    def __init__(self, store: DurableStore, on_stored: OnStored | None = None) -> None:
        self.store = store
        self.on_stored = on_stored

    def begin(self, association: Association, command: CommandSet, transfer_syntax: str) -> _Job:
        try:
            incoming = self.store.begin(
                str(command[Tag.AffectedSOPClassUID]),
                str(command[Tag.AffectedSOPInstanceUID]),
                transfer_syntax,
                implementation_class_uid=IMPLEMENTATION_CLASS_UID,
                source_ae_title=association.calling_ae,
            )
        except StorageError as exc:
            return _Job(None, exc)
        sop_instance = str(command[Tag.AffectedSOPInstanceUID])
        return _Job(incoming, None, sop_instance, self.on_stored)
