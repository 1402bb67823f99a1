"""The node's SQLite index: what is stored, queryable at patient, study, series and image level.

One row per instance, with the attributes C-FIND matches on (PS3.4 C.6.1.1 and
C.6.2.1, the required and unique keys of the Patient Root and Study Root models).
Higher levels are answered by grouping instance rows. The index lives inside the
store (``index.sqlite``), survives restarts, and :meth:`Index.rebuild` recreates it
from the files alone, because the files, not the index, are the truth.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pydicom
from pydicom.dataset import Dataset

from dicomtls.dimse.datasets import keyword_texts

__all__ = ["INDEXED_KEYWORDS", "LEVEL_KEYS", "Index", "InstanceFacts", "QueryError"]


class QueryError(ValueError):
    """A C-FIND identifier we cannot run (unknown level, missing unique keys)."""


@dataclass(frozen=True)
class _Column:
    keyword: str
    column: str
    kind: str = "text"  # "text" (wildcards), "uid" (list), "date", "time"


_COLUMNS = (
    _Column("PatientID", "patient_id"),
    _Column("PatientName", "patient_name"),
    _Column("PatientBirthDate", "patient_birth_date", "date"),
    _Column("PatientSex", "patient_sex"),
    _Column("StudyInstanceUID", "study_uid", "uid"),
    _Column("StudyDate", "study_date", "date"),
    _Column("StudyTime", "study_time", "time"),
    _Column("AccessionNumber", "accession_number"),
    _Column("StudyID", "study_id"),
    _Column("StudyDescription", "study_description"),
    _Column("ReferringPhysicianName", "referring_physician"),
    _Column("SeriesInstanceUID", "series_uid", "uid"),
    _Column("SeriesNumber", "series_number"),
    _Column("Modality", "modality"),
    _Column("SeriesDescription", "series_description"),
    _Column("SOPInstanceUID", "sop_instance_uid", "uid"),
    _Column("SOPClassUID", "sop_class_uid", "uid"),
    _Column("InstanceNumber", "instance_number"),
)
_BY_KEYWORD = {c.keyword: c for c in _COLUMNS}
#: What :meth:`Index.add` reads from a data set (a storage SCP keeps just these).
INDEXED_KEYWORDS = tuple(_BY_KEYWORD)

#: The attributes that belong to each level (what a match at that level reports).
LEVEL_KEYS = {
    "PATIENT": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex"),
    "STUDY": (
        "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
        "StudyDescription", "ReferringPhysicianName",
    ),
    "SERIES": ("SeriesInstanceUID", "SeriesNumber", "Modality", "SeriesDescription"),
    "IMAGE": ("SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}  # fmt: skip
_LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
_UNIQUE = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS instances (
    {", ".join(f"{c.column} TEXT" for c in _COLUMNS)},
    transfer_syntax TEXT, path TEXT NOT NULL, size INTEGER,
    PRIMARY KEY (sop_instance_uid)
);
CREATE INDEX IF NOT EXISTS by_patient ON instances (patient_id);
CREATE INDEX IF NOT EXISTS by_study ON instances (study_uid);
CREATE INDEX IF NOT EXISTS by_series ON instances (series_uid);
"""


def _text(value: object) -> str:
    if value is None:
        return ""
    return str(value).strip()


def _wildcard_to_like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _condition(column: _Column, value: str) -> tuple[str, list[str]]:
    """SQL for one matching key (PS3.4 C.2.2.2): single value, wildcard, UID list, range."""
    name = column.column
    if column.kind == "uid" and "\\" in value:
        uids = [u for u in value.split("\\") if u]
        return f"{name} IN ({', '.join('?' * len(uids))})", uids
    if column.kind in ("date", "time") and "-" in value:
        low, _, high = value.partition("-")
        parts, args = [], []
        if low:
            parts.append(f"{name} >= ?")
            args.append(low)
        if high:
            parts.append(f"{name} <= ?")
            args.append(high)
        return " AND ".join(parts) or "1", args
    if column.kind == "text" and ("*" in value or "?" in value):
        return f"{name} LIKE ? ESCAPE '\\'", [_wildcard_to_like(value)]
    return f"{name} = ?", [value]


class InstanceFacts(NamedTuple):
    study_uid: str
    sop_class_uid: str
    patient_id: str
    patient_name: str


class Index:
    """The SQLite index of a store directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():  # a deleted index must not be revived from a stale journal
            for stale in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                stale.unlink(missing_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, path: Path, attributes: Mapping[str, str], transfer_syntax: str = "") -> None:
        """Index (or re-index) one stored object, from its attributes (keyword -> text)."""
        values = [attributes.get(c.keyword, "").strip() for c in _COLUMNS]
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        self._db.execute(
            f"INSERT OR REPLACE INTO instances VALUES ({', '.join('?' * (len(_COLUMNS) + 3))})",
            [*values, transfer_syntax, str(path), size],
        )

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])

    def identity(self, sop_instance_uid: str, keywords: Sequence[str]) -> dict[str, str] | None:
        """What the index holds of one stored instance (keyword -> text), or None if none.

        The store asks before a received object takes this SOP Instance UID's file, so that
        it can tell a corrected copy of the same object from another object under its UID.
        ``keywords`` must be indexed ones (KeyError otherwise).
        """
        columns = ", ".join(_BY_KEYWORD[keyword].column for keyword in keywords)
        row = self._db.execute(
            f"SELECT {columns} FROM instances WHERE sop_instance_uid = ?", (sop_instance_uid,)
        ).fetchone()
        return None if row is None else {k: v or "" for k, v in zip(keywords, row, strict=True)}

    def rebuild(self, files: Iterable[Path]) -> tuple[int, int]:
        """Recreate the index from the files; returns (indexed, unreadable)."""
        self._db.execute("DELETE FROM instances")
        indexed = bad = 0
        self._db.execute("BEGIN")
        try:
            for path in files:
                try:
                    dataset = pydicom.dcmread(path, stop_before_pixels=True)
                except Exception:
                    bad += 1
                    continue
                syntax = str(getattr(dataset.file_meta, "TransferSyntaxUID", ""))
                self.add(path, keyword_texts(dataset, INDEXED_KEYWORDS), syntax)
                indexed += 1
        finally:
            self._db.execute("COMMIT")
        return indexed, bad

    def find(self, identifier: Dataset) -> Iterator[Dataset]:
        """C-FIND: one identifier per match at the requested level, with the asked-for keys."""
        level = _text(identifier.get("QueryRetrieveLevel")).upper()
        if level not in _LEVELS:
            raise QueryError(f"unknown QueryRetrieveLevel {level!r}")
        depth = _LEVELS.index(level)
        group_column = _BY_KEYWORD[_UNIQUE[level]].column
        where, args = self._where(identifier)
        requested = [e.keyword for e in identifier if e.keyword in _BY_KEYWORD]
        visible = {k for lv in _LEVELS[: depth + 1] for k in LEVEL_KEYS[lv]}
        returned = [k for k in requested if k in visible]
        columns = ", ".join(_BY_KEYWORD[k].column for k in returned) or group_column
        sql = f"SELECT {columns} FROM instances WHERE {where} GROUP BY {group_column} ORDER BY MIN(rowid)"
        for row in self._db.execute(sql, args):
            match = Dataset()
            match.QueryRetrieveLevel = level
            for keyword, value in zip(returned, row, strict=False):
                setattr(match, keyword, value or "")
            if "SpecificCharacterSet" in identifier:
                match.SpecificCharacterSet = "ISO_IR 192"
            yield match

    def describe(
        self, *, paths: Iterable[Path] = (), sop_instance_uids: Iterable[str] = ()
    ) -> list[InstanceFacts]:
        """What the audit trail says of stored instances: study, SOP class, patient."""
        facts: list[InstanceFacts] = []
        sql = "SELECT study_uid, sop_class_uid, patient_id, patient_name FROM instances WHERE "
        for column, values in (
            ("path", [str(p) for p in paths]),
            ("sop_instance_uid", list(sop_instance_uids)),
        ):
            for start in range(0, len(values), 500):  # SQLite's host-parameter limit
                chunk = values[start : start + 500]
                rows = self._db.execute(sql + f"{column} IN ({', '.join('?' * len(chunk))})", chunk)
                facts.extend(InstanceFacts(*row) for row in rows)
        return facts

    def files(self, identifier: Dataset) -> list[Path]:
        """C-MOVE/C-GET: the files of every instance the identifier selects."""
        where, args = self._where(identifier)
        rows = self._db.execute(f"SELECT path FROM instances WHERE {where} ORDER BY rowid", args)
        return [Path(r[0]) for r in rows]

    def _where(self, identifier: Dataset) -> tuple[str, list[str]]:
        conditions, args = ["1"], []
        for element in identifier:
            column = _BY_KEYWORD.get(element.keyword)
            value = _text(element.value)
            if column is None or not value or value == "*":
                continue  # universal matching
            sql, extra = _condition(column, value)
            conditions.append(sql)
            args.extend(extra)
        return " AND ".join(conditions), args
