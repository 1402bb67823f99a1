"""Durable storage of received objects: stream to a temporary file, fsync, put it in place, fsync the directory.

The rule a storage SCP must keep: Success is sent only for data that is on disk,
and a crash never leaves a partial file that looks complete. Data arrives in
fragments and goes straight to a temporary file under ``.incoming/``; only
:meth:`IncomingObject.commit` (fsync, an atomic link or rename, directory fsync)
makes it visible under ``objects/``. Leftovers of a crash are removed by
:meth:`DurableStore.recover`.

Between the commit and the index row there is a window a crash can hit: the file
is complete but no index knows it. ``IncomingObject.commit(index_pending=True)``
therefore *links* the temporary file into place instead of renaming it, and the
temporary name stays, a second name of the same file, until the caller says the
object is indexed (:meth:`IncomingObject.settle`). That second name is the marker:
:meth:`DurableStore.unindexed` lists what a crash left in the window, so recovery
costs as much as the objects in flight, not a scan of the whole store.

No file is created per object on the path a C-STORE waits on. On a journaling file
system, creating a file right after an fsync costs more than the rest of the commit,
so the next objects' temporary files are made ahead, as *spares* in ``.spare/``
(:meth:`DurableStore.prepare_spare`, called off that path), and renamed into
``.incoming/`` when an object begins.

Everything here is patient data, so what the store creates is its owner's alone
(files 0600, folders 0700), whatever the process umask: modes are set explicitly
with fchmod/chmod on what is created, never left to the umask (changing the umask
is process-wide, so not safe while other threads create files). A node may let its
group read (0640/0750, for a PACS group), never anyone else (:func:`check_file_mode`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import itertools
import os
import threading
import weakref
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

from dicomtls.dimse.part10 import encode_file_header
from dicomtls.dimse.uids import uid_problem
from dicomtls.errors import DicomTLSError
from dicomtls.logs import get_logger
from dicomtls.node.room import CHECK_STEP, DEFAULT_FLOOR, Floor, Room

__all__ = [
    "GROUP_FILE_MODE",
    "PRIVATE_FILE_MODE",
    "DurableStore",
    "FileMeta",
    "IncomingObject",
    "StorageError",
    "check_file_mode",
    "create_file",
    "folder_mode",
    "make_folders",
    "parse_file_mode",
    "set_mode",
]

log = get_logger("dicomtls.node")


class StorageError(DicomTLSError, OSError):
    """The object could not be stored (disk full, permissions): answer 0xA700, not Success."""


_PARTIAL = ".part"
_STAGED = ".new"  # a link made to replace an earlier copy atomically
#: With fsync on, every this many bytes written the kernel is asked to start writing them
#: out, so the disk works while the rest arrives and the commit's fsync finds little left.
_WRITEBACK_STEP = 32 << 20
_names = itertools.count()  # temporary names are unique in this process; the pid across them
#: Temporary files made ahead: enough for the objects a pipelining SCU has in flight to find
#: theirs ready, few enough that a crash leaves a few dozen empty files to remove. They are
#: made in batches, once half are used: each request wakes a thread, which costs the event
#: loop more than the file it makes (batches of 4 left 64 KiB objects making their own files
#: on the loop, and woke the thread for every 4th object).
_SPARES = 32


@dataclass(frozen=True)
class FileMeta:
    """The file meta information (PS3.10 7.1) a store writes in front of a received data
    set: what the C-STORE request names, and who we are and who sent it."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    _: KW_ONLY
    implementation_class_uid: str
    implementation_version_name: str | None = None
    source_ae_title: str | None = None

    def header(self) -> bytes:
        """The preamble, ``DICM`` and the file meta group, as the file starts."""
        return encode_file_header(
            self.sop_class_uid,
            self.sop_instance_uid,
            self.transfer_syntax_uid,
            self.implementation_class_uid,
            self.implementation_version_name,
            self.source_ae_title,
        )


@dataclass(frozen=True)
class StoredObject:
    path: Path
    size: int
    replaced: bool = False
    """An earlier copy of the same SOP instance was there and has been overwritten."""


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- permissions ------------------------------------------------------------------------------

PRIVATE_FILE_MODE = 0o600
"""The default: patient data is readable by the node's own user only."""
GROUP_FILE_MODE = 0o640
"""The widest a node allows: its group may read (a PACS group), nobody else anything."""
_PERMISSIONS = 0o777


def check_file_mode(mode: int) -> int:
    """``mode`` if a node may give it to patient data; else a ValueError in one line."""
    if mode in (PRIVATE_FILE_MODE, GROUP_FILE_MODE):
        return mode
    if mode & 0o007:
        why = "would let every user of the machine at patient data"
    else:
        why = "is not one a node uses for patient data"
    raise ValueError(
        f"file mode {mode:04o} {why}: use 0600 (owner only, the default) "
        "or 0640 (owner, and its group may read)"
    )


def parse_file_mode(value: str | int) -> int:
    """A file mode as a setting gives it ("0640", "640", "0o640", or a TOML integer), checked."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f'file mode {value!r}: give it in octal, e.g. "0640"')
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        if not text or any(c not in "01234567" for c in text):
            raise ValueError(f'file mode {value!r}: give it in octal, e.g. "0640"')
        value = int(text, 8)
    return check_file_mode(value)


def folder_mode(file_mode: int) -> int:
    """The folder mode that goes with a file mode: search permission wherever read is given."""
    return file_mode | (file_mode & 0o444) >> 2


def create_file(path: Path, mode: int) -> int:
    """A new file (it must not exist), open for writing, with exactly ``mode`` whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away; never any it did not give
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    return fd


def set_mode(path: Path, mode: int) -> int | None:
    """Give ``path`` the permission bits ``mode``; returns the bits it had, if they differed.

    The other bits stay: a folder's set-group-ID bit is how an operator makes new files
    belong to the PACS group, and must survive.
    """
    current = os.stat(path).st_mode
    if current & _PERMISSIONS == mode:
        return None
    os.chmod(path, (current & ~_PERMISSIONS & 0o7777) | mode)
    return current & _PERMISSIONS


def make_folders(path: Path, mode: int) -> None:
    """Create ``path`` and its missing parents, each with exactly ``mode``.

    Folders that already exist keep their modes: they may be an operator's.
    """
    missing: list[Path] = []
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, mode)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # made by someone else meanwhile: theirs
        set_mode(folder, mode)


class IncomingObject:
    """One object being received: write fragments, then commit or abort."""

    def __init__(self, store: DurableStore, final: Path, header: bytes) -> None:
        self._store = store
        self._final = final
        self._temp = store.incoming / f"{final.name}.{os.getpid()}.{next(_names)}{_PARTIAL}"
        self._fd: int | None = None  # set before open: abort() must work if open fails
        self._stored: StoredObject | None = None
        self._size = 0
        self._written_back = 0  # bytes the kernel was asked to write out (fsync on)
        self._taken = self._unchecked = 0  # bytes counted against the store's room; since a look
        try:
            if store.room is not None:
                store.room.admit()
            self._fd = store.open_temporary(self._temp)
            self.write(header)
        except OSError as exc:
            self.abort()
            raise StorageError(exc.errno, f"cannot start {final.name}: {exc.strerror}") from exc

    def write(self, data: bytes | memoryview) -> None:
        """Append received bytes; an OSError (e.g. ENOSPC) becomes StorageError."""
        assert self._fd is not None, "write after commit or abort"
        view = memoryview(data)
        try:
            self._make_room(len(view))
            while len(view):
                written = os.write(self._fd, view)
                view = view[written:]
                self._size += written
            if self._store.fsync and self._size - self._written_back >= _WRITEBACK_STEP:
                self._write_back()
        except OSError as exc:
            self.abort()
            raise StorageError(
                exc.errno, f"cannot write {self._final.name}: {exc.strerror}"
            ) from exc

    def _make_room(self, size: int) -> None:
        """Count ``size`` more bytes against the store's room, and every :data:`CHECK_STEP`
        look at the disk's free space again (an OSError, ENOSPC, when there is none)."""
        room = self._store.room
        if room is None:
            return
        room.take(size)
        self._taken += size
        self._unchecked += size
        if self._unchecked >= CHECK_STEP:
            self._unchecked = 0
            room.admit()

    def _give_back(self) -> None:
        if self._store.room is not None and self._taken:
            self._store.room.give_back(self._taken)
            self._taken = 0

    def _write_back(self) -> None:
        """Start writing out what has arrived (the fsync at commit is still what counts).

        POSIX_FADV_DONTNEED starts write-back of dirty pages without waiting for it, and
        drops the pages of the step before, written out by now: a large object streams
        through a few dozen megabytes of page cache instead of its whole size.
        """
        if hasattr(os, "posix_fadvise") and self._fd is not None:
            start = max(0, self._written_back - _WRITEBACK_STEP)
            os.posix_fadvise(self._fd, start, self._size - start, os.POSIX_FADV_DONTNEED)
        self._written_back = self._size

    def commit(self, *, index_pending: bool = False) -> StoredObject:
        """Make the object durable and visible; only after this may Success be sent.

        With ``index_pending`` the object counts as not yet indexed until :meth:`settle`
        (or :meth:`withdraw`): a crash before then leaves it to :meth:`DurableStore.unindexed`.
        """
        assert self._fd is not None, "commit after commit or abort"
        placed = replaced = False
        try:
            if self._store.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self._store.make_bucket(self._final.parent)
            try:
                replaced = self._place(index_pending)
            except FileNotFoundError:  # someone removed the bucket since we made it
                self._store.make_bucket(self._final.parent, again=True)
                replaced = self._place(index_pending)
            placed = True
            if self._store.fsync:
                _fsync_directory(self._final.parent)
        except OSError as exc:
            if placed:  # visible but not known durable: take it back, like a failed index
                self._stored = StoredObject(self._final, self._size, replaced)
                self.withdraw()
            else:
                self.abort()
            raise StorageError(
                exc.errno, f"cannot store {self._final.name}: {exc.strerror}"
            ) from exc
        self._stored = StoredObject(self._final, self._size, replaced)
        return self._stored

    def _place(self, keep_temporary: bool) -> bool:
        """Atomically make the final name this file; True if it replaced an earlier copy."""
        if not keep_temporary:
            replaced = self._final.exists()
            os.replace(self._temp, self._final)
            return replaced
        try:
            os.link(self._temp, self._final)
            return False
        except FileExistsError:
            staged = self._temp.with_name(self._temp.name + _STAGED)
            os.link(self._temp, staged)
            os.replace(staged, self._final)  # a rename, so the earlier copy is never missing
            return True

    def settle(self) -> None:
        """The committed object is indexed: drop the temporary name that would re-index it."""
        DurableStore.settle([self._temp])

    def withdraw(self) -> None:
        """The committed object cannot be indexed: remove it again, so nothing unindexed stays.

        If it overwrote an earlier copy, whose index row names this path, the file stays
        and so does its temporary name: the next start re-indexes it
        (:meth:`DurableStore.unindexed`).
        """
        stored = self._stored
        assert stored is not None, "withdraw before commit"
        if stored.replaced:
            return
        try:
            stored.path.unlink(missing_ok=True)
            if self._store.fsync:
                _fsync_directory(stored.path.parent)
        except OSError:
            return  # the temporary name stays: the next start indexes or forgets the file
        self._give_back()
        DurableStore.settle([self._temp])

    def abort(self) -> None:
        """Forget the object: the temporary file goes, nothing becomes visible."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._temp.unlink(missing_ok=True)
        self._give_back()


class DurableStore:
    """A directory of received objects, ``objects/ab/<SOPInstanceUID>.dcm``: the embedded
    default object store (:class:`~dicomtls.node.backends.ObjectStore`).

    ``file_mode`` is what every file gets (:func:`check_file_mode`), folders the matching
    :func:`folder_mode`. The store's own folders are set to it when the store opens: a store
    made by an older version (0755 under umask 022) is closed to others at once, since no
    one reaches a file whose folder they may not search; its old files keep their modes.
    A flat store's folder (C-GET ``--out``) is the user's: it gets the mode only if made here,
    and our temporary files go in a hidden folder of the run's own, gone at :meth:`close`
    (or when the store is collected, or the process exits).

    An object is refused while the disk's free space is below ``floor`` (by default 1 GiB or
    5% of the disk, whichever is smaller; None: no floor), and past ``max_bytes`` received
    (None: no bound); see :mod:`dicomtls.node.room`.
    """

    def __init__(
        self,
        root: Path,
        *,
        fsync: bool = True,
        flat: bool = False,
        file_mode: int = PRIVATE_FILE_MODE,
        floor: Floor | None = DEFAULT_FLOOR,
        max_bytes: int | None = None,
    ) -> None:
        self.root = root
        self.fsync = fsync
        self.flat = flat
        """``root/<SOPInstanceUID>.dcm`` instead of buckets under ``objects/`` (C-GET --out)."""
        self.file_mode = check_file_mode(file_mode)
        self.folder_mode = folder_mode(file_mode)
        self.objects = root if flat else root / "objects"
        if flat:  # the user's folder: our temporary files in a hidden folder of this run's own
            work = root / f".dicomtls-receiving-{os.getpid()}.{next(_names)}"
            self.incoming = self.spares = work
        else:
            self.incoming = root / ".incoming"
            self.spares = root / ".spare"
        for directory in (root, self.objects, self.incoming, self.spares):
            make_folders(directory, self.folder_mode)
        ours = (
            (self.incoming, self.spares)
            if flat
            else (root, self.objects, self.incoming, self.spares)
        )
        self._set_folder_modes(ours)
        self.room = (
            None
            if floor is None and max_bytes is None
            else Room(root, floor or Floor(0, None), max_bytes)
        )
        self._buckets: set[Path] = {self.objects}
        self._spares: list[tuple[Path, int]] = []
        self._spare_lock = threading.Lock()  # spares are made on a worker thread
        self._refill_asked = False
        self._closed = threading.Event()
        self.executor: concurrent.futures.Executor = concurrent.futures.ThreadPoolExecutor(
            thread_name_prefix="dicomtls-commit"
        )
        """Commits (fsyncs) run on threads of the store's own, as many as the event loop's
        default executor has: on that one, a few C-FINDs keeping SQLite busy there held up
        every C-STORE."""
        # close(), or else when the store is collected or the process exits: whoever got
        # objects into a folder of theirs finds the objects there and nothing else.
        self._tidy = weakref.finalize(
            self,
            _tidy,
            self._spares,
            self._spare_lock,
            self._closed,
            self.incoming if flat else None,
        )

    @property
    def blocking(self) -> bool:
        """A commit that fsyncs waits on the disk: the handler runs it on a worker thread."""
        return self.fsync

    def describe_backend(self) -> str:
        return f"folder {self.objects}"

    def check(self) -> None:
        """Raise unless the store can take objects (the node's health check)."""
        for folder in (self.objects, self.incoming):
            if not os.access(folder, os.W_OK | os.X_OK):
                raise StorageError(f"store folder {folder} cannot be written")

    def locate(self, path: Path) -> Path:
        """The readable object at an indexed location: here, the file itself."""
        return path

    def _set_folder_modes(self, folders: tuple[Path, ...]) -> None:
        """Give the store's own folders its mode; one line if they were open to others."""
        opened = []
        for folder in folders:
            try:
                before = set_mode(folder, self.folder_mode)
            except OSError as exc:  # not ours to change: say so, and run
                log.warning(
                    "store folder %s: cannot set mode %04o: %s", folder, self.folder_mode, exc
                )
                continue
            if before is not None and before & ~self.folder_mode:
                opened.append(f"{folder} {before:04o}")
        if opened:
            log.warning(
                "store folders were open to others (%s; made by an older version?): now %04o, "
                "so the objects and index inside are out of their reach",
                ", ".join(opened),
                self.folder_mode,
            )

    def make_bucket(self, bucket: Path, *, again: bool = False) -> None:
        """Create an object's directory once (not a syscall per object); with fsync on, the
        new directory's own entry is made durable too, or a crash could lose the bucket."""
        if bucket in self._buckets and not again:
            return
        try:
            os.mkdir(bucket, self.folder_mode)
        except FileExistsError:
            pass
        else:
            set_mode(bucket, self.folder_mode)
            if self.fsync:
                _fsync_directory(bucket.parent)
        self._buckets.add(bucket)

    # -- temporary files ----------------------------------------------------------------------

    def spares_wanted(self) -> bool:
        """True when half the spares are used and no refill is under way: the caller then
        runs :meth:`prepare_spare` off the path a C-STORE waits on (once; the next ask
        comes when that refill is done and half are used again)."""
        with self._spare_lock:
            if self._refill_asked or len(self._spares) > _SPARES // 2:
                return False
            self._refill_asked = True
            return True

    def prepare_spare(self) -> None:
        """Make temporary files for the next objects now, while no C-STORE waits for them.

        Safe from any thread, even while the store closes; a failure (a full disk) only
        means the next object creates its own file, and reports the error then.
        """
        try:
            self._make_spares()
        finally:
            with self._spare_lock:
                self._refill_asked = False

    def _make_spares(self) -> None:
        while True:
            with self._spare_lock:
                if self._closed.is_set() or len(self._spares) >= _SPARES:
                    return
            path = self.spares / f"{os.getpid()}.{next(_names)}{_PARTIAL}"
            try:
                fd = create_file(path, self.file_mode)
            except OSError:
                return
            with self._spare_lock:
                if not self._closed.is_set():
                    self._spares.append((path, fd))
                    continue
            os.close(fd)  # closed while it was made: it goes, and a flat store's folder too
            path.unlink(missing_ok=True)
            if self.flat:
                with contextlib.suppress(OSError):
                    self.spares.rmdir()
            return

    def open_temporary(self, path: Path) -> int:
        """An open, empty file named ``path``: a spare renamed, or a new file."""
        with self._spare_lock:
            spare = self._spares.pop() if self._spares else None
        if spare is None:
            return create_file(path, self.file_mode)
        spare_path, fd = spare
        try:
            os.rename(spare_path, path)
        except OSError:
            os.close(fd)
            spare_path.unlink(missing_ok=True)
            return create_file(path, self.file_mode)
        return fd

    def close(self) -> None:
        """Remove the spare files made ahead; a flat store also its folder of temporary files."""
        self.executor.shutdown(wait=True)
        self._tidy()

    # -- objects ----------------------------------------------------------------------------

    def path_for(self, sop_instance_uid: str) -> Path:
        """Where the object goes. Its name is its UID, so only a UID by PS3.5 9.1 may be one:
        not ``.``, ``..``, nor a UID with a newline after it."""
        problem = uid_problem(sop_instance_uid)
        if problem is not None:
            raise StorageError(
                0, f"refusing to store SOP instance UID {sop_instance_uid!r}: {problem}"
            )
        if self.flat:
            return self.objects / f"{sop_instance_uid}.dcm"
        bucket = hashlib.sha1(sop_instance_uid.encode(), usedforsecurity=False).hexdigest()[:2]
        return self.objects / bucket / f"{sop_instance_uid}.dcm"

    def begin(self, meta: FileMeta) -> IncomingObject:
        """Start receiving the object ``meta`` describes (StorageError for a UID that
        cannot name a file)."""
        return IncomingObject(self, self.path_for(meta.sop_instance_uid), meta.header())

    def stored_files(self) -> list[Path]:
        """Every committed object (what ``index --rebuild`` reads)."""
        pattern = "*.dcm" if self.flat else "*/*.dcm"
        return sorted(self.objects.glob(pattern))

    # -- after a crash ----------------------------------------------------------------------

    def recover(self) -> int:
        """Remove what a crash left half-written; returns how many partial objects went.

        A temporary file that also has its final name is a committed object that may not
        be indexed: it stays for :meth:`unindexed`.
        """
        removed = 0
        for leftover in sorted(self.incoming.iterdir()):
            name = leftover.name
            if name.endswith(_PARTIAL) and _names_of(leftover) > 1:
                continue
            if name.endswith((_PARTIAL, _STAGED)):
                leftover.unlink(missing_ok=True)
                removed += 1
        for spare in self.spares.glob("*" + _PARTIAL):  # empty files made ahead
            spare.unlink(missing_ok=True)
        return removed

    def unindexed(self) -> dict[Path, list[Path]]:
        """Objects a crash may have caught between commit and index: file -> its temporary names.

        A temporary name whose file has been replaced since goes at once. Call
        :meth:`settle` with the names once the file is indexed.
        """
        found: dict[Path, list[Path]] = {}
        for temporary in sorted(self.incoming.glob("*" + _PARTIAL)):
            if _names_of(temporary) < 2:
                continue  # a partial object: recover() removes it
            uid = temporary.name.partition(".dcm.")[0]
            try:
                path: Path | None = self.path_for(uid)
            except StorageError:
                path = None
            if path is None or not _same_file(path, temporary):
                temporary.unlink(missing_ok=True)
                continue
            found.setdefault(path, []).append(temporary)
        return found

    @staticmethod
    def settle(names: list[Path]) -> None:
        """Drop the temporary names of indexed objects (one left over only costs a re-index)."""
        for name in names:
            with contextlib.suppress(OSError):
                name.unlink(missing_ok=True)


def _tidy(
    spares: list[tuple[Path, int]], lock: threading.Lock, closed: threading.Event, work: Path | None
) -> None:
    """Remove the spare files made ahead and, given ``work`` (a flat store's hidden folder),
    the partial objects left in it (a retrieval cut short) and the folder itself."""
    with lock:
        closed.set()  # a spare being made now removes itself (prepare_spare)
        taken = list(spares)
        spares.clear()
    for path, fd in taken:
        os.close(fd)
        path.unlink(missing_ok=True)
    if work is None:
        return
    with contextlib.suppress(OSError):
        for leftover in work.glob("*" + _PARTIAL + "*"):
            leftover.unlink(missing_ok=True)
        work.rmdir()


def _names_of(path: Path) -> int:
    try:
        return path.stat().st_nlink
    except OSError:
        return 0


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
