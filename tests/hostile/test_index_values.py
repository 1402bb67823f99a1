"""Hostile values against both index backends: a real node over mutual TLS, on SQLite and on
the real PostgreSQL the suite starts, must give the same answer to the same bytes.

SQL injection is out of reach (every value is a parameter; the probes below confirm quotes,
``%``, ``_`` and ``[`` match only themselves on both). What differed was the NUL character:
PostgreSQL cannot hold it in text, SQLite can. A C-FIND with a NUL inside a key was a
processing failure with a traceback on PostgreSQL and "no match" on SQLite; an object with
a NUL inside an indexed value was kept by SQLite and refused as "out of resources" by
PostgreSQL. PS3.5 6.2 allows no control character in those values (NUL only pads a UID at
its end, which the node strips), so both backends now refuse both with 0xA900, in one line.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

from dicomtls.dimse.status import Status
from dicomtls.net.association import AssociationError
from dicomtls.net.qr_scu import QueryModel

from ..node.site import Site, connect_as, make_site, running
from ..node.test_storage import _make_file
from ..servers import PostgresServer, postgres  # noqa: F401  (session fixture)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom.valuerep")
STUDY_ROOT = QueryModel.STUDY_ROOT
FAILURE = f"0x{Status.DATASET_DOES_NOT_MATCH_SOP_CLASS:04X}"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("pki"))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, postgres: PostgresServer) -> dict[str, Any]:  # noqa: F811
    return {} if request.param == "sqlite" else {"index": postgres.new_database()}


def _study_query(**keys: object) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


async def _find(site: Site, store: Path, backend: dict[str, Any], *queries: Dataset) -> list[str]:
    """Store one object of Doe^Jane, then run each query: its PatientIDs, or its error."""
    answers: list[str] = []
    async with (
        running(site, store, **backend) as pacs,
        await connect_as(site, pacs, "ct1", "CT1") as ct,
    ):
        assert await ct.store(store.parent / "jane.dcm") == Status.SUCCESS
        for query in queries:
            try:
                found = [m async for m in ct.find(query, STUDY_ROOT)]
                answers.append(",".join(str(m.PatientID) for m in found))
            except AssociationError as exc:
                answers.append(str(exc))
    return answers


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
    assert not tracebacks, tracebacks


def test_a_nul_inside_a_matching_key_is_refused_alike_by_every_backend(
    site: Site, backend: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _make_file(tmp_path / "jane.dcm", pixels=1000)
    caplog.set_level(logging.WARNING)
    answers = asyncio.run(
        _find(
            site,
            tmp_path / "store",
            backend,
            _study_query(PatientName="Doe\x00*"),
            _study_query(PatientID="P\x001"),
            _study_query(StudyInstanceUID=["1.2.3", "1.2\x00.4"]),
            _study_query(ModalitiesInStudy=["MR", "C\x00T"]),
            _study_query(PatientName="Doe*", PatientID=""),  # the same association still served
        )
    )
    assert all(FAILURE in answer for answer in answers[:4]), answers
    assert answers[4] == "P1"
    refusals = [r.getMessage() for r in caplog.records if "NUL" in r.getMessage()]
    assert len(refusals) == 4 and all("C-FIND from" in line for line in refusals), refusals
    _no_traceback(caplog)


@pytest.mark.parametrize(
    "probe", ["Doe'; DROP TABLE instances; --*", "D%e*", "D_e*", "[D]oe*", "?oe^Jane?"]
)
def test_sql_and_pattern_characters_match_only_themselves(
    site: Site, backend: dict[str, Any], tmp_path: Path, probe: str
) -> None:
    _make_file(tmp_path / "jane.dcm", pixels=1000)
    query = _study_query(PatientName=probe, PatientID="")
    answers = asyncio.run(
        _find(site, tmp_path / "store", backend, query, _study_query(PatientID=""))
    )
    assert answers == ["", "P1"]  # no match, and the index still holds Jane's study


async def _store(site: Site, store: Path, backend: dict[str, Any], *files: Path) -> list[int]:
    """C-STORE each file; the statuses, then how many objects the index holds."""
    async with (
        running(site, store, **backend) as pacs,
        await connect_as(site, pacs, "ct1", "CT1") as ct,
    ):
        statuses = [await ct.store(path) for path in files]
        return [*statuses, pacs.index.count()]


def test_an_object_with_a_nul_inside_an_indexed_value_is_refused_alike(
    site: Site, backend: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hostile = _make_file(tmp_path / "hostile.dcm", pixels=1000)
    hostile.PatientName = "Doe\x00^Jane"
    hostile.StudyDescription = "ok"
    hostile.save_as(tmp_path / "hostile.dcm", enforce_file_format=True)
    _make_file(tmp_path / "good.dcm", pixels=1000)
    caplog.set_level(logging.WARNING)
    outcome = asyncio.run(
        _store(site, tmp_path / "store", backend, tmp_path / "hostile.dcm", tmp_path / "good.dcm")
    )
    assert outcome == [Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, Status.SUCCESS, 1]
    refusals = [r.getMessage() for r in caplog.records if "NUL" in r.getMessage()]
    assert len(refusals) == 1 and "PatientName" in refusals[0], refusals
    assert str(hostile.SOPInstanceUID) in refusals[0]
    assert not list((tmp_path / "store").rglob(f"{hostile.SOPInstanceUID}*"))
    _no_traceback(caplog)
