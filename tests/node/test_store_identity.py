"""A SOP Instance UID the store holds never silently becomes another object, on a real store and
index: the same object again replaces it, another object is refused and the held one kept, two
associations racing for one UID cannot both win, and a kept value too long to index is refused.

Each object goes through the SCP's own C-STORE path (:class:`InboundObject`: scanned as it
streams, then committed by the node's handler). The same findings against a running node, over
TLS: tests/hostile/test_store_identity.py.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicomtls.dimse.messages import c_store_rq
from dicomtls.dimse.part10 import iter_blocks, read_header
from dicomtls.dimse.status import Status
from dicomtls.net.association import Association
from dicomtls.net.inbound import InboundObject
from dicomtls.node.index import INDEXED_KEYWORDS, Index
from dicomtls.node.storage import DurableStore, FileMeta, StorageError
from dicomtls.node.store_scp import IDENTITY, DurableStoreHandler, Resent

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
STUDY, SERIES = generate_uid(), generate_uid()


def make_object(
    path: Path,
    uid: str,
    patient_id: str = "P1",
    *,
    study: str = STUDY,
    series: str = SERIES,
    sop_class: str = CT,
    marker: int = 0,
    syntax: str = ExplicitVRLittleEndian,
) -> Path:
    """A small image object; ``marker`` is its first pixel, to tell two copies apart."""
    with warnings.catch_warnings():  # an over-long PatientID is what some tests are about
        warnings.simplefilter("ignore", UserWarning)
        return _write(path, uid, patient_id, study, series, sop_class, marker, syntax)


def _write(
    path: Path,
    uid: str,
    patient_id: str,
    study: str,
    series: str,
    sop_class: str,
    marker: int,
    syntax: str,
) -> Path:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, uid
    ds.PatientName, ds.PatientID = f"Patient^{patient_id[:8]}", patient_id
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, "CT"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = 8, 8, 8, 1
    ds.PixelData = bytes([marker]) + bytes(63)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
    ds.save_as(path, enforce_file_format=True)
    return path


@dataclass
class _Peer:
    """What the handler reads of an association."""

    calling_ae: str = "SCU"
    peer: str = "127.0.0.1:1"


@dataclass
class _Node:
    """The node's store, index and handler, wired as ``start_node`` wires them."""

    store: DurableStore
    index: Index
    handler: DurableStoreHandler
    told: list[Resent]

    @classmethod
    def at(cls, root: Path, *, fsync: bool = False) -> _Node:
        store = DurableStore(root, fsync=fsync)
        index = Index(root / "index.sqlite")
        told: list[Resent] = []
        handler = DurableStoreHandler(
            store,
            index.add,
            keep=INDEXED_KEYWORDS,
            identity_of=index.identity,
            on_resent=lambda _association, resent: told.append(resent),
        )
        return cls(store, index, handler, told)

    async def receive(self, path: Path, peer: str = "127.0.0.1:1") -> int:
        """One C-STORE of ``path`` as the SCP runs it: begin, stream, scan, commit."""
        header = read_header(path)
        command = c_store_rq(1, header.sop_class_uid, header.sop_instance_uid)
        syntax = header.transfer_syntax_uid
        association = cast(Association, _Peer(peer=peer))  # all the handler reads of one
        job = self.handler.begin(association, command, syntax)
        inbound = InboundObject(job, command, syntax, peer, self.handler.keep_tags)
        for block in iter_blocks(header, 16 << 10):
            if (waiting := inbound.write(block)) is not None:
                await waiting
        return await inbound.finish()

    def held(self, uid: str) -> tuple[str, int]:
        """(PatientID, first pixel) of the file on disk: what the store really holds."""
        ds = pydicom.dcmread(self.store.path_for(uid))
        return str(ds.PatientID), ds.PixelData[0]

    def close(self) -> None:
        self.index.close()
        self.store.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[_Node]:
    made = _Node.at(tmp_path / "store")
    yield made
    made.close()


def _leftovers(node: _Node) -> list[Path]:
    return list(node.store.incoming.iterdir())


def test_the_same_object_again_replaces_the_copy_held(node: _Node, tmp_path: Path) -> None:
    uid = generate_uid()
    assert asyncio.run(node.receive(make_object(tmp_path / "a.dcm", uid, marker=1))) == 0
    assert node.told == []  # new: nothing held before
    assert asyncio.run(node.receive(make_object(tmp_path / "b.dcm", uid, marker=2))) == 0
    assert node.held(uid) == ("P1", 2)  # the corrected copy is the one on disk
    assert node.index.identity(uid, IDENTITY) == {
        "PatientID": "P1",
        "StudyInstanceUID": STUDY,
        "SeriesInstanceUID": SERIES,
        "SOPClassUID": CT,
    }
    assert [(r.sop_instance_uid, r.replaced) for r in node.told] == [(uid, True)]
    assert node.index.count() == 1 and _leftovers(node) == []


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"patient_id": "P2"}, ["PatientID"]),
        ({"study": "1.2.3.4"}, ["StudyInstanceUID"]),
        ({"series": "1.2.3.5"}, ["SeriesInstanceUID"]),
        ({"sop_class": MR}, ["SOPClassUID"]),
        ({"patient_id": "P2", "study": "1.2.3.4"}, ["PatientID", "StudyInstanceUID"]),
    ],
)
def test_another_object_under_a_held_uid_is_refused_and_the_held_one_kept(
    node: _Node,
    tmp_path: Path,
    change: dict[str, str],
    differs: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    uid = generate_uid()
    assert asyncio.run(node.receive(make_object(tmp_path / "victim.dcm", uid, marker=1))) == 0
    victim_file = node.store.path_for(uid).read_bytes()
    victim_row = node.index.identity(uid, INDEXED_KEYWORDS)
    attacker = make_object(tmp_path / "attacker.dcm", uid, marker=9, **change)
    with caplog.at_level(logging.WARNING, "dicomtls"):
        status = asyncio.run(node.receive(attacker, peer="10.6.6.6:4242"))
    assert status == Status.NOT_AUTHORIZED.value == 0x0124
    assert node.store.path_for(uid).read_bytes() == victim_file  # not a byte changed
    assert node.index.identity(uid, INDEXED_KEYWORDS) == victim_row
    assert _leftovers(node) == []  # the refused copy's temporary file is gone
    (resent,) = node.told
    assert not resent.replaced and resent.differences == differs
    (line,) = [r.getMessage() for r in caplog.records if "10.6.6.6:4242" in r.getMessage()]
    assert "0x0124" in line and " and ".join(differs) in line and "held is kept" in line
    assert "P2" not in line  # values that identify patients go to the audit trail, not the log


def test_two_associations_racing_for_one_new_uid_cannot_both_win(tmp_path: Path) -> None:
    """With fsync on, each commit waits for the disk in a worker thread; without the per-UID
    claim both would find the UID free and both be answered Success."""
    node = _Node.at(tmp_path / "store", fsync=True)
    uid = generate_uid()
    first = make_object(tmp_path / "first.dcm", uid, "P1", marker=1)
    second = make_object(tmp_path / "second.dcm", uid, "P2", marker=2)

    async def race() -> list[int]:
        return list(await asyncio.gather(node.receive(first), node.receive(second)))

    try:
        statuses = asyncio.run(race())
        assert sorted(statuses) == [Status.SUCCESS, Status.NOT_AUTHORIZED]
        winner = ("P1", 1) if statuses[0] == Status.SUCCESS else ("P2", 2)
        assert node.held(uid) == winner  # the file and the index tell the same story
        assert node.index.identity(uid, ["PatientID"]) == {"PatientID": winner[0]}
        assert _leftovers(node) == []
    finally:
        node.close()


def test_racing_copies_of_the_same_object_both_succeed_the_later_replacing(tmp_path: Path) -> None:
    node = _Node.at(tmp_path / "store", fsync=True)
    uid = generate_uid()
    copies = [make_object(tmp_path / f"{n}.dcm", uid, marker=n) for n in (1, 2)]

    async def race() -> list[int]:
        return list(await asyncio.gather(*(node.receive(c) for c in copies)))

    try:
        assert asyncio.run(race()) == [Status.SUCCESS, Status.SUCCESS]
        assert [r.replaced for r in node.told] == [True]  # the second found the first held
        assert node.held(uid)[1] in (1, 2) and node.index.count() == 1
    finally:
        node.close()


def test_a_patient_id_too_long_to_index_is_refused_and_nothing_kept(
    node: _Node, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uid = generate_uid()
    source = make_object(tmp_path / "long.dcm", uid, "P" * 70_000, syntax=ImplicitVRLittleEndian)
    with caplog.at_level(logging.WARNING, "dicomtls"):
        status = asyncio.run(node.receive(source, peer="10.6.6.6:5151"))
    assert status == Status.DATASET_DOES_NOT_MATCH_SOP_CLASS.value == 0xA900
    assert not node.store.path_for(uid).exists() and node.index.count() == 0
    assert _leftovers(node) == [] and node.told == []
    (line,) = [r.getMessage() for r in caplog.records if "10.6.6.6:5151" in r.getMessage()]
    assert "PatientID is 70000 bytes long" in line and "LO" in line


@pytest.mark.parametrize("uid", [".", "..", "1.2.3\n", "1.2.3/../4", "", "1.02"])
def test_no_file_is_named_by_what_is_not_a_uid(tmp_path: Path, uid: str) -> None:
    store = DurableStore(tmp_path / "store")
    with pytest.raises(StorageError, match="refusing to store SOP instance UID"):
        store.path_for(uid)
    with pytest.raises(StorageError):
        store.begin(FileMeta(CT, uid, ExplicitVRLittleEndian, implementation_class_uid="1.2"))
    assert list(tmp_path.rglob("*.dcm")) == [] and list(store.incoming.iterdir()) == []


def test_an_index_that_cannot_be_asked_refuses_the_object_out_of_resources(
    node: _Node, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Whether the UID is held must be known before anything is kept: an index that cannot
    answer (its server down, every pooled connection busy; here, closed) is A700H, which a
    sender retries, in one line, with nothing left in the store."""
    node.index.close()
    uid = generate_uid()
    with caplog.at_level(logging.WARNING, "dicomtls"):
        status = asyncio.run(node.receive(make_object(tmp_path / "a.dcm", uid)))
    assert status == Status.OUT_OF_RESOURCES
    assert not node.store.path_for(uid).exists() and _leftovers(node) == []
    [line] = [r for r in caplog.records if uid in r.getMessage()]
    assert "the index cannot say whether it holds" in line.getMessage() and line.exc_info is None
