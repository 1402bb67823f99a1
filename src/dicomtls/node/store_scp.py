"""The storage SCP's handler: each C-STORE streams into the durable store, Success only once on disk.

Three things keep it fast without weakening that rule. The data set is checked by the SCP
as its fragments arrive (:mod:`dicomtls.net.inbound`), never re-read from disk. Large fragments are written by a writer thread while the event loop decrypts
the next PDU. And the commit's fsyncs run in a worker thread, so one object's flush
never stalls the other associations.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom

from dicomtls.dimse.command import CommandSet, Tag
from dicomtls.dimse.dataset_scan import ScannedDataset, keyword_tag
from dicomtls.dimse.datasets import keyword_texts
from dicomtls.dimse.status import Status
from dicomtls.logs import get_logger
from dicomtls.node.storage import DurableStore, IncomingObject, StorageError, StoredObject
from dicomtls.ul.acse import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

if TYPE_CHECKING:
    from dicomtls.net.association import Association

__all__ = ["DurableStoreHandler", "OnStored"]

log = get_logger("dicomtls.node")

OnStored = Callable[[Path, Mapping[str, str], str], None]
"""Told of each object once it is on disk (e.g. to index it): its path, the kept
attributes (keyword -> text) and its transfer syntax."""

#: Fragments smaller than this are written at once: handing them to a thread costs more.
_WRITE_BEHIND_MIN = 256 << 10
#: Received but not yet written, per object: above this the association stops reading
#: until the writer catches up, so a slow disk costs time, not memory.
_MAX_BACKLOG = 4 << 20


def _refused(peer: str, sop_instance_uid: str, reason: object) -> int:
    """One clear log line for an object that was not stored, and the status that says so."""
    log.warning(
        "C-STORE from %s of %s refused (0x%04X out of resources): %s",
        peer, sop_instance_uid or "?", Status.OUT_OF_RESOURCES, reason,
    )  # fmt: skip
    return Status.OUT_OF_RESOURCES


class _Job:
    """One incoming object: written (behind, for large fragments), then committed. After a
    write error it swallows the rest and reports it at commit. The SCP has checked the data
    set by the time it commits (:mod:`dicomtls.net.inbound`)."""

    def __init__(
        self,
        handler: DurableStoreHandler,
        incoming: IncomingObject | None,
        failure: StorageError | None,
        sop_instance_uid: str,
        peer: str,
    ) -> None:
        self._handler = handler
        self._incoming = incoming
        self.failure = failure
        self._sop_instance_uid = sop_instance_uid
        self._peer = peer
        self._behind: deque[tuple[asyncio.Future[None], int]] = deque()
        self._backlog = 0

    def write(self, data: memoryview) -> Awaitable[None] | None:
        """Take one fragment; an awaitable when the association should wait for the disk."""
        incoming = self._incoming
        if incoming is None:
            return None
        if len(data) < _WRITE_BEHIND_MIN and not self._behind:
            self._write(incoming, data)
            return None
        future = self._handler.writer().submit(self._write, incoming, data)
        self._behind.append((asyncio.wrap_future(future), len(data)))
        self._backlog += len(data)
        return self._catch_up(_MAX_BACKLOG) if self._backlog > _MAX_BACKLOG else None

    def _write(self, incoming: IncomingObject, data: memoryview) -> None:
        """On the writer thread, or inline when nothing is waiting there (order is kept)."""
        if self.failure is None:
            try:
                incoming.write(data)
            except StorageError as exc:  # the object is already abandoned on disk
                self.failure = exc

    async def _catch_up(self, backlog: int) -> None:
        while self._behind and self._backlog > backlog:
            future, size = self._behind.popleft()
            await future
            self._backlog -= size

    async def commit(self, dataset: ScannedDataset) -> int:
        """Store and index the object; the status to answer. Success only once both are done."""
        incoming, self._incoming = self._incoming, None
        if incoming is None:
            return _refused(self._peer, self._sop_instance_uid, self.failure)
        await self._catch_up(0)
        if self.failure is not None:
            return _refused(self._peer, self._sop_instance_uid, self.failure)
        index = self._handler.on_stored is not None
        try:
            stored = await self._handler.blocking(incoming.commit, index_pending=index)
        except StorageError as exc:
            self.failure = exc
            return _refused(self._peer, self._sop_instance_uid, exc)
        return self._indexed(incoming, stored, dataset)

    def _indexed(
        self, incoming: IncomingObject, stored: StoredObject, checked: ScannedDataset
    ) -> int:
        on_stored = self._handler.on_stored
        if on_stored is not None:
            try:
                attributes = checked.texts(self._handler.keep)
                on_stored(stored.path, attributes, checked.transfer_syntax)
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
        """The association ended mid-object: nothing of it is kept (after pending writes)."""
        incoming, self._incoming = self._incoming, None
        if incoming is None:
            return
        if self._behind:
            self._handler.writer().submit(incoming.abort)  # queued behind its own writes
        else:
            incoming.abort()


class DurableStoreHandler:
    """Plugs a :class:`DurableStore` into the SCP (``Services(store=...)``), or into a C-GET.

    ``store`` may be a folder: objects go there as ``<SOP Instance UID>.dcm`` (a flat
    store). Created before the node listens, it first indexes (through ``on_stored``)
    the objects an earlier crash left committed but maybe not indexed. ``keep`` names
    the top-level attributes (keywords) ``on_stored`` receives.
    """

    def __init__(
        self,
        store: DurableStore | Path | str,
        on_stored: OnStored | None = None,
        keep: Collection[str] = (),
    ) -> None:
        self.store = store if isinstance(store, DurableStore) else DurableStore(Path(store), flat=True)
        self.on_stored = on_stored
        self.keep = tuple(keep)
        tags = {keyword_tag(k) for k in self.keep}  # KeyError names a keyword that is not one
        self._keep_tags = frozenset(tags)
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self.reindexed = self._index_unindexed()

    @property
    def keep_tags(self) -> frozenset[int]:
        return self._keep_tags

    def writer(self) -> concurrent.futures.ThreadPoolExecutor:
        """One writer thread for every object: each object's writes stay in order."""
        if self._writer is None:
            self._writer = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="dicomtls-store-writer"
            )
        return self._writer

    async def blocking(self, call: Callable[..., StoredObject], **kwargs: bool) -> StoredObject:
        """Run a commit: in a worker thread when it fsyncs, inline when it only renames."""
        if not self.store.fsync:
            return call(**kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(call, **kwargs))

    def _index_unindexed(self) -> int:
        indexed = 0
        for path, markers in self.store.unindexed().items():
            if self.on_stored is not None:
                try:
                    dataset = pydicom.dcmread(path, stop_before_pixels=True)
                    syntax = str(dataset.file_meta.get("TransferSyntaxUID", ""))
                    self.on_stored(path, keyword_texts(dataset, self.keep), syntax)
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
        incoming: IncomingObject | None = None
        failure: StorageError | None = None
        try:
            incoming = self.store.begin(
                str(command[Tag.AffectedSOPClassUID]),
                sop_instance,
                transfer_syntax,
                implementation_class_uid=IMPLEMENTATION_CLASS_UID,
                implementation_version_name=IMPLEMENTATION_VERSION_NAME,
                source_ae_title=association.calling_ae,
            )
        except StorageError as exc:
            failure = exc
        else:
            # The next object's file, made while this one streams in (not while it waits).
            self.writer().submit(self.store.prepare_spare)
        return _Job(self, incoming, failure, sop_instance, association.peer)
