"""C-FIND, C-MOVE, C-GET and C-CANCEL between our SCU and our SCPs over mutual TLS."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from dicomtls.dimse.command import CommandSet
from dicomtls.net.association import Association, associate, default_proposals
from dicomtls.net.client import Peer
from dicomtls.net.qr_scu import QueryModel, RetrieveResult
from dicomtls.net.scp import Services, serve_dicom
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.tls.flags import VerifyFlags
from dicomtls.ul.acse import AcceptorPolicy, Proposal

from ..conftest import MatrixPKI
from ..node.test_storage import CT, _make_file

PEER_FAIL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT
EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
QR = QueryModel.STUDY_ROOT
MR, SC = "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.7"
SYNTAXES = [EXPLICIT, IMPLICIT]
ARCHIVE_POLICY = AcceptorPolicy(
    "ARCHIVE", {QR.find_uid: SYNTAXES, QR.move_uid: SYNTAXES, QR.get_uid: SYNTAXES, CT: SYNTAXES}
)
VIEWER_POLICY = AcceptorPolicy("VIEWER", {CT: SYNTAXES, "1.2.840.10008.1.1": SYNTAXES})


class Archive:
    """A tiny in-memory archive: what the node's SQLite index does, for the protocol tests."""

    def __init__(self, files: list[Path]) -> None:
        self.files = {f: pydicom.dcmread(f, stop_before_pixels=True) for f in files}
        self.find_calls = 0

    def _matching(self, identifier: Dataset) -> Iterator[tuple[Path, Dataset]]:
        wanted = identifier.get("PatientID", "")
        for path, ds in self.files.items():
            if not wanted or ds.PatientID == wanted:
                yield path, ds

    def find(
        self, association: Association, sop_class: str, identifier: Dataset
    ) -> Iterable[Dataset]:
        self.find_calls += 1
        for _, ds in self._matching(identifier):
            match = Dataset()
            match.QueryRetrieveLevel = "IMAGE"
            match.PatientID, match.SOPInstanceUID = ds.PatientID, ds.SOPInstanceUID
            yield match

    def retrieve(
        self, association: Association, sop_class: str, identifier: Dataset
    ) -> Iterable[Path]:
        return [path for path, _ in self._matching(identifier)]


def _archive_files(tmp: Path, count: int) -> list[Path]:
    files = []
    for i in range(count):
        path = tmp / f"obj{i}.dcm"
        _make_file(path, pixels=50_000)
        files.append(path)
    return files


def _query(patient_id: str = "P1") -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.PatientID = patient_id
    ds.SOPInstanceUID = ""
    return ds


async def _run(pki: MatrixPKI, tmp: Path, files: list[Path]) -> dict[str, object]:
    archive = Archive(files)
    viewer_store = DurableStore(tmp / "viewer")
    getter_store = DurableStore(tmp / "getter")
    viewer = await serve_dicom(
        "127.0.0.1",
        0,
        pki.settings("server", PEER_FAIL),
        VIEWER_POLICY,
        Services(store=DurableStoreHandler(viewer_store)),
    )
    services = Services(
        find=archive.find,
        retrieve=archive.retrieve,
        move_destinations={"VIEWER": ("127.0.0.1", viewer.port)},
        move_tls=pki.settings("client", PEER_FAIL),
    )
    out: dict[str, object] = {}
    async with (
        viewer,
        await serve_dicom(
            "127.0.0.1", 0, pki.settings("server", PEER_FAIL), ARCHIVE_POLICY, services
        ) as archive_server,
    ):
        proposals = [
            *default_proposals(),
            Proposal(QR.find_uid, (EXPLICIT,)),
            Proposal(QR.move_uid, (EXPLICIT,)),
            Proposal(QR.get_uid, (EXPLICIT,)),
            Proposal(CT, (EXPLICIT, IMPLICIT), scu_role=False, scp_role=True),
        ]
        assoc = await associate(
            "127.0.0.1",
            archive_server.port,
            pki.settings("client", PEER_FAIL),
            called_ae="ARCHIVE",
            proposals=proposals,
        )
        async with assoc:
            out["found"] = [m async for m in assoc.find(_query(), QR)]
            out["none"] = [m async for m in assoc.find(_query("NOBODY"), QR)]
            out["move"] = await assoc.move(_query(), "VIEWER", QR)
            out["move_unknown"] = await assoc.move(_query(), "NOWHERE", QR)
            out["get"] = await assoc.get(_query(), DurableStoreHandler(getter_store), QR)
    out["viewer"] = viewer_store
    out["getter"] = getter_store
    return out


def test_find_move_get(matrix_pki: MatrixPKI, tmp_path: Path) -> None:
    files = _archive_files(tmp_path, 3)
    uids = sorted(pydicom.dcmread(f).SOPInstanceUID for f in files)
    out = asyncio.run(_run(matrix_pki, tmp_path, files))
    found = out["found"]
    assert isinstance(found, list) and sorted(m.SOPInstanceUID for m in found) == uids
    assert out["none"] == []
    move, move_unknown, get = out["move"], out["move_unknown"], out["get"]
    assert isinstance(move, RetrieveResult) and isinstance(move_unknown, RetrieveResult)
    assert move.ok and (move.completed, move.failed) == (3, 0)
    assert move_unknown.status == 0xA801
    assert isinstance(get, RetrieveResult)
    assert get.ok and get.completed == 3 and sorted(get.stored) == uids
    for store_name in ("viewer", "getter"):
        store = out[store_name]
        assert isinstance(store, DurableStore)
        for f in files:
            sent = pydicom.dcmread(f)
            assert pydicom.dcmread(store.path_for(sent.SOPInstanceUID)).PixelData == sent.PixelData


async def _cancel_find(pki: MatrixPKI) -> tuple[int, int, list[int], list[threading.Thread]]:
    produced = 0
    closed_on: list[threading.Thread] = []

    def endless(association: Association, sop_class: str, identifier: Dataset) -> Iterator[Dataset]:
        nonlocal produced
        try:
            while produced < 10_000:
                produced += 1
                match = Dataset()
                match.PatientID = f"P{produced}"
                yield match
        finally:  # where a database cursor would be given back
            closed_on.append(threading.current_thread())

    services = Services(find=endless)
    async with await serve_dicom(
        "127.0.0.1", 0, pki.settings("server", PEER_FAIL), ARCHIVE_POLICY, services
    ) as server:
        proposals = [Proposal("1.2.840.10008.1.1", (IMPLICIT,)), Proposal(QR.find_uid, (EXPLICIT,))]
        assoc = await associate(
            "127.0.0.1",
            server.port,
            pki.settings("client", PEER_FAIL),
            called_ae="ARCHIVE",
            proposals=proposals,
        )
        cancels_on: list[int] = []
        send = assoc.send_message

        async def watched(
            context_id: int, command: CommandSet, dataset: Iterable[bytes | memoryview] | None
        ) -> None:
            if command.get(0x0100) == 0x0FFF:  # C-CANCEL-RQ
                cancels_on.append(context_id)
            await send(context_id, command, dataset)

        assoc.send_message = watched  # type: ignore[method-assign]
        async with assoc:
            received = 0
            async for _ in assoc.find(_query(""), QR):
                received += 1
                if received == 5:
                    await assoc.cancel(assoc.last_message_id)
    return received, produced, cancels_on, closed_on


def test_cancel_stops_a_find(matrix_pki: MatrixPKI) -> None:
    received, produced, cancels_on, closed_on = asyncio.run(_cancel_find(matrix_pki))
    assert 5 <= received < 10_000
    assert produced < 10_000  # the SCP stopped producing matches
    assert cancels_on == [3]  # the find's own context, not the first one (Verification)
    # The handler's matches were ended on a worker thread, not by the event loop (a cursor's
    # ROLLBACK must not block every association on a stalled database).
    assert len(closed_on) == 1 and closed_on[0] is not threading.main_thread()


def _identifier(**keys: object) -> Dataset:
    dataset = Dataset()
    for keyword, value in keys.items():
        setattr(dataset, keyword, value)
    return dataset


async def _classes_asked_series_by_series() -> tuple[list[str], list[Dataset]]:
    """A peer that leaves SOP Classes in Study out of its study-level answers."""
    studies: dict[str, dict[str, list[str]]] = {
        "1.2.3.1": {"1.2.3.1.1": [CT, MR], "1.2.3.1.2": [CT]},
        "1.2.3.2": {"1.2.3.2.1": [SC]},
    }
    series = {uid: classes for study in studies.values() for uid, classes in study.items()}
    asked: list[Dataset] = []

    def find(association: Association, sop_class: str, identifier: Dataset) -> list[Dataset]:
        asked.append(identifier)
        level = identifier.QueryRetrieveLevel
        if level == "STUDY":
            return [_identifier(StudyInstanceUID=uid) for uid in studies]
        if level == "SERIES":
            return [_identifier(SeriesInstanceUID=u) for u in studies[identifier.StudyInstanceUID]]
        return [_identifier(SOPClassUID=c) for c in series[identifier.SeriesInstanceUID]]

    policy = AcceptorPolicy("ARCHIVE", {QR.find_uid: SYNTAXES})
    async with await serve_dicom("127.0.0.1", 0, None, policy, Services(find=find)) as server:
        peer = Peer("127.0.0.1", server.port, None, called_ae="ARCHIVE")
        classes = await peer.classes_in_study({"PatientID": "P1"}, QR)
    return classes, asked


def test_classes_in_study_are_asked_series_by_series_when_the_peer_does_not_list_them() -> None:
    classes, asked = asyncio.run(_classes_asked_series_by_series())
    assert classes == sorted({CT, MR, SC})
    study, *rest = asked
    levels = [(q.QueryRetrieveLevel, q.PatientID, q.StudyInstanceUID) for q in (study, *rest)]
    assert "SOPClassesInStudy" in study
    assert levels == [
        ("STUDY", "P1", ""),
        ("SERIES", "P1", "1.2.3.1"),
        ("IMAGE", "P1", "1.2.3.1"),
        ("IMAGE", "P1", "1.2.3.1"),
        ("SERIES", "P1", "1.2.3.2"),
        ("IMAGE", "P1", "1.2.3.2"),
    ]
    images = [q for q in rest if q.QueryRetrieveLevel == "IMAGE"]
    assert [q.SeriesInstanceUID for q in images] == ["1.2.3.1.1", "1.2.3.1.2", "1.2.3.2.1"]
    assert all(q.SOPClassUID == "" and q.SOPInstanceUID == "" for q in images)
