"""A flat store (``get --out DIR``, ``Peer.get(..., "folder/")``) leaves the user's folder
holding the objects it received and nothing of its own: not on close, not when dropped."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from dicomtls.node import storage
from dicomtls.node.storage import DurableStore, FileMeta

CT = "1.2.840.10008.5.1.4.1.1.2"


def _receive(store: DurableStore, uid: str, *, complete: bool = True) -> None:
    incoming = store.begin(
        FileMeta(CT, uid, ExplicitVRLittleEndian, implementation_class_uid="1.2")
    )
    incoming.write(b"\0" * 1000)
    if complete:
        incoming.commit()


def _half_received(store: DurableStore) -> None:
    """An object cut short (the retrieval ended mid-transfer): never committed, never aborted."""
    _receive(store, "1.2.3.9", complete=False)


def test_close_leaves_only_the_objects(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("the user's own")
    store = DurableStore(tmp_path, flat=True)
    store.prepare_spare()  # files made ahead, as the handler does
    _receive(store, "1.2.3.4")
    _half_received(store)
    assert any(p.name.startswith(".dicomtls-receiving-") for p in tmp_path.iterdir())
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.2.3.4.dcm", "notes.txt"]


def test_a_store_dropped_without_close_tidies_up_too(tmp_path: Path) -> None:
    store = DurableStore(tmp_path, flat=True)
    store.prepare_spare()
    _receive(store, "1.2.3.5")
    del store
    gc.collect()
    assert [p.name for p in tmp_path.iterdir()] == ["1.2.3.5.dcm"]


def test_two_retrievals_into_one_folder_do_not_share_temporary_files(tmp_path: Path) -> None:
    first, second = DurableStore(tmp_path, flat=True), DurableStore(tmp_path, flat=True)
    assert first.incoming != second.incoming
    _receive(first, "1.2.3.6")
    first.close()  # while the second still receives
    _receive(second, "1.2.3.7")
    second.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.2.3.6.dcm", "1.2.3.7.dcm"]


def test_a_node_store_keeps_its_folders(tmp_path: Path) -> None:
    """Not flat: .incoming/ and .spare/ are the node's, and recovery needs them across runs."""
    store = DurableStore(tmp_path)
    _receive(store, "1.2.3.8")
    store.close()
    assert {p.name for p in tmp_path.iterdir()} == {".incoming", ".spare", "objects"}


def test_a_spare_made_while_the_store_closes_goes_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``get`` closes its store as the writer thread may still be making spares ahead."""
    store = DurableStore(tmp_path, flat=True)
    made = storage.create_file

    def made_as_the_store_closes(path: Path, mode: int) -> int:
        fd = made(path, mode)
        store.close()  # the other thread's close(), between the file and its listing
        return fd

    monkeypatch.setattr(storage, "create_file", made_as_the_store_closes)
    store.prepare_spare()
    assert list(tmp_path.iterdir()) == []
    store.prepare_spare()  # closed: makes nothing
    assert list(tmp_path.iterdir()) == []
