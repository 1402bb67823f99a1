"""A rebuild of the index from the objects goes past those it cannot index, on both backends.

The objects are the truth; one bad object among thousands must not leave the index half
rebuilt (PostgreSQL stopped at the first value it could not hold) or hold what a C-STORE
would have refused (SQLite indexed a NUL inside a name). Each skipped object is named in one
warning and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomtls.node.index import Index
from dicomtls.node.index_pg import PostgresIndex

from ..node.test_storage import _make_file
from ..servers import PostgresServer


def _write(path: Path, change: Callable[[Dataset], None] = lambda ds: None) -> Dataset:
    ds = _make_file(path, pixels=64)
    change(ds)
    ds.save_as(path, enforce_file_format=True)
    return ds


def _named_nul(ds: Dataset) -> None:
    ds.PatientName = "Doe\x00Jane"


@pytest.fixture
def objects(tmp_path: Path) -> tuple[list[Path], list[str]]:
    """Three good objects, one with a NUL inside its name, one that is not DICOM, and a
    name with NUL padding at its end (which is padding, and indexed)."""
    folder = tmp_path / "objects"
    folder.mkdir()
    good = [_write(folder / f"good-{n}.dcm") for n in range(3)]
    good.append(_write(folder / "padded.dcm", lambda ds: setattr(ds, "PatientID", "P1\x00")))
    _write(folder / "nul.dcm", _named_nul)
    (folder / "text.dcm").write_text("not DICOM\n")
    return sorted(folder.iterdir()), [str(ds.SOPInstanceUID) for ds in good]


@pytest.fixture(params=["sqlite", "postgresql"])
def index(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresServer
) -> Iterator[Index | PostgresIndex]:
    db = (
        Index(tmp_path / "index.sqlite")
        if request.param == "sqlite"
        else PostgresIndex(postgres.new_database())
    )
    yield db
    db.close()


def test_a_rebuild_skips_what_it_cannot_index_and_names_it(
    index: Index | PostgresIndex,
    objects: tuple[list[Path], list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    files, good = objects
    with caplog.at_level(logging.WARNING, "dicomtls"):
        assert index.rebuild(files) == (4, 2)
    assert index.count() == 4
    for uid in good:
        assert index.identity(uid, ["SOPInstanceUID", "PatientID"]) == {
            "SOPInstanceUID": uid,
            "PatientID": "P1",  # the NUL padding stripped, as from the wire
        }
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 2
    assert any("nul.dcm" in m and "PatientName holds a NUL character" in m for m in skipped)
    assert any("text.dcm" in m and "not readable as DICOM" in m for m in skipped)


def test_postgresql_skips_an_object_whose_uid_another_object_holds(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two objects of different series under one SOP Instance UID (a bucket shared with
    a misbehaving sender's leftovers): the first indexed keeps it, the other is named, and
    the rebuild goes on."""
    first = _write(tmp_path / "a.dcm")

    def same_uid_other_series(ds: Dataset) -> None:
        ds.SOPInstanceUID, ds.SeriesInstanceUID = first.SOPInstanceUID, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = first.SOPInstanceUID

    _write(tmp_path / "b.dcm", same_uid_other_series)
    last = _write(tmp_path / "c.dcm")
    index = PostgresIndex(postgres.new_database())
    try:
        with caplog.at_level(logging.WARNING, "dicomtls"):
            result = index.rebuild([tmp_path / "a.dcm", tmp_path / "b.dcm", tmp_path / "c.dcm"])
        assert result == (2, 1)
        kept = index.identity(str(first.SOPInstanceUID), ["SeriesInstanceUID"])
        assert kept == {"SeriesInstanceUID": str(first.SeriesInstanceUID)}
        assert index.stored(str(last.SOPInstanceUID)) is not None
    finally:
        index.close()
    assert any("b.dcm skipped" in r.getMessage() for r in caplog.records)
