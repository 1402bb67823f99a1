"""Objects in S3: the object store of several nodes, with the durability contract of one.

``objects = "s3://BUCKET?endpoint=URL"`` puts received objects in a bucket instead of the
store folder. What Success means does not change: the object is durable and indexed.

1. The data set streams into a spool file (unlinked at once: a crash leaves nothing) while
   its SHA-256 is computed; S3 wants the length before the body, and DIMSE gives it after.
2. Commit: the object's key, unique to this attempt (``objects/ab/<UID>/<time>-<node>-<n>.dcm``,
   so a retry or a re-send never overwrites an object another row names), is written to
   the index's ``pending_objects`` *before* the upload (the intent).
3. PUT with ``x-amz-checksum-sha256``: only a 200 whose echoed checksum is ours counts (the
   server verified the body; one damaged on the way is refused, BadDigest).
4. The index row is written and the intent removed in one transaction
   (:meth:`~dicomtls.node.index_pg.PostgresIndex.add` with ``settles``). Then Success.

A node killed between 2 and 4 leaves an intent, perhaps an object: the janitor
(:mod:`dicomtls.node.janitor`) removes both, since no Success was sent for it.

Reading (C-MOVE, C-GET, any node): an indexed location becomes an :class:`S3ObjectPath`,
a path whose ``open`` reads the object by ranged GETs, a window at a time, with the next
window fetched in the background while the current one is sent; an object is never
loaded whole. The header read costs one small GET.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import itertools
import os
import socket
import tempfile
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path, PosixPath
from typing import IO, Any

from dicomtls.dimse.uids import uid_problem
from dicomtls.logs import get_logger
from dicomtls.node.s3 import Credentials, S3Client, S3Error, find_credentials
from dicomtls.node.storage import FileMeta, StorageError, StoredObject

__all__ = ["S3Incoming", "S3Location", "S3ObjectPath", "S3ObjectStore", "parse_s3_url"]

log = get_logger("dicomtls.node")

#: The first GET of an object: its header and the start of the data set.
_FIRST_WINDOW = 64 << 10
#: A GET never asks for less than this (fewer round trips for small reads).
_MIN_WINDOW = 256 << 10
_attempts = itertools.count()


class S3Location:
    """Where a store's objects go: ``s3://BUCKET[/PREFIX]?endpoint=URL[&region=R]``."""

    def __init__(self, bucket: str, prefix: str, endpoint: str, region: str | None) -> None:
        self.bucket, self.prefix, self.endpoint, self.region = bucket, prefix, endpoint, region

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self.endpoint}"


def parse_s3_url(url: str) -> S3Location:
    """An ``objects`` setting as an :class:`S3Location`; ValueError naming what is wrong."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"objects {url!r}: expected s3://BUCKET?endpoint=URL")
    query = urllib.parse.parse_qs(parts.query)
    endpoint = (query.get("endpoint") or [""])[0]
    if not endpoint:
        raise ValueError(
            f"objects {url!r}: no endpoint (s3://{parts.netloc}?endpoint=https://s3.example.org)"
        )
    prefix = parts.path.strip("/")
    regions = query.get("region") or []
    return S3Location(
        parts.netloc, prefix + "/" if prefix else "", endpoint, regions[0] if regions else None
    )


class _ObjectReader(io.RawIOBase):
    """An S3 object as a seekable binary file, read by ranged GETs (see the module's docstring)."""

    def __init__(self, store: S3ObjectStore, key: str, size: int | None) -> None:
        super().__init__()
        self._store, self._key, self._size = store, key, size
        self._pos = 0
        self._window = b""
        self._window_at = 0
        self._ahead: tuple[int, concurrent.futures.Future[tuple[bytes, int]]] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            offset += self._known_size()
        elif whence == io.SEEK_CUR:
            offset += self._pos
        self._pos = max(0, offset)
        return self._pos

    def _known_size(self) -> int:
        if self._size is None:
            headers = self._store.client.head(self._store.location.bucket, self._key)
            if headers is None:
                raise FileNotFoundError(f"S3 object {self._key} is gone")
            self._size = int(headers.get("content-length", 0))
        return self._size

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._size is not None and self._pos >= self._size:
            return 0
        offset = self._pos - self._window_at
        if not 0 <= offset < len(self._window):
            first = self._size is None and self._pos == 0 and len(view) < _FIRST_WINDOW
            self._fetch(self._pos, _FIRST_WINDOW if first else max(len(view), _MIN_WINDOW))
            offset = 0
            if not self._window:
                return 0
        take = min(len(view), len(self._window) - offset)
        view[:take] = self._window[offset : offset + take]
        self._pos += take
        return take

    def _fetch(self, start: int, length: int) -> None:
        ahead, self._ahead = self._ahead, None
        try:
            if ahead is not None and ahead[0] == start:
                data, total = ahead[1].result()
            else:
                if ahead is not None:
                    ahead[1].cancel()
                data, total = self._store.client.get(
                    self._store.location.bucket, self._key, start, start + length
                )
        except S3Error as exc:
            if exc.status == 416:  # past the end
                self._window, self._window_at = b"", start
                return
            raise OSError(f"cannot read S3 object {self._key}: {exc}") from exc
        self._size, self._window, self._window_at = total, data, start
        following = start + len(data)
        if length > _FIRST_WINDOW and following < total:  # a sequential reader: fetch ahead
            future = self._store.reads.submit(
                self._store.client.get,
                self._store.location.bucket,
                self._key,
                following,
                following + length,
            )
            self._ahead = (following, future)

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead[1].cancel()
            self._ahead = None
        self._window = b""
        super().close()


class S3ObjectPath(PosixPath):
    """An object in an S3 store, named by its key like a path.

    C-MOVE and C-GET send what the index names, as paths: the sender opens each one
    (:func:`dicomtls.dimse.part10.read_header`, ``iter_blocks``), and this path's ``open``
    reads the object from S3. ``str()`` is the key, which is what the index holds.
    """

    store: S3ObjectStore | None = None
    size: int | None = None
    sha256: str | None = None

    @classmethod
    def of(
        cls, store: S3ObjectStore, key: str, size: int | None = None, sha256: str | None = None
    ) -> S3ObjectPath:
        path = cls(key)
        path.store, path.size, path.sha256 = store, size, sha256
        return path

    def open(  # type: ignore[override]
        self, mode: str = "rb", buffering: int = -1, *args: object, **kwargs: object
    ) -> IO[bytes]:
        if mode != "rb" or self.store is None:
            raise OSError(f"S3 object {self}: opened for reading only, from its store")
        raw = _ObjectReader(self.store, str(self), self.size)
        if buffering == 0:
            return raw  # type: ignore[return-value]
        return io.BufferedReader(raw, _FIRST_WINDOW)

    def exists(self, *args: object, **kwargs: object) -> bool:
        return (
            self.store is not None
            and self.store.client.head(self.store.location.bucket, str(self)) is not None
        )


def _node_token() -> str:
    return f"{socket.gethostname()[:32]}-{os.getpid()}".replace("/", "_")


class S3Incoming:
    """One object on its way to S3: spooled and hashed, then committed (see the module)."""

    def __init__(self, store: S3ObjectStore, sop_instance_uid: str, header: bytes) -> None:
        self._store = store
        self._uid = sop_instance_uid
        self._spool: IO[bytes] | None = None
        self._hash = hashlib.sha256()
        self._size = 0
        self._path: S3ObjectPath | None = None
        try:
            self._spool = tempfile.TemporaryFile(dir=store.spool)  # noqa: SIM115 (closed at commit/abort)
            self.write(header)
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot start {sop_instance_uid}: {exc.strerror or exc}") from exc

    def write(self, data: bytes | memoryview) -> None:
        assert self._spool is not None, "write after commit or abort"
        try:
            self._spool.write(data)
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot spool {self._uid}: {exc.strerror or exc}") from exc
        self._hash.update(data)
        self._size += len(data)

    def commit(self, *, index_pending: bool = False) -> StoredObject:
        """Intent, then PUT; the object is in S3, its index row still to be written (Success
        waits for that: ``index_pending`` is always the case here)."""
        spool, self._spool = self._spool, None
        assert spool is not None, "commit after commit or abort"
        store = self._store
        key = store.new_key(self._uid)
        digest = self._hash.digest()
        try:
            spool.flush()
            store.index.intend(key)
        except Exception as exc:
            spool.close()
            raise StorageError(
                f"cannot store {self._uid}: the index refused the intent: {exc}"
            ) from exc
        try:
            store.client.put(store.location.bucket, key, spool, self._size, digest)
        except S3Error as exc:
            self._forget(key)
            raise StorageError(f"cannot store {self._uid}: {exc}") from exc
        finally:
            spool.close()
        self._path = S3ObjectPath.of(store, key, self._size, digest.hex())
        return StoredObject(self._path, self._size, False)

    def _forget(self, key: str) -> None:
        try:
            self._store.client.delete(self._store.location.bucket, key)
            self._store.index.forget(key)
        except Exception as exc:  # the janitor finds the intent
            log.warning("S3 object %s not removed (%s): left to the janitor", key, exc)

    def settle(self) -> None:
        """Nothing to do: indexing removed the intent in its own transaction."""

    def withdraw(self) -> None:
        """The object could not be indexed: remove it again (else the janitor will)."""
        if self._path is not None:
            self._forget(str(self._path))

    def abort(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None


class S3ObjectStore:
    """Received objects in an S3 bucket, with intents in a PostgreSQL index (the module)."""

    #: Every commit waits on the network: the handler runs it on :attr:`executor`.
    blocking = True
    fsync = True
    """Durability is the server's (SeaweedFS: ``fs.configure -fsync``; AWS: at 200)."""

    def __init__(
        self,
        location: S3Location,
        index: Any,
        spool: Path,
        *,
        credentials: Credentials | None = None,
        uploads: int = 32,
        timeout: float = 60.0,
    ) -> None:
        if credentials is None:
            credentials = find_credentials()
        if location.region:
            credentials = Credentials(
                credentials.access_key,
                credentials.secret_key,
                credentials.session_token,
                location.region,
            )
        self.location = location
        self.index = index
        self.spool = spool
        spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.client = S3Client(
            location.endpoint, credentials, connections=uploads + 8, timeout=timeout
        )
        self.executor: concurrent.futures.Executor = concurrent.futures.ThreadPoolExecutor(
            uploads, thread_name_prefix="dicomtls-s3-put"
        )
        self.reads = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="dicomtls-s3-read")
        self._node = _node_token()

    def describe_backend(self) -> str:
        return f"S3 {self.location}"

    def check(self) -> None:
        """Raise unless the bucket answers (the node's health check)."""
        self.client.check(self.location.bucket)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.reads.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def new_key(self, sop_instance_uid: str) -> str:
        """A key no other attempt ever gets: time, node, process, counter."""
        bucket = hashlib.sha1(sop_instance_uid.encode(), usedforsecurity=False).hexdigest()[:2]
        attempt = f"{time.time_ns():x}-{self._node}-{next(_attempts)}"
        return f"{self.location.prefix}objects/{bucket}/{sop_instance_uid}/{attempt}.dcm"

    def begin(self, meta: FileMeta) -> S3Incoming:
        uid = meta.sop_instance_uid
        problem = uid_problem(uid)
        if problem is not None:
            raise StorageError(f"refusing to store SOP instance UID {uid!r}: {problem}")
        return S3Incoming(self, uid, meta.header())

    def locate(self, path: Path) -> Path:
        """The readable object at an indexed location."""
        return S3ObjectPath.of(self, str(path))

    def stored_files(self) -> list[Path]:
        """Every object in the bucket under this store's prefix (``index --rebuild``)."""
        prefix = self.location.prefix + "objects/"
        return [
            S3ObjectPath.of(self, key, size)
            for key, size in self.client.list(self.location.bucket, prefix)
        ]

    # -- what the folder store does after a crash: nothing to do here ---------------------

    def spares_wanted(self) -> bool:
        """Spool files are anonymous (unlinked at creation): none to make ahead."""
        return False

    def prepare_spare(self) -> None:
        """Nothing to make ahead (see :meth:`spares_wanted`)."""

    def recover(self) -> int:
        return 0

    def unindexed(self) -> dict[Path, list[Path]]:
        """A crash's uploads are intents in the index: the janitor's, not recovery's."""
        return {}

    @staticmethod
    def settle(names: Iterable[Path]) -> None:
        """Nothing is marked locally."""
