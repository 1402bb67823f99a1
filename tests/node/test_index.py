"""The index's C-FIND and C-MOVE/C-GET selection, by PS3.4 C.2.2.2 and C.4.

Two patients in one real index, SQLite (the embedded default) and PostgreSQL (several
nodes): every test runs against both and must get the same answers. Every query names
who it is about, and the answer never holds the other patient. Identifiers a baseline (hierarchical) request may
not carry are refused with the status the dispatcher sends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomtls.dimse.status import Status
from dicomtls.net.hooks import StatusError
from dicomtls.net.qr_scu import QueryModel
from dicomtls.node.backends import IndexBackend
from dicomtls.node.index import _COLUMNS as _INDEX_COLUMNS
from dicomtls.node.index import MAX_MATCH_LENGTH, Index, QueryError
from dicomtls.node.index_pg import PostgresIndex

from ..servers import postgres  # noqa: F401  (a real PostgreSQL, started once per session)

# Query keys may break their VR's rules (wild cards in UIDs, long patterns): pydicom says so.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom.valuerep")

PATIENT_ROOT, STUDY_ROOT = QueryModel.PATIENT_ROOT, QueryModel.STUDY_ROOT
CT, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
# Patient A: two studies (the first with a CT and an MR series); patient B: one study.
A, B = "PA", "PB"
A_STUDY, A_STUDY2, B_STUDY = "1.2.3.1", "1.2.3.2", "1.2.3.3"
A_CT, A_MR, A2_CT, B_CT = "1.2.3.1.1", "1.2.3.1.2", "1.2.3.2.1", "1.2.3.3.1"
INSTANCES = {  # SOP instance UID -> (patient, study, series, modality, SOP class, number)
    "1.2.3.1.1.1": (A, A_STUDY, A_CT, "CT", CT, "1"),
    "1.2.3.1.1.2": (A, A_STUDY, A_CT, "CT", CT, "2"),
    "1.2.3.1.2.1": (A, A_STUDY, A_MR, "MR", MR, "1"),
    "1.2.3.2.1.1": (A, A_STUDY2, A2_CT, "CT", CT, "1"),
    "1.2.3.3.1.1": (B, B_STUDY, B_CT, "CT", CT, "1"),
    "1.2.3.3.1.2": (B, B_STUDY, B_CT, "CT", CT, "2"),
}
NAMES = {A: "Alpha^Ann", B: "Beta^Bob"}
DATES = {A_STUDY: "20240101", A_STUDY2: "20240301", B_STUDY: "20240201"}


@pytest.fixture(params=["sqlite", "postgresql"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IndexBackend]:
    if request.param == "sqlite":
        index: IndexBackend = Index(tmp_path / "index.sqlite")
    else:
        index = PostgresIndex(request.getfixturevalue("postgres").new_database())
    for uid, (patient, study, series, modality, sop_class, number) in INSTANCES.items():
        attributes = {
            "PatientID": patient,
            "PatientName": NAMES[patient],
            "StudyInstanceUID": study,
            "StudyDate": DATES[study],
            "SeriesInstanceUID": series,
            "Modality": modality,
            "SOPInstanceUID": uid,
            "SOPClassUID": sop_class,
            "InstanceNumber": number,
        }
        index.add(tmp_path / f"{uid}.dcm", attributes)
    yield index  # the same calls, either backend
    index.close()


def _identifier(level: str | None, **keys: object) -> Dataset:
    ds = Dataset()
    if level is not None:
        ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def _find(
    index: IndexBackend, level: str | None, model: QueryModel = STUDY_ROOT, **keys: object
) -> list[Dataset]:
    return list(index.find(_identifier(level, **keys), model))


def _column(matches: list[Dataset], keyword: str) -> list[str]:
    return [str(m.get(keyword)) for m in matches]


def _refused(call: Callable[..., object], *args: object, **keys: object) -> QueryError:
    with pytest.raises(QueryError) as caught:
        call(*args, **keys)
    return caught.value


# -- List of UID Matching (PS3.4 C.2.2.2.2) -----------------------------------------------


def test_a_list_of_uids_matches_each_uid(index: IndexBackend) -> None:
    found = _find(index, "STUDY", StudyInstanceUID=[A_STUDY, B_STUDY], PatientID="")
    assert sorted(_column(found, "StudyInstanceUID")) == [A_STUDY, B_STUDY]
    assert sorted(_column(found, "PatientID")) == [A, B]


def test_every_uid_key_takes_a_list(index: IndexBackend) -> None:
    series = _find(index, "SERIES", StudyInstanceUID=A_STUDY, SeriesInstanceUID=[A_CT, A_MR, B_CT])
    assert _column(series, "SeriesInstanceUID") == [A_CT, A_MR]  # B_CT is another study's
    images = _find(
        index,
        "IMAGE",
        StudyInstanceUID=A_STUDY,
        SeriesInstanceUID=A_CT,
        SOPInstanceUID=["1.2.3.1.1.2", "1.2.3.1.1.1", "1.2.3.3.1.1"],
    )
    assert sorted(_column(images, "SOPInstanceUID")) == ["1.2.3.1.1.1", "1.2.3.1.1.2"]
    by_class = _find(
        index,
        "IMAGE",
        StudyInstanceUID=A_STUDY,
        SeriesInstanceUID=A_MR,
        SOPClassUID=[MR, "1.2.3.99"],
        SOPInstanceUID="",
    )
    assert _column(by_class, "SOPInstanceUID") == ["1.2.3.1.2.1"]


def test_a_list_longer_than_sqlites_parameter_limit(index: IndexBackend) -> None:
    uids = [f"9.9.{n}" for n in range(40_000)] + [B_STUDY]  # SQLite allows 32,766 parameters
    assert _column(_find(index, "STUDY", StudyInstanceUID=uids), "StudyInstanceUID") == [B_STUDY]


def test_a_list_with_an_empty_item_is_refused(index: IndexBackend) -> None:
    refusal = _refused(_find, index, "STUDY", StudyInstanceUID=[A_STUDY, ""])
    assert refusal.status == Status.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert "StudyInstanceUID" in str(refusal) and "C.2.2.2.2" in str(refusal)


@pytest.mark.parametrize(
    ("keyword", "values"),
    [
        ("PatientName", ["Alpha^Ann", "Beta^Bob"]),
        ("PatientID", [A, B]),
        ("StudyDate", ["20240101", "20240201"]),
    ],
)
def test_other_keys_do_not_take_a_list(
    index: IndexBackend, keyword: str, values: list[str]
) -> None:
    """A multi-valued PatientName is not a list match: only UIDs have one (C.2.2.2)."""
    refusal = _refused(_find, index, "STUDY", **{keyword: values})
    assert refusal.status == Status.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert f"{keyword} with 2 values" in str(refusal)


# -- the hierarchy: unique keys above the level (PS3.4 C.4.1.2.1) -------------------------


@pytest.mark.parametrize(
    ("model", "level", "keys", "missing"),
    [
        (STUDY_ROOT, "IMAGE", {}, "StudyInstanceUID"),
        (STUDY_ROOT, "IMAGE", {"StudyInstanceUID": A_STUDY}, "SeriesInstanceUID"),
        (STUDY_ROOT, "SERIES", {"Modality": "CT"}, "StudyInstanceUID"),
        (PATIENT_ROOT, "STUDY", {"StudyInstanceUID": ""}, "PatientID"),
        (PATIENT_ROOT, "SERIES", {"StudyInstanceUID": A_STUDY}, "PatientID"),
        (PATIENT_ROOT, "IMAGE", {"PatientID": A, "StudyInstanceUID": A_STUDY}, "SeriesInstanceUID"),
    ],
)
def test_a_query_without_the_unique_keys_above_is_refused(
    index: IndexBackend, model: QueryModel, level: str, keys: dict[str, str], missing: str
) -> None:
    refusal = _refused(_find, index, level, model, SOPInstanceUID="", **keys)
    assert refusal.status == Status.DATASET_DOES_NOT_MATCH_SOP_CLASS.value == 0xA900
    assert f"{level} level without {missing}" in str(refusal) and "C.4.1.2.1" in str(refusal)


@pytest.mark.parametrize("value", ["", "*", "1.2.3.*", [A_STUDY, B_STUDY]])
def test_a_unique_key_above_needs_a_single_value(index: IndexBackend, value: object) -> None:
    refusal = _refused(_find, index, "SERIES", StudyInstanceUID=value, SeriesInstanceUID="")
    assert refusal.status == Status.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert "StudyInstanceUID" in str(refusal)


def test_patient_root_and_study_root_levels(index: IndexBackend) -> None:
    patients = _find(index, "PATIENT", PATIENT_ROOT, PatientID="", PatientName="")
    assert _column(patients, "PatientName") == ["Alpha^Ann", "Beta^Bob"]
    assert "Study Root levels (STUDY, SERIES, IMAGE)" in str(_refused(_find, index, "PATIENT"))
    # Study Root needs no PatientID above a series; Patient Root does, and keeps to that patient.
    assert len(_find(index, "SERIES", StudyInstanceUID=A_STUDY, SeriesInstanceUID="")) == 2
    assert _find(index, "SERIES", PATIENT_ROOT, PatientID=B, StudyInstanceUID=A_STUDY) == []
    images = _find(
        index,
        "IMAGE",
        PATIENT_ROOT,
        PatientID=A,
        StudyInstanceUID=A_STUDY,
        SeriesInstanceUID=A_CT,
        SOPInstanceUID="",
    )
    assert sorted(_column(images, "SOPInstanceUID")) == ["1.2.3.1.1.1", "1.2.3.1.1.2"]


@pytest.mark.parametrize(
    "level", [None, "", "BOGUS", "STUDY\\IMAGE", "IMAGE\n12:00 WARNING forged"]
)
def test_an_unknown_or_missing_level_is_refused(index: IndexBackend, level: str | None) -> None:
    refusal = _refused(_find, index, level, PatientID="")
    assert refusal.status == Status.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert "QueryRetrieveLevel" in str(refusal) and "\n" not in str(refusal)


def test_a_refusal_is_a_status_error_raised_before_any_match(index: IndexBackend) -> None:
    """The dispatcher answers StatusError; find raises on the call, not on the first match."""
    with pytest.raises(StatusError):
        index.find(_identifier("BOGUS"), STUDY_ROOT)


# -- keys of other levels -----------------------------------------------------------------


def test_a_value_in_a_key_of_another_level_asks_for_a_relational_query(index: IndexBackend) -> None:
    above = _refused(_find, index, "SERIES", StudyInstanceUID=A_STUDY, PatientName="Alpha*")
    assert "PatientName 'Alpha*' is a key of the STUDY level, above the SERIES level" in str(above)
    below = _refused(_find, index, "STUDY", StudyInstanceUID="", Modality="MR")
    assert "Modality 'MR' is a key of the SERIES level, below the STUDY level" in str(below)
    assert above.status == below.status == Status.DATASET_DOES_NOT_MATCH_SOP_CLASS


def test_empty_keys_of_other_levels_are_return_keys(index: IndexBackend) -> None:
    """Above the level: returned (Study Root's study level holds the patient); below: not."""
    found = _find(
        index,
        "SERIES",
        StudyInstanceUID=B_STUDY,
        PatientName="",
        PatientID="*",
        SeriesInstanceUID="",
        SOPInstanceUID="",
    )
    assert len(found) == 1
    assert (found[0].PatientName, found[0].PatientID, found[0].SeriesInstanceUID) == (
        "Beta^Bob",
        B,
        B_CT,
    )
    assert "SOPInstanceUID" not in found[0]


# -- one answer per entity of the level -----------------------------------------------------


def test_one_answer_per_entity_of_the_level(index: IndexBackend) -> None:
    assert len(_find(index, "STUDY", StudyInstanceUID="")) == 3
    assert _column(_find(index, "STUDY", PatientID=A, StudyInstanceUID=""), "StudyInstanceUID") == [
        A_STUDY,
        A_STUDY2,
    ]
    series = _find(index, "SERIES", StudyInstanceUID=A_STUDY, SeriesInstanceUID="", Modality="")
    assert [(s.SeriesInstanceUID, s.Modality) for s in series] == [(A_CT, "CT"), (A_MR, "MR")]
    studies = _find(index, "STUDY", PATIENT_ROOT, PatientID=A, StudyInstanceUID="", StudyDate="")
    assert [(s.StudyInstanceUID, s.StudyDate) for s in studies] == [
        (A_STUDY, "20240101"),
        (A_STUDY2, "20240301"),
    ]


def test_matching_at_the_level(index: IndexBackend) -> None:
    in_range = _find(index, "STUDY", StudyDate="20240115-20240215", StudyInstanceUID="")
    assert _column(in_range, "StudyInstanceUID") == [B_STUDY]
    ct = _find(index, "SERIES", StudyInstanceUID=A_STUDY, Modality="C?", SeriesInstanceUID="")
    assert _column(ct, "SeriesInstanceUID") == [A_CT]


def test_wild_cards_are_case_sensitive_except_in_names(index: IndexBackend) -> None:
    """PS3.4 C.2.2.2.4; a PN may match case-insensitively (C.2.2.2.1.1)."""
    assert _find(index, "STUDY", PatientID="p*") == []
    assert len(_find(index, "STUDY", PatientID="P*")) == 3
    assert _column(_find(index, "STUDY", PatientName="beta*", PatientID=""), "PatientID") == [B]
    assert _find(index, "STUDY", PatientID="[P]*") == []  # a bracket is no GLOB class here


def test_names_match_without_regard_to_case_beyond_ascii_too(
    index: IndexBackend, tmp_path: Path
) -> None:
    """PS3.4 C.2.2.2.1 lets a PN match ignore case; it does, with wildcards or without and
    for letters beyond ASCII, the same on both backends whatever PostgreSQL's locale (the
    tests' runs under C, where ILIKE knew only ASCII; SQLite's LIKE knows only ASCII)."""
    attributes = {
        "PatientID": "PC",
        "PatientName": "MÜLLER^JÜRGEN",
        "StudyInstanceUID": "1.2.3.4",
        "SeriesInstanceUID": "1.2.3.4.1",
        "SOPInstanceUID": "1.2.3.4.1.1",
        "SOPClassUID": CT,
    }
    index.add(tmp_path / "c.dcm", attributes)
    for key in ("müller^jürgen", "Müller^Jürgen", "müller*", "*JÜRGEN", "m?ller^*"):
        assert _column(_find(index, "STUDY", PatientName=key, PatientID=""), "PatientID") == [
            "PC"
        ], key
    assert _find(index, "STUDY", PatientName="muller*") == []  # accents still count
    exact = _find(index, "STUDY", PatientName="alpha^ann", PatientID="")
    assert _column(exact, "PatientID") == [A, A]  # without a wildcard too (two studies)


def test_an_over_long_value_is_refused(index: IndexBackend) -> None:
    refusal = _refused(_find, index, "STUDY", PatientName="*" * (MAX_MATCH_LENGTH + 1))
    assert refusal.status == Status.UNABLE_TO_PROCESS
    assert len(_find(index, "STUDY", PatientName="*" * MAX_MATCH_LENGTH)) == 3


def test_a_key_that_is_not_text_is_refused(index: IndexBackend) -> None:
    as_sequence = _identifier("STUDY")
    as_sequence.add_new(0x00100010, "SQ", Sequence([Dataset()]))
    assert "PatientName as SQ" in str(_refused(index.find, as_sequence, STUDY_ROOT))
    as_bytes = _identifier("STUDY")
    as_bytes.add_new(0x00100020, "OB", b"PA")
    assert "PatientID as OB" in str(_refused(index.find, as_bytes, STUDY_ROOT))


# -- C-MOVE and C-GET (PS3.4 C.4.2.2.1, C.4.3.2.1) ------------------------------------------


def _files(
    index: IndexBackend, level: str, model: QueryModel = STUDY_ROOT, **keys: object
) -> list[str]:
    return sorted(p.stem for p in index.files(_identifier(level, **keys), model))


def test_a_retrieval_names_its_entities_by_unique_keys(index: IndexBackend) -> None:
    assert _files(index, "STUDY", StudyInstanceUID=[A_STUDY2, B_STUDY]) == [
        "1.2.3.2.1.1",
        "1.2.3.3.1.1",
        "1.2.3.3.1.2",
    ]
    assert _files(index, "PATIENT", PATIENT_ROOT, PatientID=B) == ["1.2.3.3.1.1", "1.2.3.3.1.2"]
    assert _files(
        index,
        "IMAGE",
        StudyInstanceUID=A_STUDY,
        SeriesInstanceUID=A_CT,
        SOPInstanceUID=["1.2.3.1.1.2", "1.2.3.3.1.1"],
    ) == ["1.2.3.1.1.2"]
    # Other keys have no part in a retrieval: the whole study, not its MR series.
    assert len(_files(index, "STUDY", StudyInstanceUID=A_STUDY, Modality="MR")) == 3


@pytest.mark.parametrize(
    ("model", "level", "keys", "said"),
    [
        (
            STUDY_ROOT,
            "IMAGE",
            {"SOPInstanceUID": "1.2.3.3.1.1"},
            "IMAGE level without StudyInstanceUID",
        ),
        (
            STUDY_ROOT,
            "SERIES",
            {"StudyInstanceUID": A_STUDY},
            "SERIES level with no value in SeriesInstanceUID",
        ),
        (STUDY_ROOT, "STUDY", {"PatientID": A}, "STUDY level with no value in StudyInstanceUID"),
        (
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": "*"},
            "STUDY level with '*' in StudyInstanceUID",
        ),
        (PATIENT_ROOT, "PATIENT", {"PatientID": "P*"}, "PATIENT level with 'P*' in PatientID"),
        (PATIENT_ROOT, "STUDY", {"StudyInstanceUID": B_STUDY}, "STUDY level without PatientID"),
        (
            PATIENT_ROOT,
            "IMAGE",
            {"PatientID": B, "StudyInstanceUID": B_STUDY, "SOPInstanceUID": "1.2.3.3.1.1"},
            "IMAGE level without SeriesInstanceUID",
        ),
    ],
)
def test_a_retrieval_without_its_unique_keys_is_refused(
    index: IndexBackend, model: QueryModel, level: str, keys: dict[str, str], said: str
) -> None:
    refusal = _refused(index.files, _identifier(level, **keys), model)
    assert refusal.status == Status.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert said in str(refusal) and "C.4.2.2.1" in str(refusal)


# -- Optional return keys computed by the index (PS3.4 C.6.1.1.2, C.6.2.1.2) ----------------


def test_study_level_counts_modalities_and_sop_classes(index: IndexBackend) -> None:
    found = _find(
        index,
        "STUDY",
        StudyInstanceUID=A_STUDY,
        ModalitiesInStudy="",
        SOPClassesInStudy="",
        NumberOfStudyRelatedSeries="",
        NumberOfStudyRelatedInstances="",
    )
    (study,) = found
    assert list(study.ModalitiesInStudy) == ["CT", "MR"]
    assert list(study.SOPClassesInStudy) == [CT, MR]
    assert (study.NumberOfStudyRelatedSeries, study.NumberOfStudyRelatedInstances) == (2, 3)


def test_patient_and_series_level_counts(index: IndexBackend) -> None:
    (patient,) = _find(
        index,
        "PATIENT",
        PATIENT_ROOT,
        PatientID=A,
        NumberOfPatientRelatedStudies="",
        NumberOfPatientRelatedSeries="",
        NumberOfPatientRelatedInstances="",
    )
    counts = (
        patient.NumberOfPatientRelatedStudies,
        patient.NumberOfPatientRelatedSeries,
        patient.NumberOfPatientRelatedInstances,
    )
    assert counts == (2, 3, 4)
    series = _find(
        index,
        "SERIES",
        StudyInstanceUID=A_STUDY,
        SeriesInstanceUID="",
        NumberOfSeriesRelatedInstances="",
    )
    assert {s.SeriesInstanceUID: s.NumberOfSeriesRelatedInstances for s in series} == {
        A_CT: 2,
        A_MR: 1,
    }


def test_modalities_in_study_matches_studies_holding_any_of_them(index: IndexBackend) -> None:
    mr = _find(index, "STUDY", StudyInstanceUID="", ModalitiesInStudy="MR")
    assert _column(mr, "StudyInstanceUID") == [A_STUDY]
    assert list(mr[0].ModalitiesInStudy) == ["CT", "MR"]  # every modality of the study
    either = _find(index, "STUDY", StudyInstanceUID="", ModalitiesInStudy=["MR", "CT"])
    assert sorted(_column(either, "StudyInstanceUID")) == [A_STUDY, A_STUDY2, B_STUDY]
    assert _find(index, "STUDY", StudyInstanceUID="", ModalitiesInStudy="US") == []


def test_an_index_made_by_the_first_schema_is_migrated_and_keeps_its_rows(
    request: pytest.FixtureRequest,
) -> None:
    """Migration 2 (names lower-cased by ICU) over a database the first release made: the
    rows stay, the name indexes are the new ones, and a second node applies nothing."""
    import psycopg

    from dicomtls.node.index_pg import MIGRATIONS

    dsn = request.getfixturevalue("postgres").new_database()
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(
            "CREATE TABLE dicomtls_migrations "
            "(version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())"
        )
        db.execute(MIGRATIONS[0])
        db.execute("INSERT INTO dicomtls_migrations (version) VALUES (1)")
        row = ["PC", "MÜLLER^JÜRGEN", "", "", "1.2.3.4", *[""] * 6, "1.2.3.4.1", "", "", ""]
        row += ["1.2.3.4.1.1", CT, ""]
        db.execute("SELECT dicomtls_add(%s, '', 'c.dcm', 0, NULL, false)", (row,))
    index = PostgresIndex(dsn)
    try:
        assert index.migrate() == 0  # opening applied it; a second node applies nothing
        found = _find(index, "STUDY", PatientName="müller*", PatientID="")
        assert _column(found, "PatientID") == ["PC"]
        with index._connection() as db:
            names = {r[0] for r in db.execute("SELECT indexname FROM pg_indexes")}
            assert "patients_by_lower_name" in names and "patients_by_name" not in names
            assert db.execute("SELECT max(version) FROM dicomtls_migrations").fetchone()[0] == 2
    finally:
        index.close()


def test_an_sqlite_index_made_before_lower_case_names_is_migrated(tmp_path: Path) -> None:
    """An index file of the earlier schema (no ``_lower`` columns) opens, keeps its rows,
    and its names match without regard to case at once, without a rebuild."""
    import sqlite3

    path = tmp_path / "index.sqlite"
    columns = [c.column for c in _INDEX_COLUMNS]
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            f"CREATE TABLE instances ({', '.join(f'{c} TEXT' for c in columns)}, "
            "transfer_syntax TEXT, path TEXT NOT NULL, size INTEGER, "
            "PRIMARY KEY (sop_instance_uid))"
        )
        row = {c: "" for c in columns} | {
            "patient_id": "PC",
            "patient_name": "MÜLLER^JÜRGEN",
            "study_uid": "1.2.3.4",
            "series_uid": "1.2.3.4.1",
            "sop_instance_uid": "1.2.3.4.1.1",
        }
        db.execute(
            f"INSERT INTO instances VALUES ({', '.join('?' * (len(columns) + 3))})",
            [*row.values(), "", "c.dcm", 0],
        )
    index = Index(path)
    try:
        assert index.count() == 1
        found = _find(index, "STUDY", PatientName="müller*", PatientID="")
        assert _column(found, "PatientID") == ["PC"]
    finally:
        index.close()
    Index(path).close()  # a second opening finds nothing to do
