"""The two things a node keeps, behind small interfaces: the index and the object store.

The embedded default is SQLite in the store folder (:class:`~dicomtls.node.index.Index`)
and the folder itself (:class:`~dicomtls.node.storage.DurableStore`). Several nodes share
a PostgreSQL index (:class:`~dicomtls.node.index_pg.PostgresIndex`) and an S3 bucket
(:class:`~dicomtls.node.objects_s3.S3ObjectStore`). Both pairs pass the same tests: the
protocols below are what the node, the storage SCP and the audit trail use, nothing more.

:func:`open_backends` reads the two settings: ``index`` (empty: SQLite in the store;
``postgresql://...``) and ``objects`` (empty: the store folder; ``s3://BUCKET?endpoint=URL``).
Objects in S3 need the PostgreSQL index: the intents that make an upload safe to lose
live there, and every node must find every object.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydicom.dataset import Dataset

from dicomtls.net.qr_scu import QueryModel
from dicomtls.node.index import Index, InstanceFacts
from dicomtls.node.room import DEFAULT_FLOOR, Floor
from dicomtls.node.storage import PRIVATE_FILE_MODE, DurableStore, FileMeta, StoredObject

__all__ = ["Backends", "IncomingObject", "IndexBackend", "ObjectStore", "open_backends"]


class IndexBackend(Protocol):
    """What is stored, for C-FIND, C-MOVE/C-GET, the identity check and the audit trail."""

    @property
    def remote(self) -> bool:
        """Calls block on a server: the node makes them on worker threads."""
        ...

    def describe_backend(self) -> str: ...
    def check(self) -> None: ...
    def close(self) -> None: ...
    def add(self, path: Path, attributes: Mapping[str, str], transfer_syntax: str = "") -> Any: ...
    def count(self) -> int: ...
    def identity(self, sop_instance_uid: str, keywords: Sequence[str]) -> dict[str, str] | None: ...
    def rebuild(self, files: Iterable[Path]) -> tuple[int, int]: ...
    def find(self, identifier: Dataset, model: QueryModel) -> Iterator[Dataset]: ...
    def files(self, identifier: Dataset, model: QueryModel) -> list[Path]: ...
    def describe(
        self, *, paths: Iterable[Path] = (), sop_instance_uids: Iterable[str] = ()
    ) -> list[InstanceFacts]: ...


class IncomingObject(Protocol):
    """One object being received: write, then commit (and settle or withdraw), or abort."""

    def write(self, data: bytes | memoryview) -> None: ...
    def commit(self, *, index_pending: bool = False) -> StoredObject: ...
    def settle(self) -> None: ...
    def withdraw(self) -> None: ...
    def abort(self) -> None: ...


class ObjectStore(Protocol):
    """Where objects go, durably, and where C-MOVE/C-GET read them back (``locate``: an
    indexed location as a path whose ``open`` reads the object)."""

    @property
    def fsync(self) -> bool: ...
    @property
    def blocking(self) -> bool:
        """A commit waits on a disk or a server: run it on a worker thread."""
        ...

    @property
    def executor(self) -> concurrent.futures.Executor | None:
        """The threads for commits (None: the event loop's default executor)."""
        ...

    def describe_backend(self) -> str: ...
    def check(self) -> None: ...
    def close(self) -> None: ...
    def begin(self, meta: FileMeta) -> IncomingObject: ...
    def spares_wanted(self) -> bool: ...
    def prepare_spare(self) -> None: ...
    def recover(self) -> int: ...
    def unindexed(self) -> dict[Path, list[Path]]: ...
    def settle(self, names: list[Path]) -> None: ...
    def stored_files(self) -> list[Path]: ...
    def locate(self, path: Path) -> Path: ...


@dataclass
class Backends:
    index: IndexBackend
    store: ObjectStore

    def close(self) -> None:
        self.index.close()
        self.store.close()


def node_name() -> str:
    """Who holds an intent: this host and process (for the janitor's log lines)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_postgresql(spec: str | None) -> bool:
    return bool(spec) and str(spec).startswith(("postgresql://", "postgres://"))


def _check_settings(index: str | None, objects: str | None) -> None:
    """ValueError for a setting that names neither kind, or for S3 without PostgreSQL."""
    if index and not is_postgresql(index) and index != "sqlite":
        raise ValueError(
            f"index {index!r}: leave it empty (SQLite in the store folder) or give "
            "postgresql://USER@HOST:PORT/DATABASE"
        )
    if objects and not objects.startswith("s3://"):
        raise ValueError(
            f"objects {objects!r}: leave it empty (the store folder) or give s3://BUCKET?endpoint=URL"
        )
    if objects and not is_postgresql(index):
        raise ValueError(
            'objects in S3 need index = "postgresql://...": the upload intents that make a '
            "crash safe, and every node's view of every object, live in the shared index"
        )


def open_backends(
    store: Path,
    *,
    index: str | None = None,
    objects: str | None = None,
    fsync: bool = True,
    file_mode: int = PRIVATE_FILE_MODE,
    floor: Floor | None = DEFAULT_FLOOR,
) -> Backends:
    """The index and object store a node's settings name (see the module's docstring).

    Raises ValueError for a setting that names neither kind, or S3 without PostgreSQL, and
    :class:`~dicomtls.node.index_pg.IndexUnavailable` if the index cannot be reached.
    """
    _check_settings(index, objects)
    if not is_postgresql(index):
        folder = DurableStore(store, fsync=fsync, file_mode=file_mode, floor=floor)
        return Backends(Index(store / "index.sqlite", mode=file_mode), folder)
    from dicomtls.node.index_pg import PostgresIndex
    from dicomtls.node.objects_s3 import S3ObjectStore, parse_s3_url

    location = parse_s3_url(objects) if objects else None  # a bad URL fails before connecting
    shared = PostgresIndex(str(index), node=node_name())
    try:
        if location is None:
            folder = DurableStore(store, fsync=fsync, file_mode=file_mode, floor=floor)
            return Backends(shared, folder)
        return Backends(shared, S3ObjectStore(location, shared, store / ".spool"))
    except Exception:
        shared.close()
        raise
