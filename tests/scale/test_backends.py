"""One Query/Retrieve suite, three pairs of backends, the same answers.

A real node (TLS, our SCU) stores the same objects into SQLite + a folder (the embedded
default), PostgreSQL + a folder, and PostgreSQL + S3 (SeaweedFS). Then C-FIND at every
level of both models, C-MOVE to a second node and C-GET must give identical answers, and
the objects moved or fetched must be byte for byte what was sent. With S3, every index row
carries the SHA-256 the server verified, and the object in the bucket has it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomtls.dimse.part10 import read_header
from dicomtls.net.qr_scu import QueryModel
from dicomtls.node.index_pg import PostgresIndex
from dicomtls.node.objects_s3 import S3ObjectStore
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.ul.acse import Proposal

from ..node.site import EXPLICIT, Site, connect_as, make_site, qr_proposals, running
from ..servers import PostgresServer, SeaweedServer

CT, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
PATIENT_ROOT, STUDY_ROOT = QueryModel.PATIENT_ROOT, QueryModel.STUDY_ROOT
PATIENTS = {"P1": ("Alpha^Ann", "19700101", "F"), "P2": ("Beta^Bob", "19800202", "M")}
STUDIES = {  # study -> (patient, date, accession, series: [(modality, SOP class, instances)])
    "1.2.826.0.1.3680043.10.1.1": ("P1", "20240101", "A1", [("CT", CT, 2), ("MR", MR, 1)]),
    "1.2.826.0.1.3680043.10.1.2": ("P1", "20240301", "A2", [("CT", CT, 2)]),
    "1.2.826.0.1.3680043.10.1.3": ("P2", "20240201", "A3", [("CT", CT, 3)]),
}
S1, S2, S3_STUDY = list(STUDIES)
BIG = 3_000_000  # pixel bytes of one object: read from S3 in several windows


def _objects(folder: Path) -> list[Path]:
    files: list[Path] = []
    for study, (patient, date, accession, series_list) in STUDIES.items():
        name, birth, sex = PATIENTS[patient]
        for s, (modality, sop_class, count) in enumerate(series_list, 1):
            for n in range(1, count + 1):
                ds = Dataset()
                ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
                ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = (
                    name,
                    patient,
                    birth,
                    sex,
                )
                ds.StudyInstanceUID, ds.StudyDate, ds.AccessionNumber = study, date, accession
                ds.SeriesInstanceUID, ds.SeriesNumber, ds.Modality = (
                    f"{study}.{s}",
                    str(s),
                    modality,
                )
                ds.InstanceNumber = str(n)
                pixels = BIG if (study, s, n) == (S3_STUDY, 1, 3) else 4096 + len(files)
                ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = (
                    pixels // 1000,
                    1000,
                    8,
                    1,
                )
                ds.PixelData = bytes((i * 7 + n) % 251 for i in range((pixels // 1000) * 1000))
                ds.file_meta = FileMetaDataset()
                ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
                path = folder / f"{len(files):02d}.dcm"
                ds.save_as(path, enforce_file_format=True)
                files.append(path)
    return files


def data_set_digest(path: Path) -> str:
    """SHA-256 of a Part 10 object's data set (what crossed the wire), from a file or S3."""
    header = read_header(path)
    with header.path.open("rb") as handle:
        handle.seek(header.dataset_offset)
        return hashlib.sha256(handle.read()).hexdigest()


def _identifier(level: str, **keys: object) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


QUERIES: list[tuple[QueryModel, Dataset]] = [
    (
        STUDY_ROOT,
        _identifier(
            "STUDY",
            StudyInstanceUID="",
            PatientID="",
            PatientName="",
            StudyDate="",
            AccessionNumber="",
            ModalitiesInStudy="",
            SOPClassesInStudy="",
            NumberOfStudyRelatedSeries="",
            NumberOfStudyRelatedInstances="",
        ),
    ),
    (STUDY_ROOT, _identifier("STUDY", StudyInstanceUID="", PatientName="alpha*")),
    (STUDY_ROOT, _identifier("STUDY", StudyInstanceUID="", StudyDate="20240115-20240215")),
    (STUDY_ROOT, _identifier("STUDY", StudyInstanceUID="", ModalitiesInStudy="MR")),
    (STUDY_ROOT, _identifier("STUDY", StudyInstanceUID="", AccessionNumber="A?")),
    (
        STUDY_ROOT,
        _identifier(
            "SERIES",
            StudyInstanceUID=S1,
            SeriesInstanceUID="",
            Modality="",
            NumberOfSeriesRelatedInstances="",
        ),
    ),
    (
        STUDY_ROOT,
        _identifier(
            "IMAGE",
            StudyInstanceUID=S3_STUDY,
            SeriesInstanceUID=f"{S3_STUDY}.1",
            SOPInstanceUID="",
            InstanceNumber="",
        ),
    ),
    (
        PATIENT_ROOT,
        _identifier(
            "PATIENT",
            PatientID="",
            PatientName="",
            PatientBirthDate="",
            NumberOfPatientRelatedStudies="",
            NumberOfPatientRelatedInstances="",
        ),
    ),
    (PATIENT_ROOT, _identifier("STUDY", PatientID="P1", StudyInstanceUID="", StudyDate="")),
]


def _answers(found: list[Dataset]) -> list[dict[str, str]]:
    return [{e.keyword: str(e.value) for e in ds} for ds in found]


async def _run(site: Site, tmp: Path, files: list[Path], **backend: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with running(site, tmp / "viewer", "viewer") as viewer:
        destinations = {"VIEWER": ("127.0.0.1", viewer.port)}
        async with running(site, tmp / "pacs", move_destinations=destinations, **backend) as pacs:
            proposals = [
                *qr_proposals(),
                Proposal(PATIENT_ROOT.find_uid, (EXPLICIT,)),
                Proposal(MR, (EXPLICIT,), scu_role=True, scp_role=True),
            ]
            async with await connect_as(site, pacs, "ct1", "CT1", proposals=proposals) as ct:
                out["stored"] = [await ct.store(path) for path in files]
                out["found"] = [
                    _answers([m async for m in ct.find(query, model)]) for model, query in QUERIES
                ]
                moved = await ct.move(
                    _identifier("STUDY", StudyInstanceUID=S1), "VIEWER", STUDY_ROOT
                )
                got_store = DurableStore(tmp / "got", flat=True)
                got = await ct.get(
                    _identifier("STUDY", StudyInstanceUID=S3_STUDY),
                    DurableStoreHandler(got_store),
                    STUDY_ROOT,
                )
                out["moved"], out["got"] = (
                    (moved.completed, moved.failed),
                    (got.completed, got.failed),
                )
            out["received"] = sorted(data_set_digest(p) for p in viewer.store.stored_files())
            out["fetched"] = sorted(data_set_digest(p) for p in got_store.stored_files())
            if isinstance(pacs.index, PostgresIndex):
                out["rows"] = {
                    read_header(f).sop_instance_uid: pacs.index.stored(
                        read_header(f).sop_instance_uid
                    )
                    for f in files
                }
                if isinstance(pacs.store, S3ObjectStore):
                    out["in_s3"] = {
                        path: hashlib.sha256(
                            pacs.store.client.get(pacs.store.location.bucket, path, 0, size)[0]
                        ).hexdigest()
                        for path, size, _ in out["rows"].values()
                    }
    return out


@pytest.fixture(scope="module")
def results(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer, seaweedfs: SeaweedServer
) -> Iterator[dict[str, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("backends")
    site = make_site(tmp / "pki")
    (tmp / "objects").mkdir()
    files = _objects(tmp / "objects")
    backends = {
        "sqlite+folder": {},
        "postgresql+folder": {"index": postgres.new_database()},
        "postgresql+s3": {
            "index": postgres.new_database(),
            "objects": seaweedfs.url(seaweedfs.new_bucket()),
        },
    }
    env = seaweedfs.environment()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        outcome = {
            name: asyncio.run(_run(site, tmp / name.replace("+", "-"), files, **backend))
            for name, backend in backends.items()
        }
    outcome["sent"] = {"files": files}
    yield outcome


def test_every_object_is_stored_by_every_backend(results: dict[str, dict[str, Any]]) -> None:
    count = len(results["sent"]["files"])
    for name in ("sqlite+folder", "postgresql+folder", "postgresql+s3"):
        assert results[name]["stored"] == [0] * count, name


def test_c_find_gives_the_same_answers_on_every_backend(results: dict[str, dict[str, Any]]) -> None:
    embedded = results["sqlite+folder"]["found"]
    assert results["postgresql+folder"]["found"] == embedded
    assert results["postgresql+s3"]["found"] == embedded
    studies, alpha, in_range, with_mr, accession, series, images, patients, p1 = embedded
    assert [s["StudyInstanceUID"] for s in studies] == [S1, S2, S3_STUDY]
    assert studies[0]["ModalitiesInStudy"] == "['CT', 'MR']"
    assert studies[0]["NumberOfStudyRelatedInstances"] == "3"
    assert [s["StudyInstanceUID"] for s in alpha] == [S1, S2]  # PN wildcards ignore case
    assert [s["StudyInstanceUID"] for s in in_range] == [S3_STUDY]
    assert [s["StudyInstanceUID"] for s in with_mr] == [S1]
    assert len(accession) == 3
    assert [(s["Modality"], s["NumberOfSeriesRelatedInstances"]) for s in series] == [
        ("CT", "2"),
        ("MR", "1"),
    ]
    assert [i["InstanceNumber"] for i in images] == ["1", "2", "3"]
    assert [(p["PatientID"], p["NumberOfPatientRelatedInstances"]) for p in patients] == [
        ("P1", "5"),
        ("P2", "3"),
    ]
    assert [s["StudyDate"] for s in p1] == ["20240101", "20240301"]


def test_c_move_and_c_get_send_the_same_objects_byte_for_byte(
    results: dict[str, dict[str, Any]],
) -> None:
    sent = {read_header(f).sop_instance_uid: data_set_digest(f) for f in results["sent"]["files"]}
    by_study: dict[str, list[str]] = {}
    for f in results["sent"]["files"]:
        study = pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID
        by_study.setdefault(study, []).append(sent[read_header(f).sop_instance_uid])
    for name in ("sqlite+folder", "postgresql+folder", "postgresql+s3"):
        result = results[name]
        assert result["moved"] == (3, 0) and result["got"] == (3, 0), name
        assert result["received"] == sorted(by_study[S1]), name
        assert result["fetched"] == sorted(by_study[S3_STUDY]), name  # with the 3 MB object


def test_with_s3_every_row_names_an_object_with_its_sha256(
    results: dict[str, dict[str, Any]],
) -> None:
    rows = results["postgresql+s3"]["rows"]
    in_s3 = results["postgresql+s3"]["in_s3"]
    assert len(rows) == len(results["sent"]["files"])
    for uid, (path, size, sha256) in rows.items():
        assert uid in path and path.startswith("objects/"), path
        assert sha256 is not None and in_s3[path] == sha256
        assert size > BIG or size < 100_000
    folder_rows = results["postgresql+folder"]["rows"]
    assert all(Path(path).is_absolute() for path, _, _ in folder_rows.values())
