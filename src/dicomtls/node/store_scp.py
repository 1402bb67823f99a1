"""The storage SCP's handler: each C-STORE streams into the durable store, Success only once on disk.

Three things keep it fast without weakening that rule. The data set is checked by the SCP
as its fragments arrive (:mod:`dicomtls.net.inbound`), never re-read from disk. Large fragments are written by a writer thread while the event loop decrypts
the next PDU. And the commit's fsyncs run in a worker thread, so one object's flush
never stalls the other associations.

**A SOP Instance UID the store already holds** (given ``identity_of``: the node's index)
never silently becomes another object. The copy received is compared with the copy held on
:data:`IDENTITY`, the patient, study, series and SOP class it belongs to:

- all agree: a corrected re-send of the same object. It replaces the copy held, Success,
  reported to ``on_resent`` (the node audits DICOM Instances Transferred, action U);
- any differs: another object under a UID already taken. Refused with 0124H "Refused: Not
  authorized" (PS3.7 9.1.1.1.9), the copy held kept, one log line naming the attributes
  that differ, reported to ``on_resent`` (the node writes a Security Alert with the values).
  0111H "Duplicate SOP Instance" is N-CREATE's, not a C-STORE status; A7xx means "out of
  resources" (dcm4chee-arc's REJECT uses A77BH), which an SCU may retry; A9xx and Cxxx would
  blame a data set that is well formed. dcm4chee-arc (Overwrite Policy NEVER) and Orthanc
  (OverwriteInstances false) keep the first copy by default and ignore the new one;
  refusing tells the sender that its copy is not the one on record.

Two associations storing one UID at once are serialized per UID, from the identity check to
the index row (an asyncio lock: every commit runs on this process's event loop): the first
wins, the second is judged against it. One store folder serves one node process.

**A kept value too long to keep** (the scanner's ``too_long``: over 64 KiB, e.g. a 70,000-byte
PatientID where LO allows 64 characters) could only be indexed as empty. The object is
refused with A900H "Data Set does not match SOP Class" (PS3.4 B.2.3): it was read, and
breaks its IOD; C000H "Cannot understand" would send whoever debugs it after an encoding error.
So is **a NUL inside a kept value** (PS3.5 6.2 allows no control character there): SQLite
would index it, PostgreSQL cannot, and the two backends must keep the same objects.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag

from dicomtls.dimse.command import CommandSet, Tag
from dicomtls.dimse.dataset_scan import ScannedDataset, keyword_tag
from dicomtls.dimse.datasets import keyword_texts
from dicomtls.dimse.status import AnsweredStatus, Status, status_name
from dicomtls.logs import get_logger
from dicomtls.node.backends import IncomingObject, ObjectStore
from dicomtls.node.held_files import files_held
from dicomtls.node.index import nul_inside
from dicomtls.node.storage import DurableStore, FileMeta, StorageError, StoredObject
from dicomtls.ul.acse import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

if TYPE_CHECKING:
    from dicomtls.net.association import Association

__all__ = ["IDENTITY", "DurableStoreHandler", "IdentityLookup", "OnResent", "OnStored", "Resent"]

log = get_logger("dicomtls.node")
_T = TypeVar("_T")

OnStored = Callable[[Path, Mapping[str, str], str], None]
"""Told of each object once it is on disk (e.g. to index it): its path, the kept
attributes (keyword -> text) and its transfer syntax."""

Together = Callable[[], AbstractContextManager[None]]
"""Makes the ``on_stored`` calls inside one transaction (e.g.
:meth:`dicomtls.node.index.Index.transaction`): committed together, or not at all."""

#: What makes a stored object the object it is: whose it is (PatientID), where it belongs
#: (its study and series, PS3.3 C.7.2, C.7.3) and what it is (its SOP class).
IDENTITY = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID")

IdentityLookup = Callable[[str, Sequence[str]], Mapping[str, str] | None]
"""What the store's index holds of a SOP Instance UID (keyword -> text), None if nothing
(e.g. :meth:`dicomtls.node.index.Index.identity`)."""


@dataclass(frozen=True)
class Resent:
    """A C-STORE of a SOP instance the store already held: replaced, or refused."""

    sop_instance_uid: str
    held: Mapping[str, str]
    """The :data:`IDENTITY` of the copy held."""
    received: Mapping[str, str]
    """The kept attributes of the copy received (keyword -> text)."""

    @property
    def differences(self) -> list[str]:
        """The :data:`IDENTITY` keywords on which the two copies disagree."""
        return [k for k in IDENTITY if self.held.get(k, "") != self.received.get(k, "")]

    @property
    def replaced(self) -> bool:
        """The same object again (a corrected re-send), so it replaced the copy held."""
        return not self.differences

    def describe(self) -> str:
        """The disagreement in words, with the values (for the audit trail, not the log: they
        identify patients), each escaped (they come from peers)."""
        return "; ".join(
            f"{k} {self.held.get(k, '')!r} held, {self.received.get(k, '')!r} received"
            for k in self.differences
        )


OnResent = Callable[["Association", Resent], None]
"""Told of each C-STORE of a SOP instance already held: once it has replaced the copy held
(Success), or once it was refused."""

#: Fragments smaller than this are written at once: handing them to a thread costs more.
_WRITE_BEHIND_MIN = 256 << 10
#: Received but not yet written, per object: above this the association stops reading
#: until the writer catches up, so a slow disk costs time, not memory.
_MAX_BACKLOG = 4 << 20


def _refused(peer: str, sop_instance_uid: str, reason: object) -> int:
    """One clear log line for an object that was not stored, and the status that says so."""
    log.warning(
        "C-STORE from %s of %s refused (0x%04X out of resources): %s",
        peer,
        sop_instance_uid or "?",
        Status.OUT_OF_RESOURCES,
        reason,
    )
    return Status.OUT_OF_RESOURCES


def _too_long(scanned: ScannedDataset) -> str | None:
    """Why the kept values cannot all be indexed, or None: each one too long to keep."""
    reasons = []
    for tag, length in sorted(scanned.too_long.items()):
        name = keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        try:
            vr = f"its VR, {dictionary_VR(tag)}, allows far less"
        except KeyError:
            vr = "no identifying value is that long"
        reasons.append(f"{name} is {length} bytes long ({vr})")
    if not reasons:
        return None
    return "; ".join(reasons) + ": it cannot be indexed, and an index entry without it is wrong"


class _Rows:
    """The ``on_stored`` calls of the objects committed in one turn of the event loop, made
    in one transaction: a commit each cost the SCP more than the row (64 KiB objects). Each
    object waits for its own row's commit, so none is answered Success before it."""

    def __init__(self, on_stored: OnStored, together: Together) -> None:
        self._on_stored = on_stored
        self._together = together
        self._waiting: list[tuple[tuple[Path, Mapping[str, str], str], asyncio.Future[None]]] = []

    def add(
        self, path: Path, attributes: Mapping[str, str], transfer_syntax: str
    ) -> Awaitable[None]:
        """The row, written (and committed) at the end of this turn of the loop."""
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._write)
        written: asyncio.Future[None] = loop.create_future()
        self._waiting.append(((path, attributes, transfer_syntax), written))
        return written

    def _write(self) -> None:
        waiting, self._waiting = self._waiting, []
        try:
            with self._together():
                for row, _ in waiting:
                    self._on_stored(*row)
        except Exception:  # rolled back: one bad row must not cost the others, so one by one
            for row, written in waiting:
                _write_one(written, self._on_stored, row)
            return
        for _, written in waiting:
            if not written.done():  # cancelled: the row stands, the next start settles it
                written.set_result(None)


def _write_one(
    written: asyncio.Future[None], call: OnStored, row: tuple[Path, Mapping[str, str], str]
) -> None:
    """Make one row on its own, and tell its object how that went."""
    try:
        call(*row)
    except Exception as exc:
        if not written.done():
            written.set_exception(exc)
        return
    if not written.done():
        written.set_result(None)


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
        association: Association,
    ) -> None:
        self._handler = handler
        self._incoming = incoming
        self.failure = failure
        self._sop_instance_uid = sop_instance_uid
        self._association = association
        self._peer = association.peer
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
        attributes = dataset.texts(self._handler.keep)
        unindexable = _too_long(dataset) or nul_inside(attributes)
        if unindexable is not None:
            incoming.abort()
            return self._refuse(Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, unindexable, unindexable)
        async with self._handler.claim(self._sop_instance_uid):
            try:
                resent = await self._handler.held(self._sop_instance_uid, attributes)
            except Exception as exc:  # the index cannot be asked: its server down, pool busy
                incoming.abort()
                reason = f"the index cannot say whether it holds this SOP instance ({exc})"
                return _refused(self._peer, self._sop_instance_uid, reason)
            if resent is not None and not resent.replaced:
                incoming.abort()
                return self._another_object(resent)
            status = await self._committed(incoming, attributes, dataset.transfer_syntax)
        if resent is not None and status == Status.SUCCESS:
            self._replaced(resent)
        return status

    def _another_object(self, resent: Resent) -> int:
        self._handler.report(self._association, resent)
        return self._refuse(
            Status.NOT_AUTHORIZED,
            f"the store holds this SOP instance as another object (its "
            f"{' and '.join(resent.differences)} differ); the object held is kept",
            "this SOP Instance UID is held as another object",
        )

    def _replaced(self, resent: Resent) -> None:
        log.info(
            "C-STORE from %s replaced %s: the same object again (%s agree)",
            self._peer,
            self._sop_instance_uid,
            ", ".join(IDENTITY),
        )
        self._handler.report(self._association, resent)

    def _refuse(self, status: int, why: str, told: str) -> AnsweredStatus:
        """Refuse the object: ``why`` in the node's log, ``told`` to the sender as the
        response's Error Comment (about its own object, never what the store holds)."""
        log.warning(
            "C-STORE from %s of %s refused (%s): %s",
            self._peer,
            self._sop_instance_uid,
            status_name(status),
            why,
        )
        return AnsweredStatus(status, told)

    async def _committed(
        self, incoming: IncomingObject, attributes: Mapping[str, str], transfer_syntax: str
    ) -> int:
        index = self._handler.on_stored is not None
        if self._handler.index_blocks:  # commit and index on one worker thread
            return await self._handler.run(
                self._commit_and_index, incoming, attributes, transfer_syntax
            )
        try:
            stored = await self._handler.blocking(incoming.commit, index_pending=index)
        except StorageError as exc:
            self.failure = exc
            return _refused(self._peer, self._sop_instance_uid, exc)
        rows = self._handler.rows
        if rows is None:
            return self._indexed(incoming, stored, attributes, transfer_syntax)
        try:
            await rows.add(stored.path, attributes, transfer_syntax)
        except Exception as exc:  # e.g. sqlite3.OperationalError: database or disk is full
            return self._unindexed(incoming, stored, exc)
        incoming.settle()
        return Status.SUCCESS

    def _commit_and_index(
        self, incoming: IncomingObject, attributes: Mapping[str, str], transfer_syntax: str
    ) -> int:
        try:
            stored = incoming.commit(index_pending=True)
        except StorageError as exc:
            self.failure = exc
            return _refused(self._peer, self._sop_instance_uid, exc)
        return self._indexed(incoming, stored, attributes, transfer_syntax)

    def _indexed(
        self,
        incoming: IncomingObject,
        stored: StoredObject,
        attributes: Mapping[str, str],
        transfer_syntax: str,
    ) -> int:
        on_stored = self._handler.on_stored
        if on_stored is not None:
            try:
                on_stored(stored.path, attributes, transfer_syntax)
            except Exception as exc:  # e.g. sqlite3.OperationalError: database or disk is full
                return self._unindexed(incoming, stored, exc)
        incoming.settle()
        return Status.SUCCESS

    def _unindexed(self, incoming: IncomingObject, stored: StoredObject, exc: Exception) -> int:
        incoming.withdraw()
        fate = "kept, re-indexed at the next start" if stored.replaced else "removed"
        return _refused(
            self._peer,
            self._sop_instance_uid,
            f"written but not indexed ({exc}); the file was {fate}",
        )

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
    the top-level attributes (keywords) ``on_stored`` receives. With ``identity_of`` a
    SOP instance already held is replaced only by the same object (see the module's
    docstring), and ``on_resent`` is told of each replacement and refusal; with no index at
    all (neither ``identity_of`` nor ``on_stored``), a :class:`DurableStore` (a C-GET's
    folder, say) is asked the same of the file a UID names
    (:func:`~dicomtls.node.held_files.files_held`), so no sender replaces a file there with
    another object. With ``index_blocks`` (an index on a server), ``identity_of`` and ``on_stored`` block:
    they run on the store's worker threads, never on the event loop. With ``together``
    (an index on the event loop that can commit several rows at once) the rows of the
    objects committed in one turn of the loop share one transaction.
    """

    def __init__(
        self,
        store: ObjectStore | Path | str,
        on_stored: OnStored | None = None,
        keep: Collection[str] = (),
        *,
        identity_of: IdentityLookup | None = None,
        on_resent: OnResent | None = None,
        index_blocks: bool = False,
        together: Together | None = None,
    ) -> None:
        if isinstance(store, Path | str):
            store = DurableStore(Path(store), flat=True)
        if identity_of is None and on_stored is None and isinstance(store, DurableStore):
            identity_of = files_held(store)  # no index at all: the files say what is held
        self.store: ObjectStore = store
        self.index_blocks = index_blocks
        self.on_stored = on_stored
        self.rows = (
            _Rows(on_stored, together)
            if on_stored is not None and together is not None and not index_blocks
            else None
        )
        self.identity_of = identity_of
        self.on_resent = on_resent
        wanted = (*keep, *IDENTITY) if identity_of is not None else tuple(keep)
        self.keep = tuple(dict.fromkeys(wanted))
        tags = {keyword_tag(k) for k in self.keep}  # KeyError names a keyword that is not one
        self._keep_tags = frozenset(tags)
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._claims: dict[str, tuple[asyncio.Lock, int]] = {}
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

    @contextlib.asynccontextmanager
    async def claim(self, sop_instance_uid: str) -> AsyncIterator[None]:
        """Hold ``sop_instance_uid`` from the identity check until its index row is written:
        a second object with the same UID waits, then is judged against the first."""
        lock, users = self._claims.get(sop_instance_uid) or (asyncio.Lock(), 0)
        self._claims[sop_instance_uid] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._claims[sop_instance_uid]
            if users == 1:
                del self._claims[sop_instance_uid]
            else:
                self._claims[sop_instance_uid] = (lock, users - 1)

    async def held(self, sop_instance_uid: str, received: Mapping[str, str]) -> Resent | None:
        """:meth:`resent`, on a worker thread when the index is on a server."""
        if self.index_blocks and self.identity_of is not None:
            return await self.run(self.resent, sop_instance_uid, received)
        return self.resent(sop_instance_uid, received)

    def resent(self, sop_instance_uid: str, received: Mapping[str, str]) -> Resent | None:
        """The copy held of this SOP instance, against the one received; None if none is held."""
        if self.identity_of is None:
            return None
        held = self.identity_of(sop_instance_uid, IDENTITY)
        return None if held is None else Resent(sop_instance_uid, held, received)

    def report(self, association: Association, resent: Resent) -> None:
        if self.on_resent is None:
            return
        try:
            self.on_resent(association, resent)
        except Exception:  # an observer's failure must not change what the peer is told
            log.exception("observer of a re-sent SOP instance failed")

    async def blocking(self, call: Callable[..., StoredObject], **kwargs: bool) -> StoredObject:
        """Run a commit: in a worker thread when it fsyncs, inline when it only renames."""
        if not self.store.blocking:
            return call(**kwargs)
        return await self.run(functools.partial(call, **kwargs))

    async def run(self, call: Callable[..., _T], *args: Any) -> _T:
        """``call(*args)`` on the store's worker threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.store.executor, call, *args)

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
                FileMeta(
                    str(command[Tag.AffectedSOPClassUID]),
                    sop_instance,
                    transfer_syntax,
                    implementation_class_uid=IMPLEMENTATION_CLASS_UID,
                    implementation_version_name=IMPLEMENTATION_VERSION_NAME,
                    source_ae_title=association.calling_ae,
                )
            )
        except StorageError as exc:
            failure = exc
        else:
            # The next objects' files, made while this one streams in (not while they wait).
            if self.store.spares_wanted():
                self.writer().submit(self.store.prepare_spare)
        return _Job(self, incoming, failure, sop_instance, association)
