"""The node's SQLite index: what is stored, queryable at patient, study, series and image level.

One row per instance, with the attributes C-FIND matches on (PS3.4 C.6.1.1 and
C.6.2.1, the required and unique keys of the Patient Root and Study Root models).
Higher levels are answered by grouping instance rows. The index lives inside the
store (``index.sqlite``), survives restarts, and :meth:`Index.rebuild` recreates it
from the files alone, because the files, not the index, are the truth.

Queries and retrievals follow the baseline (hierarchical) behaviour of PS3.4 C.4: the
node negotiates no relational queries or retrievals, so an identifier must name a single
entity at each level above its own by that level's unique key (C.4.1.2.1, C.4.2.2.1,
C.4.3.2.1). One that does not is refused with :class:`QueryError`, never widened to
"everything": 0xA900, Identifier does not match SOP Class (C.4.1.1.4, C.4.2.1.5).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomtls.dimse.datasets import keyword_texts
from dicomtls.dimse.status import Status
from dicomtls.logs import get_logger
from dicomtls.net.hooks import StatusError
from dicomtls.net.qr_scu import UNIQUE_KEYS, QueryModel
from dicomtls.node.storage import PRIVATE_FILE_MODE, check_file_mode, create_file, set_mode

__all__ = [
    "INDEXED_KEYWORDS",
    "LEVEL_KEYS",
    "MAX_MATCH_LENGTH",
    "QUERY_TIMEOUT",
    "SQLITE",
    "Dialect",
    "FindQuery",
    "Index",
    "InstanceFacts",
    "QueryError",
    "find_query",
    "index_files",
    "nul_inside",
    "over_time_limit",
    "retrieve_query",
]

log = get_logger("dicomtls.node")


class QueryError(StatusError):
    """An identifier the node will not run, and the PS3.4 status that answers it.

    By default 0xA900, Identifier does not match SOP Class (PS3.4 C.4.1.1.4, C.4.2.1.5,
    C.4.3.1.4): what the information model does not allow (an unknown level, a unique key
    missing above the level, a list where one value belongs). A :class:`StatusError`, so
    the dispatcher answers it and logs the reason in one line naming the peer.
    """

    def __init__(self, reason: str, status: int = Status.DATASET_DOES_NOT_MATCH_SOP_CLASS) -> None:
        super().__init__(status, reason)


def over_time_limit(limit: float, status: int) -> QueryError:
    """The refusal of a query that worked longer than ``limit``: out of resources (PS3.4
    C.4.1.1.4: A700H for C-FIND; C.4.2.1.5, C.4.3.1.4: A701H for C-MOVE and C-GET)."""
    return QueryError(f"the query ran past the index's time limit of {limit:g} s", status)


#: SQLite virtual machine instructions between two looks at a query's clock: a few rows of
#: a scan (a look costs a Python call: about 5% of a plain scan at this rate).
_CHECK_EVERY = 100


class _Deadline:
    """SQLite's progress handler: stops a query once it has worked ``limit`` seconds since
    :meth:`restart` (truthy stops it; SQLite then raises "interrupted")."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.restart()

    def restart(self) -> None:
        self.at = time.monotonic() + self.limit

    def __call__(self) -> bool:
        return time.monotonic() > self.at


@dataclass(frozen=True)
class _Column:
    keyword: str
    column: str
    kind: str = "text"  # "text" and "name" (wildcards), "uid" (list), "date", "time"


_COLUMNS = (
    _Column("PatientID", "patient_id"),
    _Column("PatientName", "patient_name", "name"),
    _Column("PatientBirthDate", "patient_birth_date", "date"),
    _Column("PatientSex", "patient_sex"),
    _Column("StudyInstanceUID", "study_uid", "uid"),
    _Column("StudyDate", "study_date", "date"),
    _Column("StudyTime", "study_time", "time"),
    _Column("AccessionNumber", "accession_number"),
    _Column("StudyID", "study_id"),
    _Column("StudyDescription", "study_description"),
    _Column("ReferringPhysicianName", "referring_physician", "name"),
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
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "ReferringPhysicianName",
    ),
    "SERIES": ("SeriesInstanceUID", "SeriesNumber", "Modality", "SeriesDescription"),
    "IMAGE": ("SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}
_LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
#: Each model's levels, top first. Study Root has no patient level: the attributes of
#: patients are attributes of studies (PS3.4 C.3.2).
_MODEL_LEVELS = {
    QueryModel.PATIENT_ROOT: _LEVELS,
    QueryModel.STUDY_ROOT: _LEVELS[1:],
}
_MODEL_NAMES = {QueryModel.PATIENT_ROOT: "Patient Root", QueryModel.STUDY_ROOT: "Study Root"}
#: Optional return keys the index computes from the instance rows of each match
#: (PS3.4 C.6.1.1.2 - C.6.2.1.3): level -> keyword -> SQL aggregate over the match's rows.
#: Baseline matching never narrows a match below its own level, so the rows of a match
#: are all the instances of that patient, study or series.
_COMPUTED = {
    "PATIENT": {
        "NumberOfPatientRelatedStudies": "COUNT(DISTINCT study_uid)",
        "NumberOfPatientRelatedSeries": "COUNT(DISTINCT series_uid)",
        "NumberOfPatientRelatedInstances": "COUNT(*)",
    },
    "STUDY": {
        "ModalitiesInStudy": "{concat:modality}",
        "SOPClassesInStudy": "{concat:sop_class_uid}",
        "NumberOfStudyRelatedSeries": "COUNT(DISTINCT series_uid)",
        "NumberOfStudyRelatedInstances": "COUNT(*)",
    },
    "SERIES": {"NumberOfSeriesRelatedInstances": "COUNT(*)"},
}
_LISTS = frozenset({"ModalitiesInStudy", "SOPClassesInStudy"})
_LEVEL_TAG = 0x00080052  # QueryRetrieveLevel
_LEVEL_OF = {keyword: level for level, keys in LEVEL_KEYS.items() for keyword in keys}
#: A longer matching value is refused (our limit; PS3.4 C.2.2.2 lets a key exceed its VR's
#: length, but no stored value comes near this, and a wildcard pattern costs per character).
MAX_MATCH_LENGTH = 1024
#: How long a query may work (seconds) before it is refused: PostgreSQL's statement timeout,
#: and on SQLite the time spent finding one row (for a grouped query, the first is all of
#: it). A 1,024-character pattern costs about 60 ms against each 64 KiB value.
QUERY_TIMEOUT = 10.0

#: The name columns (PN), each with a lower-cased copy that matching reads (``_lower``).
_NAMES = tuple(c.column for c in _COLUMNS if c.kind == "name")
_STORED = (
    *(c.column for c in _COLUMNS),
    "transfer_syntax",
    "path",
    "size",
    *(f"{name}_lower" for name in _NAMES),
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS instances (
    {", ".join(f"{c.column} TEXT" for c in _COLUMNS)},
    transfer_syntax TEXT, path TEXT NOT NULL, size INTEGER,
    {", ".join(f"{name}_lower TEXT" for name in _NAMES)},
    PRIMARY KEY (sop_instance_uid)
);
CREATE INDEX IF NOT EXISTS by_patient ON instances (patient_id);
CREATE INDEX IF NOT EXISTS by_study ON instances (study_uid);
CREATE INDEX IF NOT EXISTS by_series ON instances (series_uid);
"""


def _values_of(identifier: Dataset, keyword: str) -> list[str]:
    """The values given for a key the index does not match as a column ([] when absent)."""
    if keyword not in identifier:
        return []
    values = _values(identifier[keyword])
    _check_characters(keyword, values)
    return [v for v in values if v != "*"]


def _shown(values: Sequence[str]) -> str:
    """A peer's values for a log line: as sent (backslash between), quoted, escaped (repr),
    cut short."""
    text = "\\".join(values)
    return repr(text if len(text) <= 64 else text[:64] + "...")


def _is_pattern(value: str) -> bool:
    return "*" in value or "?" in value


def _values(element: DataElement) -> list[str]:
    """An identifier element's values as text; [] for zero length (universal matching)."""
    value = element.value
    if element.VR == "SQ" or isinstance(value, bytes | bytearray):
        raise QueryError(f"{element.keyword} as {element.VR}: a matching key here is text")
    items = list(value) if isinstance(value, MultiValue) else [value]
    texts = ["" if item is None else str(item).strip(" \x00") for item in items]
    return [] if texts == [""] else texts


def _check_characters(keyword: str, values: Sequence[str]) -> None:
    """No NUL inside a value (padding at its end was stripped): PS3.5 6.2 allows no control
    character in these VRs, nothing stored holds one, and PostgreSQL cannot even be asked
    (its text has no NUL), so the two backends would answer differently."""
    if any("\x00" in value for value in values):
        raise QueryError(
            f"{keyword} {_shown(values)} holds a NUL character inside a value, which no "
            "value of its VR may (PS3.5 6.2)"
        )


def _check_values(keyword: str, values: Sequence[str]) -> None:
    """What PS3.4 C.2.2.2 allows a key: more values than its VM (1 for every key here) only
    as a List of UID Matching (C.2.2.2.2), each item one UID. Anything else is refused: a
    multi-valued PatientName is not a list to match against, and no other type defines it."""
    _check_characters(keyword, values)
    if _BY_KEYWORD[keyword].kind == "uid":
        if len(values) > 1 and "" in values:
            raise QueryError(f"{keyword}: an empty item in a list of UIDs (PS3.4 C.2.2.2.2)")
        return
    if len(values) > 1:
        raise QueryError(
            f"{keyword} with {len(values)} values: only UID keys take a list (List of UID "
            "Matching, PS3.4 C.2.2.2.2), this one matches a single value"
        )
    if values and len(values[0]) > MAX_MATCH_LENGTH:
        raise QueryError(
            f"{keyword}: a matching value of {len(values[0]):,} characters, over the node's "
            f"limit of {MAX_MATCH_LENGTH:,}",
            Status.UNABLE_TO_PROCESS,
        )


def _wildcard_to_like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _glob_pattern(value: str) -> str:
    return value.replace("[", "[[]")  # a bracket is no GLOB class here, only itself


def _json_list(values: Sequence[str]) -> object:
    return json.dumps(list(values))


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL of two index backends; the matching rules do not.

    Queries are built once (:func:`find_query`, :func:`retrieve_query`) over a relation with
    one row per instance, the columns of :data:`_COLUMNS` and ``order`` (the order in which
    they were stored): SQLite's ``instances`` table, PostgreSQL's ``flat`` view.
    """

    relation: str
    order: str
    param: str
    true: str
    lower: str
    """``{0}`` (a PN column) in lower case as Python's ``str.lower`` has it, the Unicode
    default case mapping, whatever the server's locale: PN matching ignores case (PS3.4
    C.2.2.2.1) alike on every backend, for ``Müller`` as for ``Smith``. SQLite keeps a
    lower-cased copy of each name; PostgreSQL lower-cases by ICU's root locale."""
    like_text: str
    """Case-sensitive wildcard match (PS3.4 C.2.2.2.4) of ``text_pattern(value)``."""
    text_pattern: Callable[[str], str]
    uid_list: str
    """``{0}`` equal to any UID of one parameter (List of UID Matching), however many."""
    uid_values: Callable[[Sequence[str]], object]
    concat: str
    """The distinct values of ``{0}`` joined with commas."""
    pick: str = "{0}"
    """A column's value in a group of rows that all hold the same one. SQLite takes a bare
    column; PostgreSQL wants an aggregate unless the column is the group's key."""


SQLITE = Dialect(
    relation="instances",
    order="rowid",
    param="?",
    true="1",
    lower="{0}_lower",
    like_text="{0} GLOB ?",
    text_pattern=_glob_pattern,
    uid_list="{0} IN (SELECT value FROM json_each(?))",
    uid_values=_json_list,
    concat="GROUP_CONCAT(DISTINCT {0})",
)


def _condition(
    column: _Column, values: Sequence[str], dialect: Dialect
) -> tuple[str, list[object]]:
    """SQL for one matching key (PS3.4 C.2.2.2): single value, UID list, wildcard, range."""
    name, p = column.column, dialect.param
    if column.kind == "uid":
        if len(values) > 1:  # each UID may generate a match; one parameter, however many
            return dialect.uid_list.format(name), [dialect.uid_values(values)]
        return f"{name} = {p}", list(values)
    (value,) = values
    if column.kind in ("date", "time") and "-" in value:
        return _range(name, value, dialect)
    if column.kind == "name":  # PN: case-insensitive, wildcards or not (C.2.2.2.1)
        name, value = dialect.lower.format(name), value.lower()
    if column.kind in ("name", "text") and _is_pattern(value):  # text: case-sensitive
        return dialect.like_text.format(name), [dialect.text_pattern(value)]
    return f"{name} = {p}", [value]


def _range(name: str, value: str, dialect: Dialect) -> tuple[str, list[object]]:
    """Range Matching (C.2.2.2.5) of a date or time: ``low-high``, either end left open."""
    low, _, high = value.partition("-")
    parts: list[str] = []
    args: list[object] = []
    if low:
        parts.append(f"{name} >= {dialect.param}")
        args.append(low)
    if high:
        parts.append(f"{name} <= {dialect.param}")
        args.append(high)
    return " AND ".join(parts) or dialect.true, args


@dataclass(frozen=True)
class _Identifier:
    """A C-FIND, C-MOVE or C-GET identifier read against one information model."""

    level: str
    levels: tuple[str, ...]
    """The model's levels, top first."""
    keys: dict[str, list[str]]
    """Each indexed key in the identifier -> its values ([] for universal matching)."""

    @classmethod
    def read(cls, identifier: Dataset, model: QueryModel) -> _Identifier:
        levels = _MODEL_LEVELS[model]
        element = identifier.get(_LEVEL_TAG)  # a tag gives the element, not its value
        if element is None:
            raise QueryError(
                "no QueryRetrieveLevel (0008,0052), which every Query/Retrieve identifier "
                "carries (PS3.4 C.4.1.1.3.1, C.4.2.1.4.1)"
            )
        given = _values(element)
        level = given[0].upper() if len(given) == 1 else ""
        if level not in levels:
            raise QueryError(
                f"QueryRetrieveLevel {_shown(given)} is none of the "
                f"{_MODEL_NAMES[model]} levels ({', '.join(levels)})"
            )
        keys = {e.keyword: _values(e) for e in identifier if e.keyword in _BY_KEYWORD}
        for keyword, values in keys.items():
            _check_values(keyword, values)
        return cls(level, levels, keys)

    @property
    def depth(self) -> int:
        return self.levels.index(self.level)

    def level_of(self, keyword: str) -> str:
        """The level a key belongs to in this model (Study Root: patients' at the study's)."""
        level = _LEVEL_OF[keyword]
        return level if level in self.levels else self.levels[0]

    def returned_keys(self) -> list[str]:
        """The keys asked for at the level of the query and those above it (C.4.1.3.1.1)."""
        return [k for k in self.keys if self.levels.index(self.level_of(k)) <= self.depth]

    def group_columns(self) -> list[str]:
        """The columns of the unique keys down to the query's level: one match per group."""
        return [_BY_KEYWORD[UNIQUE_KEYS[level]].column for level in self.levels[: self.depth + 1]]

    def _unique_keys_above(self, clause: str) -> list[str]:
        """A single value in the unique key of each level above, else QueryError: a baseline
        request names one entity at each of them (hierarchical, not relational)."""
        for above in self.levels[: self.depth]:
            unique = UNIQUE_KEYS[above]
            values = self.keys.get(unique, [])
            if not values:
                raise QueryError(
                    f"{self.level} level without {unique}, the unique key of the {above} "
                    f"level above it: each level above needs a single value there ({clause})"
                )
            if len(values) > 1 or _is_pattern(values[0]):
                raise QueryError(
                    f"{self.level} level with {unique} {_shown(values)}: the "
                    f"unique key of the {above} level above it takes a single value, not a "
                    f"list or a pattern ({clause})"
                )
        return [UNIQUE_KEYS[above] for above in self.levels[: self.depth]]

    def find_keys(self) -> list[str]:
        """What C-FIND matches on (PS3.4 C.4.1.3.1.1): the unique keys above, every key of the
        level. A value in a key of another level asks for a relational query: refused."""
        above = self._unique_keys_above("PS3.4 C.4.1.2.1")
        for keyword, values in self.keys.items():
            at = self.level_of(keyword)
            if at == self.level or keyword in above or not values or values == ["*"]:
                continue
            where = "above" if self.levels.index(at) < self.depth else "below"
            raise QueryError(
                f"{keyword} {_shown(values)} is a key of the {at} level, {where} "
                f"the {self.level} level of the query: a baseline C-FIND matches the unique "
                "keys of the levels above and the keys of its own level (PS3.4 C.4.1.2.1, "
                "C.4.1.3.1.1)"
            )
        return [*above, *(k for k in self.keys if self.level_of(k) == self.level)]

    def retrieve_keys(self) -> list[str]:
        """What C-MOVE and C-GET select by (PS3.4 C.4.2.3.1): the unique keys of the level and
        those above; other keys have no part in a retrieval (C.2.2.1.2) and are ignored."""
        clause = "PS3.4 C.4.2.2.1, C.4.3.2.1"
        above = self._unique_keys_above(clause)
        unique = UNIQUE_KEYS[self.level]
        values = self.keys.get(unique, [])
        if not values or any(_is_pattern(v) for v in values):
            given = "no value" if not values else _shown(values)
            raise QueryError(
                f"{self.level} level with {given} in {unique}: a retrieval names what it "
                f"sends by one value, or a list of UIDs, in the unique key of its level ({clause})"
            )
        return [*above, unique]


class InstanceFacts(NamedTuple):
    study_uid: str
    sop_class_uid: str
    patient_id: str
    patient_name: str


def _computed(expression: str, dialect: Dialect) -> str:
    if expression.startswith("{concat:"):
        return dialect.concat.format(expression[len("{concat:") : -1])
    return expression


def _where(
    keys: Mapping[str, Sequence[str]], keywords: Iterable[str], dialect: Dialect
) -> tuple[str, list[object]]:
    """SQL matching ``keywords`` to their values in ``keys`` (already checked)."""
    conditions: list[str] = [dialect.true]
    args: list[object] = []
    for keyword in keywords:
        values = keys.get(keyword, ())
        if not values or list(values) == ["*"]:
            continue  # universal matching (C.2.2.2.3); "*" alone is the same (C.2.2.2.4)
        sql, extra = _condition(_BY_KEYWORD[keyword], values, dialect)
        conditions.append(sql)
        args.extend(extra)
    return " AND ".join(conditions), args


@dataclass(frozen=True)
class FindQuery:
    """A C-FIND as SQL: run ``sql`` with ``args``, and :meth:`matches` turns rows into answers."""

    sql: str
    args: list[object]
    level: str
    returned: list[str]
    charset: bool

    def matches(self, rows: Iterable[Sequence[object]]) -> Iterator[Dataset]:
        for row in rows:
            match = Dataset()
            match.QueryRetrieveLevel = self.level
            for keyword, value in zip(self.returned, row, strict=False):
                if keyword in _LISTS:
                    setattr(match, keyword, sorted(str(value or "").split(",")) if value else "")
                else:
                    setattr(match, keyword, "" if value is None else str(value))
            if self.charset:
                match.SpecificCharacterSet = "ISO_IR 192"
            yield match


def find_query(identifier: Dataset, model: QueryModel, dialect: Dialect) -> FindQuery:
    """C-FIND by the hierarchical search (PS3.4 C.4.1.3.1.1): one row per match at the
    requested level, with the asked-for keys of that level and those above.

    Raises :class:`QueryError` for an identifier a baseline C-FIND does not allow.
    """
    query = _Identifier.read(identifier, model)
    where, args = _where(query.keys, query.find_keys(), dialect)
    modalities = _values_of(identifier, "ModalitiesInStudy") if query.level == "STUDY" else []
    if modalities:  # any series of those modalities (C.6.2.1.2)
        where += f" AND study_uid IN (SELECT study_uid FROM {dialect.relation} WHERE "
        where += dialect.uid_list.format("modality") + ")"
        args.append(dialect.uid_values(modalities))
    returned = query.returned_keys()
    computed = _COMPUTED.get(query.level, {})
    counted = [k for k in computed if k in identifier]  # asked for; values carry no match
    groups = query.group_columns()
    columns = [dialect.pick.format(_BY_KEYWORD[k].column) for k in returned]
    columns += [_computed(computed[k], dialect) for k in counted]
    sql = (
        f"SELECT {', '.join(columns) or dialect.pick.format(groups[-1])} FROM {dialect.relation} "
        f"WHERE {where} GROUP BY {', '.join(groups)} ORDER BY MIN({dialect.order})"
    )
    charset = "SpecificCharacterSet" in identifier
    return FindQuery(sql, args, query.level, [*returned, *counted], charset)


def retrieve_query(
    identifier: Dataset, model: QueryModel, dialect: Dialect
) -> tuple[str, list[object]]:
    """C-MOVE/C-GET: SQL for the locations of every instance the identifier's unique keys
    select (PS3.4 C.4.2.3.1); :class:`QueryError` for one a baseline retrieval does not allow."""
    query = _Identifier.read(identifier, model)
    where, args = _where(query.keys, query.retrieve_keys(), dialect)
    return f"SELECT path FROM {dialect.relation} WHERE {where} ORDER BY {dialect.order}", args


def nul_inside(attributes: Mapping[str, str]) -> str | None:
    """Why an object's kept values cannot be indexed alike by every backend, or None: a
    NUL inside one (at its end it is padding, already stripped). PS3.5 6.2 allows no
    control character in these VRs; SQLite would keep it, PostgreSQL's text cannot hold it.
    A C-STORE of such an object is refused, and a rebuild skips it, on both backends."""
    holding = [keyword for keyword, text in attributes.items() if "\x00" in text]
    if not holding:
        return None
    return (
        f"{', '.join(holding)} holds a NUL character inside its value, which its VR does "
        "not allow (PS3.5 6.2): it cannot be indexed"
    )


def index_files(
    files: Iterable[Path], add: Callable[[Path, Mapping[str, str], str], object]
) -> tuple[int, int]:
    """Read each of ``files`` and ``add`` it to an index (a rebuild: the files are the
    truth); returns (indexed, skipped). One that cannot be read, or whose values the index
    cannot hold (see :func:`nul_inside`; another object's SOP Instance UID), is skipped with
    one warning naming it: the rebuild goes on with the others."""
    indexed = skipped = 0
    for path in files:
        try:
            with path.open("rb") as handle:  # an object in S3 opens as a file does
                dataset = pydicom.dcmread(handle, stop_before_pixels=True)
            attributes = keyword_texts(dataset, INDEXED_KEYWORDS)
        except Exception as exc:  # whatever pydicom raises for what is not DICOM
            log.warning("rebuild: %s skipped: not readable as DICOM (%s)", path, exc)
            skipped += 1
            continue
        try:
            if (why := nul_inside(attributes)) is not None:
                raise ValueError(why)
            add(path, attributes, str(getattr(dataset.file_meta, "TransferSyntaxUID", "")))
        except ValueError as exc:  # the values, not the index: a server down still stops it
            log.warning("rebuild: %s skipped: %s", path, exc)
            skipped += 1
            continue
        indexed += 1
    return indexed, skipped


def _add_lower_names(db: sqlite3.Connection) -> None:
    """Give an index made before names matched in lower case its ``_lower`` columns."""
    have = {row[1] for row in db.execute("PRAGMA table_info(instances)")}
    missing = [name for name in _NAMES if f"{name}_lower" not in have]
    if not missing:
        return
    db.create_function("dicomtls_lower", 1, _lower, deterministic=True)
    with db:  # one transaction: an index is migrated whole or not at all
        db.execute("BEGIN")
        for name in missing:
            db.execute(f"ALTER TABLE instances ADD COLUMN {name}_lower TEXT")
            db.execute(f"UPDATE instances SET {name}_lower = dicomtls_lower({name})")


def _lower(text: str | None) -> str | None:
    return None if text is None else text.lower()


class Index:
    """The SQLite index of a store directory.

    It holds patient data, so its file gets ``mode`` (0600 unless the node lets its group
    read) before SQLite opens it: SQLite gives the ``-wal`` and ``-shm`` files it creates
    the main file's permission bits, whatever the umask. An index made by an older version
    gets the mode too.
    """

    #: Calls may block on a server (PostgreSQL): the node makes them off its event loop.
    remote = False

    def __init__(
        self, path: Path, *, mode: int = PRIVATE_FILE_MODE, query_timeout: float = QUERY_TIMEOUT
    ) -> None:
        self.path = path
        self.query_timeout = query_timeout
        mode = check_file_mode(mode)
        journals = (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
        if not path.exists():  # a deleted index must not be revived from a stale journal
            for stale in journals:
                stale.unlink(missing_ok=True)
            with contextlib.suppress(FileExistsError):  # made by another process meanwhile
                os.close(create_file(path, mode))
        for existing in (path, *journals):
            with contextlib.suppress(FileNotFoundError):
                set_mode(existing, mode)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        _add_lower_names(self._db)

    def describe_backend(self) -> str:
        return f"SQLite {self.path}"

    def close(self) -> None:
        self._db.close()

    def check(self) -> None:
        """Raise if the index cannot answer (the node's health check)."""
        self._db.execute("SELECT 1").fetchone()

    def add(self, path: Path, attributes: Mapping[str, str], transfer_syntax: str = "") -> None:
        """Index (or re-index) one stored object, from its attributes (keyword -> text)."""
        values = [attributes.get(c.keyword, "").strip() for c in _COLUMNS]
        lowered = [v.lower() for c, v in zip(_COLUMNS, values, strict=True) if c.kind == "name"]
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        self._db.execute(
            f"INSERT OR REPLACE INTO instances ({', '.join(_STORED)}) "
            f"VALUES ({', '.join('?' * len(_STORED))})",
            [*values, transfer_syntax, str(path), size, *lowered],
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """The :meth:`add` calls inside commit together, or not at all: the rows of objects
        stored close together cost one commit (its locks and WAL writes), not one each."""
        self._db.execute("BEGIN")
        try:
            yield
            self._db.execute("COMMIT")
        finally:
            if self._db.in_transaction:  # an add or the COMMIT failed: none of them stays
                self._db.execute("ROLLBACK")

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
        """Recreate the index from the files; (indexed, skipped): see :func:`index_files`."""
        self._db.execute("DELETE FROM instances")
        self._db.execute("BEGIN")
        try:
            return index_files(files, self.add)
        finally:
            self._db.execute("COMMIT")

    def _rows(self, sql: str, args: Sequence[object], status: int) -> Iterator[Sequence[object]]:
        """A query's rows, read on a connection of its own, closed when they are; past
        :attr:`query_timeout` for one row, :func:`over_time_limit` with ``status``.

        The node writes on ``_db`` from its event loop (C-STORE); a query runs on a worker
        thread and may work for seconds (a 1,024-character pattern against 64 KiB values).
        On one connection the next C-STORE waited for it, and the whole node with it; on two,
        WAL lets the query read while the node writes. The clock restarts for each row, so
        a peer that reads its matches slowly is not cut off.
        """
        reader = sqlite3.connect(self.path, check_same_thread=False)
        deadline = _Deadline(self.query_timeout)
        reader.set_progress_handler(deadline, _CHECK_EVERY)
        try:
            reader.execute("PRAGMA query_only = ON")
            cursor = reader.execute(sql, args)
            while (row := cursor.fetchone()) is not None:
                yield row
                deadline.restart()
        except sqlite3.OperationalError:
            if not deadline():
                raise
            raise over_time_limit(self.query_timeout, status) from None
        finally:
            reader.close()

    def find(self, identifier: Dataset, model: QueryModel) -> Iterator[Dataset]:
        """C-FIND (see :func:`find_query`); :class:`QueryError` at once (not on the first
        match) for an identifier a baseline C-FIND does not allow."""
        query = find_query(identifier, model, SQLITE)
        return query.matches(self._rows(query.sql, query.args, Status.OUT_OF_RESOURCES))

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

    def files(self, identifier: Dataset, model: QueryModel) -> list[Path]:
        """C-MOVE/C-GET: the files of every instance the identifier's unique keys select
        (PS3.4 C.4.2.3.1); :class:`QueryError` for one a baseline retrieval does not allow."""
        sql, args = retrieve_query(identifier, model, SQLITE)
        rows = self._rows(sql, args, Status.OUT_OF_RESOURCES_NUMBER_OF_MATCHES)
        return [Path(str(r[0])) for r in rows]
