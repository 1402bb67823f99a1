"""Patient data on disk is the node's alone (0600/0700) whatever the umask; at most its group reads.

Each test sets a permissive umask itself (022, the usual one, and 000, the worst) and puts
the old one back, then looks at the mode of every file and folder the code under test made.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from dicomtls.audit import AuditMessage, FileSink, Node, application_activity
from dicomtls.node.index import Index
from dicomtls.node.storage import (
    DurableStore,
    FileMeta,
    check_file_mode,
    folder_mode,
    parse_file_mode,
)

from .test_storage import CT

PERMISSIVE = [0o022, 0o000]


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the block (and the processes it starts) under ``mask``; the old umask after."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes_under(root: Path) -> dict[str, int]:
    """Every path under ``root`` (itself included) -> its permission bits."""
    found = {".": stat.S_IMODE(root.lstat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_modes(root: Path, file_mode: int, *, root_too: bool = True) -> dict[str, int]:
    """Every file under ``root`` has ``file_mode`` and every folder its folder mode."""
    modes = modes_under(root)
    for name, mode in modes.items():
        if name == "." and not root_too:
            continue
        expected = folder_mode(file_mode) if (root / name).is_dir() else file_mode
        assert mode == expected, f"{name}: {mode:04o}, not {expected:04o}\n{modes}"
    return modes


def _store_one(store: DurableStore, uid: str) -> Path:
    incoming = store.begin(
        FileMeta(CT, uid, ExplicitVRLittleEndian, implementation_class_uid="1.2")
    )
    incoming.write(b"\0" * 1000)
    return incoming.commit().path


@pytest.mark.parametrize("mask", PERMISSIVE, ids=lambda m: f"umask{m:03o}")
def test_store_files_and_folders_are_private(tmp_path: Path, mask: int) -> None:
    root = tmp_path / "new" / "store"  # the parent is made too: ours as well
    with umask(mask):
        store = DurableStore(root)
        _store_one(store, "1.2.3.3")  # no spare yet: its own temporary file
        store.prepare_spare()  # the files made ahead, in .spare/
        assert len(list(store.spares.iterdir())) >= 1
        incoming = store.begin(
            FileMeta(CT, "1.2.3.4", ExplicitVRLittleEndian, implementation_class_uid="1.2")
        )
        incoming.write(b"\0" * 1000)
        (temporary,) = store.incoming.iterdir()  # half-received: patient data already
        assert stat.S_IMODE(temporary.stat().st_mode) == 0o600
        incoming.commit(index_pending=True)  # linked in place, the temporary name kept
        _store_one(store, "1.2.3.5")
        _store_one(store, "1.2.3.5")  # a replacement: a rename over the earlier copy
        modes = assert_modes(tmp_path / "new", 0o600)
        store.close()
    assert modes["."] == 0o700  # the parent folder made for the store
    assert len([n for n in modes if n.endswith(".dcm")]) == 3
    assert any(n.startswith("store/.incoming/") for n in modes)
    assert any(n.startswith("store/.spare/") for n in modes)


@pytest.mark.parametrize("mask", [0o000, 0o077], ids=lambda m: f"umask{m:03o}")
def test_a_group_readable_store_is_exactly_that(tmp_path: Path, mask: int) -> None:
    """0640 lets the group read, whether the umask would have given more (000) or less (077)."""
    with umask(mask):
        store = DurableStore(tmp_path / "store", file_mode=0o640)
        _store_one(store, "1.2.3.4")
        store.prepare_spare()
        store.close()
    modes = assert_modes(tmp_path / "store", 0o640)
    assert modes["."] == 0o750


def test_the_set_group_id_bit_of_a_store_folder_survives(tmp_path: Path) -> None:
    """An operator makes new files belong to the PACS group with g+s on the store folder."""
    root = tmp_path / "store"
    root.mkdir()
    os.chmod(root, 0o2770)
    with umask(0o000):
        store = DurableStore(root, file_mode=0o640)
        _store_one(store, "1.2.3.4")
    assert stat.S_IMODE(root.stat().st_mode) == 0o2750


def test_get_out_folder_made_private_and_an_existing_one_left_alone(tmp_path: Path) -> None:
    with umask(0o000):
        made = DurableStore(tmp_path / "retrieved", flat=True)  # dicomtls get --out retrieved
        _store_one(made, "1.2.3.4")
        mine = tmp_path / "mine"
        mine.mkdir(mode=0o755)
        os.chmod(mine, 0o755)
        existing = DurableStore(mine, flat=True)
        _store_one(existing, "1.2.3.5")
    assert_modes(tmp_path / "retrieved", 0o600)
    assert stat.S_IMODE(mine.stat().st_mode) == 0o755  # the user's own folder: not ours
    assert_modes(mine, 0o600, root_too=False)  # but what we put in it is private


def test_an_older_store_is_closed_to_others_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store made 0755/0644 by an older version: its folders are set to 0700 at open, so
    nothing inside is reachable by others; the old files keep their modes (no walk of a
    store of millions of objects at every start)."""
    root = tmp_path / "store"
    with umask(0o022):
        for folder in (root / "objects" / "ab", root / ".incoming", root / ".spare"):
            folder.mkdir(parents=True)
        old = root / "objects" / "ab" / "1.2.3.dcm"
        old.write_bytes(b"old object")
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
    with caplog.at_level(logging.WARNING, logger="dicomtls"):
        store = DurableStore(root)
        DurableStore(root)  # the next start: nothing to say
    for folder in (root, root / "objects", root / ".incoming", root / ".spare"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(old.stat().st_mode) == 0o644  # unreachable now, and not walked
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert f"{root} 0755" in lines[0] and "now 0700" in lines[0]
    store.close()


@pytest.mark.parametrize("mask", PERMISSIVE, ids=lambda m: f"umask{m:03o}")
@pytest.mark.parametrize("mode", [0o600, 0o640], ids=lambda m: f"{m:04o}")
def test_index_and_its_wal_and_shm_get_the_mode(tmp_path: Path, mask: int, mode: int) -> None:
    """SQLite gives -wal and -shm the main file's permission bits: made right, they follow."""
    path = tmp_path / "index.sqlite"
    with umask(mask):
        index = Index(path, mode=mode)
        index.add(tmp_path / "x.dcm", {"PatientID": "P1", "SOPInstanceUID": "1.2.3"})
        files = sorted(tmp_path.glob("index.sqlite*"))
        assert [p.name for p in files] == ["index.sqlite", "index.sqlite-shm", "index.sqlite-wal"]
        for file in files:
            assert stat.S_IMODE(file.stat().st_mode) == mode, file
        index.close()


def test_an_older_index_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    with umask(0o022):
        Index(path).close()
        os.chmod(path, 0o644)  # as an older version made it
        index = Index(path)
        index.add(tmp_path / "x.dcm", {"PatientID": "P1", "SOPInstanceUID": "1.2.3"})
        assert index.count() == 1
    for file in tmp_path.glob("index.sqlite*"):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    index.close()


def _message() -> AuditMessage:
    return application_activity(
        started=True, application=Node("DICOMTLS", "127.0.0.1", process_id=1), source_id="n"
    )


@pytest.mark.parametrize("mask", PERMISSIVE, ids=lambda m: f"umask{m:03o}")
def test_audit_file_and_the_folders_made_for_it_are_private(tmp_path: Path, mask: int) -> None:
    with umask(mask):
        sink = FileSink(tmp_path / "logs" / "audit" / "audit.log")
        sink.send(_message())
        sink.close()
        group = FileSink(tmp_path / "shared" / "audit.log", mode=0o640)
        group.send(_message())
        group.close()
    assert sink.sent == 1 and group.sent == 1
    assert_modes(tmp_path / "logs", 0o600)
    assert_modes(tmp_path / "shared", 0o640)


def test_an_audit_file_is_never_world_readable(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^audit file mode 0644: use 0600, or 0640"):
        FileSink(tmp_path / "audit.log", mode=0o644)


def test_an_older_audit_file_is_tightened_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(b"<AuditMessage/>\n")
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="dicomtls"):
        sink = FileSink(path)
        sink.send(_message())
        sink.send(_message())
        sink.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes().splitlines()) == 3  # appended, nothing lost
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"audit file {path} was mode 0644: now 0600"]


@pytest.mark.parametrize(
    ("given", "mode"), [("0600", 0o600), ("640", 0o640), ("0o640", 0o640), (0o640, 0o640)]
)
def test_file_mode_settings_accepted(given: str | int, mode: int) -> None:
    assert parse_file_mode(given) == mode


USE = ": use 0600 (owner only, the default) or 0640 (owner, and its group may read)"
OCTAL = ': give it in octal, e.g. "0640"'


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ("0644", "file mode 0644 would let every user of the machine at patient data" + USE),
        (0o666, "file mode 0666 would let every user of the machine at patient data" + USE),
        ("0660", "file mode 0660 is not one a node uses for patient data" + USE),
        ("0400", "file mode 0400 is not one a node uses for patient data" + USE),
        ("rw-r-----", "file mode 'rw-r-----'" + OCTAL),
        (True, "file mode True" + OCTAL),
    ],
)
def test_file_mode_settings_refused_in_one_line(given: str | int, error: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_file_mode(given)
    assert str(refused.value) == error


def test_a_store_refuses_a_wide_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="0644"):
        check_file_mode(0o644)
    with pytest.raises(ValueError, match="0644"):
        DurableStore(tmp_path / "never-made", file_mode=0o644)
    assert not (tmp_path / "never-made").exists()
