"""A C-STORE's data set on its way in: checked as it streams, then handed over or refused.

Whoever receives an object, a storage SCP or a C-GET SCU, must not call it stored before
the bytes are known to form the data set the command announced. :class:`InboundObject`
walks the element headers of each fragment as it arrives
(:class:`~dicomtls.dimse.dataset_scan.DatasetScanner`: structure, nesting depth, the few
values the application keeps), forwards the fragment to the application's
:class:`~dicomtls.net.hooks.StoreJob`, and at the end checks that the data set is the SOP
class and instance the command named. Only then does the job commit. The check lives
here, not in each store target, so no target can skip it.

Scanning shares the event loop with every other association. A fragment of pixel data
costs one addition; a fragment of millions of tiny elements costs real time, so large
fragments are scanned in slices and dense ones give the loop back between slices.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Collection

from dicomtls.dimse.command import CommandSet, Tag
from dicomtls.dimse.dataset_scan import (
    DEFAULT_MAX_DEPTH,
    DatasetScanError,
    DatasetScanner,
    ScannedDataset,
)
from dicomtls.dimse.status import AnsweredStatus, Status, status_name
from dicomtls.logs import get_logger
from dicomtls.net.hooks import StoreJob

__all__ = ["InboundObject"]

log = get_logger("dicomtls.net")

_SOP_CLASS_UID = 0x00080016
_SOP_INSTANCE_UID = 0x00080018
_SPECIFIC_CHARACTER_SET = 0x00080005
#: Always kept: what identifies the object, and how to read the rest of its text.
_IDENTITY = frozenset({_SOP_CLASS_UID, _SOP_INSTANCE_UID, _SPECIFIC_CHARACTER_SET})
#: Fragments larger than this are scanned a slice at a time.
_SLICE = 64 << 10
#: A slice with more element headers than this, or that inflated to more bytes than this,
#: hands the loop to the others before the next.
_DENSE = 2048
_INFLATED = 4 << 20


class InboundObject:
    """One object arriving on ``peer``'s association, bound for ``job``; a DatasetSink."""

    def __init__(
        self,
        job: StoreJob,
        command: CommandSet,
        transfer_syntax: str,
        peer: str,
        keep: Collection[int] = (),
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.job = job
        self.peer = peer
        self.sop_class_uid = str(command[Tag.AffectedSOPClassUID])
        self.sop_instance_uid = str(command[Tag.AffectedSOPInstanceUID])
        self.size = 0
        self.started = time.perf_counter()
        self._scanner = DatasetScanner(transfer_syntax, _IDENTITY.union(keep), max_depth=max_depth)
        self._unreadable: DatasetScanError | None = None  # then nothing more is forwarded

    def write(self, data: memoryview) -> Awaitable[None] | None:
        """Take one fragment; an awaitable when the association should wait for it."""
        self.size += len(data)
        if self._unreadable is not None:
            return None
        if len(data) > _SLICE:
            return self._write_sliced(data)
        if not self._scan(data):
            return None
        return self.job.write(data)

    async def _write_sliced(self, data: memoryview) -> None:
        scanner = self._scanner
        for start in range(0, len(data), _SLICE):
            elements, inflated = scanner.elements, scanner.inflated
            if not self._scan(data[start : start + _SLICE]):
                return
            if scanner.elements - elements > _DENSE or scanner.inflated - inflated > _INFLATED:
                await asyncio.sleep(0)  # let the other associations run
        if (waiting := self.job.write(data)) is not None:
            await waiting

    def _scan(self, data: memoryview) -> bool:
        try:
            self._scanner.feed(data)
        except DatasetScanError as exc:
            self._unreadable = exc  # reported at the end, where the status is decided
            return False
        return True

    def elapsed(self) -> float:
        """Seconds since the command arrived."""
        return time.perf_counter() - self.started

    async def finish(self) -> int:
        """The whole data set is in: commit it, or refuse it; the status to answer (with a
        comment for the sender, :class:`AnsweredStatus`, where one is due)."""
        checked = self._checked()
        if isinstance(checked, int):
            self.job.abort()
            return checked
        return await self.job.commit(checked)

    def abort(self) -> None:
        """The association ended mid-object: nothing of it is kept."""
        self.job.abort()

    def _checked(self) -> ScannedDataset | int:
        """The scanned data set, or the failure status for one that may not count as stored:
        0xC000 when it is not a data set, 0xA900 when it is another object than announced."""
        try:
            if self._unreadable is not None:
                raise self._unreadable
            scanned = self._scanner.finish()
        except DatasetScanError as exc:
            why = f"the data set cannot be parsed: {exc}"
            return self._refuse(Status.CANNOT_UNDERSTAND, why, why)
        for tag, announced, what in (
            (_SOP_CLASS_UID, self.sop_class_uid, "SOP class"),
            (_SOP_INSTANCE_UID, self.sop_instance_uid, "SOP instance"),
        ):
            found = scanned.text(tag)
            if found != announced:
                return self._refuse(
                    Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                    f"the data set holds {what} {found!r}, the command named {announced!r}",
                    f"the data set's {what} UID is not the command's",
                )
        return scanned

    def _refuse(self, status: int, why: str, told: str) -> AnsweredStatus:
        """Refuse the object: ``why`` in the node's log, ``told`` to the sender as the
        response's Error Comment (about its own data: nothing of the node's)."""
        log.warning(
            "C-STORE from %s of %s refused (%s): %s",
            self.peer,
            self.sop_instance_uid,
            status_name(status),
            why,
        )
        return AnsweredStatus(status, told)
