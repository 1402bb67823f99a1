"""The storage SCP's handler: each C-STORE streams into the durable store, Success only once on disk."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dicomtls.dimse.command import CommandSet, Tag
from dicomtls.dimse.status import Status
from dicomtls.node.storage import DurableStore, IncomingObject, StorageError
from dicomtls.ul.acse import IMPLEMENTATION_CLASS_UID

if TYPE_CHECKING:
    from dicomtls.net.association import Association

__all__ = ["DurableStoreHandler"]

log = logging.getLogger("dicomtls.node")


class _Job:
    """One incoming object; after a write error it swallows the rest and reports it at commit."""

    def __init__(self, incoming: IncomingObject | None, failure: StorageError | None) -> None:
        self._incoming = incoming
        self.failure = failure

    def write(self, data: memoryview) -> None:
        if self._incoming is None:
            return
        try:
            self._incoming.write(data)
        except StorageError as exc:
            self._incoming, self.failure = None, exc

    def commit(self) -> int:
        if self._incoming is not None:
            try:
                self._incoming.commit()
                return Status.SUCCESS
            except StorageError as exc:
                self.failure = exc
        log.warning("store failed: %s", self.failure)
        return Status.OUT_OF_RESOURCES

    def abort(self) -> None:
        if self._incoming is not None:
            self._incoming.abort()
            self._incoming = None


class DurableStoreHandler:
    """Plugs a :class:`DurableStore` into the SCP (``serve_dicom(store=...)``)."""

    def __init__(self, store: DurableStore) -> None:
        self.store = store

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
        return _Job(incoming, None)
