"""Index rows of objects committed together share one SQLite transaction, and each object is
answered only once its own row is committed; one row that cannot be written costs only its
own object."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from dicomtls.dimse.status import Status
from dicomtls.node.index import INDEXED_KEYWORDS, Index
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler

from .test_store_handler import _begin, _fragments, _make_file, _scanned


class _CountedIndex:
    """A real index whose transactions and rows are counted."""

    def __init__(self, path: Path, refuse: str = "") -> None:
        self.index = Index(path)
        self.refuse = refuse  # a SOP Instance UID whose row "finds the disk full"
        self.transactions: list[int] = []  # rows written in each transaction that committed

    def add(self, path: Path, attributes: Mapping[str, str], transfer_syntax: str) -> None:
        if self.refuse and attributes.get("SOPInstanceUID") == self.refuse:
            raise sqlite3.OperationalError("database or disk is full")
        self.index.add(path, attributes, transfer_syntax)
        if self.transactions:
            self.transactions[-1] += 1

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.transactions.append(0)
        with self.index.transaction():
            yield

    def committed(self, sop_instance_uid: str) -> bool:
        """Whether another connection sees the row: committed, not only written."""
        with contextlib.closing(sqlite3.connect(self.index.path)) as other:
            row = other.execute(
                "SELECT 1 FROM instances WHERE sop_instance_uid = ?", (sop_instance_uid,)
            ).fetchone()
        return row is not None


def _store_together(tmp_path: Path, counted: _CountedIndex, sources: list[Path]) -> list[int]:
    """Receive every object, then commit them all at once, as pipelined C-STOREs finish;
    each commit checks, when answered, that its row is committed."""
    store = DurableStore(tmp_path / "store", fsync=False)  # commits inline: one turn of the loop
    handler = DurableStoreHandler(
        store, counted.add, keep=INDEXED_KEYWORDS, together=counted.transaction
    )

    async def one(source: Path) -> int:
        uid, fragments = _fragments(source, 1 << 20)
        job = _begin(handler, uid)
        for fragment in fragments:
            job.write(fragment)
        status = await job.commit(_scanned(handler, fragments))
        assert (status == Status.SUCCESS) == counted.committed(uid)
        return status

    async def run() -> list[int]:
        return list(await asyncio.gather(*(one(source) for source in sources)))

    statuses = asyncio.run(run())
    assert store.unindexed() == {}  # no object left waiting for its row
    return statuses


def _sources(tmp_path: Path, count: int) -> list[tuple[Path, str]]:
    made = []
    for i in range(count):
        path = tmp_path / f"in{i}.dcm"
        made.append((path, str(_make_file(path, pixels=4096).SOPInstanceUID)))
    return made


def test_objects_committed_together_share_one_transaction(tmp_path: Path) -> None:
    sources = _sources(tmp_path, 5)
    counted = _CountedIndex(tmp_path / "index.sqlite")
    statuses = _store_together(tmp_path, counted, [path for path, _ in sources])
    assert statuses == [Status.SUCCESS] * 5
    assert counted.transactions == [5]
    assert counted.index.count() == 5


def test_a_row_that_cannot_be_written_costs_only_its_own_object(tmp_path: Path) -> None:
    sources = _sources(tmp_path, 4)
    bad = sources[2][1]
    counted = _CountedIndex(tmp_path / "index.sqlite", refuse=bad)
    statuses = _store_together(tmp_path, counted, [path for path, _ in sources])
    assert statuses == [Status.SUCCESS, Status.SUCCESS, Status.OUT_OF_RESOURCES, Status.SUCCESS]
    assert counted.index.count() == 3  # the batch rolled back, then each row went alone
    assert not counted.committed(bad)
    stored = {path.name for path in (tmp_path / "store" / "objects").rglob("*.dcm")}
    assert f"{bad}.dcm" not in stored and len(stored) == 3  # its file withdrawn


def test_a_failed_transaction_leaves_none_of_its_rows(tmp_path: Path) -> None:
    index = Index(tmp_path / "index.sqlite")
    (tmp_path / "a.dcm").write_bytes(b"x")
    with pytest.raises(sqlite3.OperationalError), index.transaction():
        index.add(tmp_path / "a.dcm", {"SOPInstanceUID": "1.2.3"}, "")
        raise sqlite3.OperationalError("database or disk is full")
    assert index.count() == 0
    with index.transaction():  # and the next one works
        index.add(tmp_path / "a.dcm", {"SOPInstanceUID": "1.2.3"}, "")
    assert index.count() == 1
