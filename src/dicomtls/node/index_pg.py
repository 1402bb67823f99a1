"""The index on PostgreSQL: several nodes, one index, the same answers as SQLite.

A node with ``index = "postgresql://..."`` keeps its index here instead of ``index.sqlite``.
C-FIND and C-MOVE/C-GET are built by the same code as SQLite's (:func:`find_query`,
:func:`retrieve_query`), over the ``flat`` view that joins the levels back into one row per
instance, so both backends give the same answers to the same identifiers.

The schema keeps one row per patient, study, series and instance, each with a unique key
(PS3.4 C.6.1.1: PatientID, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID). Two nodes
that store the first objects of one study at the same moment make one study row: each
level is found or inserted by ``INSERT ... ON CONFLICT DO NOTHING`` and a second look, in a
function that runs each statement on a fresh snapshot (READ COMMITTED), so the loser of the
race finds the winner's row instead of failing or duplicating it. The first object of a
patient, study or series sets that level's attributes (as Orthanc and dcm4chee-arc do);
later objects do not rewrite them, which also keeps a busy study's row free of locks.

An object in an S3 store is written under a key of its own, named in ``pending_objects``
before the upload starts (:meth:`PostgresIndex.intend`). Indexing it removes that row in
the same transaction as the instance row (``settles``), so a crash at any point leaves
either an indexed object or a row the janitor (:mod:`dicomtls.node.janitor`) cleans up.
A re-sent object's previous key goes into ``pending_objects`` as it is replaced.

Migrations are numbered and applied once, under an advisory lock, by whichever node starts
first; a node never runs against a schema newer than it knows.

Every call blocks on the server: the node makes them on worker threads (``remote``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from dicomtls.dimse.status import Status
from dicomtls.errors import DicomTLSError
from dicomtls.logs import get_logger
from dicomtls.net.qr_scu import QueryModel
from dicomtls.node.index import (
    _BY_KEYWORD,
    _COLUMNS,
    INDEXED_KEYWORDS,
    LEVEL_KEYS,
    QUERY_TIMEOUT,
    Dialect,
    InstanceFacts,
    QueryError,
    _wildcard_to_like,
    find_query,
    index_files,
    over_time_limit,
    retrieve_query,
)

__all__ = ["IndexUnavailable", "ObjectReaped", "PostgresIndex", "SameUidAnotherObject"]

log = get_logger("dicomtls.node")


def _as_list(values: Sequence[str]) -> object:
    return list(values)


POSTGRESQL = Dialect(
    relation="flat",
    order="seq",
    param="%s",
    true="TRUE",
    lower='lower({0} COLLATE "und-x-icu")',
    like_text="{0} LIKE %s",
    text_pattern=_wildcard_to_like,
    uid_list="{0} = ANY(%s)",
    uid_values=_as_list,
    concat="string_agg(DISTINCT {0}, ',')",
    pick="MIN({0})",
)

#: Each level's table and its columns, unique key first (the index's keys of that level).
_LEVEL_COLUMNS = {
    table: tuple(_BY_KEYWORD[keyword].column for keyword in LEVEL_KEYS[level])
    for table, level in (
        ("patients", "PATIENT"),
        ("studies", "STUDY"),
        ("series", "SERIES"),
        ("instances", "IMAGE"),
    )
}
_ORDER = [c.column for c in _COLUMNS]
_CLAIMED = {
    "PatientID": "claimed[1]",
    "StudyInstanceUID": "claimed[2]",
    "SeriesInstanceUID": "claimed[3]",
}
assert sorted(_ORDER) == sorted(c for cols in _LEVEL_COLUMNS.values() for c in cols)


def _text_columns(names: Sequence[str]) -> str:
    return ", ".join(f"{name} text NOT NULL DEFAULT ''" for name in names[1:])


def _find_or_insert(table: str, parent: str | None) -> str:
    """A function that returns the key of the row with this unique value, inserting it if
    none: the race between nodes ends with one row, whichever inserted it."""
    columns = _LEVEL_COLUMNS[table]
    unique = columns[0]
    names = [*columns, *([parent] if parent else [])]
    params = ", ".join(f"v_{n} {'bigint' if n == parent else 'text'}" for n in names)
    values = ", ".join(f"v_{n}" for n in names)
    return f"""
CREATE FUNCTION dicomtls_{table}({params}) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE found bigint;
BEGIN
    SELECT pk INTO found FROM {table} WHERE {unique} = v_{unique};
    IF found IS NULL THEN
        INSERT INTO {table} ({", ".join(names)}) VALUES ({values})
            ON CONFLICT ({unique}) DO NOTHING RETURNING pk INTO found;
        IF found IS NULL THEN  -- another node inserted it meanwhile: a fresh snapshot sees it
            SELECT pk INTO found FROM {table} WHERE {unique} = v_{unique};
        END IF;
    END IF;
    RETURN found;
END $$;
"""


#: Each migration, in order; a migration never changes once released (add another).
MIGRATIONS: tuple[str, ...] = (
    f"""
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE patients (
    pk bigserial PRIMARY KEY, patient_id text NOT NULL UNIQUE, {_text_columns(_LEVEL_COLUMNS["patients"])}
);
CREATE TABLE studies (
    pk bigserial PRIMARY KEY, study_uid text NOT NULL UNIQUE,
    patient_pk bigint NOT NULL REFERENCES patients, {_text_columns(_LEVEL_COLUMNS["studies"])}
);
CREATE TABLE series (
    pk bigserial PRIMARY KEY, series_uid text NOT NULL UNIQUE,
    study_pk bigint NOT NULL REFERENCES studies, {_text_columns(_LEVEL_COLUMNS["series"])}
);
CREATE SEQUENCE instance_order;
CREATE TABLE instances (
    pk bigserial PRIMARY KEY, sop_instance_uid text NOT NULL UNIQUE,
    series_pk bigint NOT NULL REFERENCES series, {_text_columns(_LEVEL_COLUMNS["instances"])},
    transfer_syntax text NOT NULL DEFAULT '', path text NOT NULL, size bigint NOT NULL DEFAULT 0,
    sha256 text, seq bigint NOT NULL DEFAULT nextval('instance_order'),
    stored timestamptz NOT NULL DEFAULT now(),
    -- the object's own PatientID, StudyInstanceUID, SeriesInstanceUID as received: its levels'
    -- rows hold the first object's, and a re-send is judged against its own (identity)
    claimed text[] NOT NULL DEFAULT '{{}}'
);
CREATE INDEX studies_by_patient ON studies (patient_pk);
CREATE INDEX series_by_study ON series (study_pk);
CREATE INDEX instances_by_series ON instances (series_pk);
CREATE INDEX instances_by_path ON instances (path);
CREATE INDEX studies_by_date ON studies (study_date);
CREATE INDEX studies_by_accession ON studies (accession_number);
CREATE INDEX series_by_modality ON series (modality);
-- wildcard names (PatientName LIKE 'SMITH*', '*SMITH*'): trigrams serve any position
CREATE INDEX patients_by_name ON patients USING gin (patient_name gin_trgm_ops);
CREATE INDEX studies_by_referring ON studies USING gin (referring_physician gin_trgm_ops);
CREATE INDEX patients_by_id_pattern ON patients USING gin (patient_id gin_trgm_ops);
CREATE TABLE pending_objects (
    path text PRIMARY KEY, node text NOT NULL DEFAULT '', since timestamptz NOT NULL DEFAULT now(),
    doomed boolean NOT NULL DEFAULT false
);
CREATE VIEW flat AS
    SELECT {", ".join(_ORDER)}, i.transfer_syntax, i.path, i.size, i.sha256, i.seq, i.claimed
    FROM instances i JOIN series se ON se.pk = i.series_pk
    JOIN studies st ON st.pk = se.study_pk JOIN patients p ON p.pk = st.patient_pk;
{_find_or_insert("patients", None)}
{_find_or_insert("studies", "patient_pk")}
{_find_or_insert("series", "study_pk")}
CREATE FUNCTION dicomtls_add(
    v text[], v_syntax text, v_path text, v_size bigint, v_sha256 text, v_settles boolean
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    patient bigint; study bigint; one_series bigint; old_path text; old_series bigint;
    old_class text;
BEGIN
    -- v: the indexed attributes in the order of the flat view's first columns
    IF v_settles THEN
        DELETE FROM pending_objects WHERE path = v_path AND NOT doomed;
        IF NOT FOUND THEN RETURN 'reaped'; END IF;
    END IF;
    patient := dicomtls_patients(v[1], v[2], v[3], v[4]);
    study := dicomtls_studies(v[5], v[6], v[7], v[8], v[9], v[10], v[11], patient);
    one_series := dicomtls_series(v[12], v[13], v[14], v[15], study);
    SELECT path, series_pk, sop_class_uid INTO old_path, old_series, old_class
        FROM instances WHERE sop_instance_uid = v[16] FOR UPDATE;
    IF FOUND AND (old_series <> one_series OR old_class <> v[17]) THEN
        RETURN 'another';
    END IF;
    INSERT INTO instances (sop_instance_uid, sop_class_uid, instance_number, series_pk,
                           transfer_syntax, path, size, sha256, claimed)
        VALUES (v[16], v[17], v[18], one_series, v_syntax, v_path, v_size, v_sha256,
                ARRAY[v[1], v[5], v[12]])
        ON CONFLICT (sop_instance_uid) DO UPDATE SET
            instance_number = EXCLUDED.instance_number, transfer_syntax = EXCLUDED.transfer_syntax,
            claimed = EXCLUDED.claimed,
            path = EXCLUDED.path, size = EXCLUDED.size, sha256 = EXCLUDED.sha256,
            seq = nextval('instance_order'), stored = now();
    IF old_path IS NOT NULL AND old_path <> v_path THEN  -- the replaced copy is garbage now
        INSERT INTO pending_objects (path) VALUES (old_path) ON CONFLICT DO NOTHING;
    END IF;
    RETURN CASE WHEN old_path IS NULL THEN 'added' ELSE 'replaced' END;
END $$;
""",
    # Names match in lower case by ICU's root locale, as Python's str.lower() on SQLite:
    # ILIKE followed the database's locale (Unicode-aware under a UTF-8 one, ASCII under C).
    """
DROP INDEX patients_by_name;
DROP INDEX studies_by_referring;
CREATE INDEX patients_by_lower_name
    ON patients USING gin (lower(patient_name COLLATE "und-x-icu") gin_trgm_ops);
CREATE INDEX studies_by_lower_referring
    ON studies USING gin (lower(referring_physician COLLATE "und-x-icu") gin_trgm_ops);
""",
)

#: Rows a C-FIND reads from its server-side cursor per FETCH: the most it holds in memory,
#: whatever the number of matches.
FIND_BATCH = 1000

#: SQLSTATE query_canceled: what the statement timeout raises.
_QUERY_CANCELED = "57014"

#: Advisory lock keys (one 64-bit space per database): migrations, and the janitor's turn.
MIGRATION_LOCK = 0x6469636F6D01
JANITOR_LOCK = 0x6469636F6D02


class IndexUnavailable(DicomTLSError, OSError):
    """The PostgreSQL index cannot be reached or refused the schema."""


class SameUidAnotherObject(DicomTLSError, ValueError):
    """Another node indexed another object under this SOP Instance UID meanwhile."""


class ObjectReaped(DicomTLSError, RuntimeError):
    """The janitor took this object's upload for an orphan before it was indexed."""


def _pool(dsn: str, size: int, timeout: float) -> Any:
    try:
        from psycopg_pool import ConnectionPool
    except ImportError as exc:  # the optional extra
        raise IndexUnavailable(
            "a PostgreSQL index needs psycopg: pip install 'dicomtls[scale]'"
        ) from exc
    return ConnectionPool(
        dsn,
        min_size=1,
        max_size=size,
        timeout=timeout,
        kwargs={"autocommit": True, "options": f"-c statement_timeout={int(timeout * 1000)}"},
        open=False,
        name="dicomtls-index",
    )


class PostgresIndex:
    """The index of one or more nodes in one PostgreSQL database (see the module's docstring).

    ``pool_size`` connections at most (the node's worker threads share them); every statement
    is cut off after ``timeout`` seconds, so a stuck server fails requests, not the node.
    A C-FIND holds a connection while its peer reads the matches, so C-FINDs take at most
    half of them (:attr:`find_slots`): the rest stay free for storing and retrieving.
    """

    remote = True

    def __init__(
        self, dsn: str, *, pool_size: int = 16, timeout: float = QUERY_TIMEOUT, node: str = ""
    ) -> None:
        self.dsn = dsn
        self.node = node
        self.timeout = timeout
        self._pool = _pool(dsn, pool_size, timeout)
        self.find_slots = max(1, pool_size // 2)
        self._finding = threading.BoundedSemaphore(self.find_slots)
        try:
            self._pool.open(wait=True, timeout=timeout)
            self.migrate()
        except Exception as exc:
            self._pool.close()
            if isinstance(exc, IndexUnavailable):
                raise
            raise IndexUnavailable(f"PostgreSQL index {self.describe_backend()}: {exc}") from exc

    def describe_backend(self) -> str:
        """The server and database, without the password."""
        with contextlib.suppress(Exception):
            from psycopg.conninfo import conninfo_to_dict

            info = conninfo_to_dict(self.dsn)
            return f"PostgreSQL {info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        return "PostgreSQL"

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        with self._pool.connection() as connection:
            yield connection

    def migrate(self) -> int:
        """Bring the schema to this version's; the number of migrations applied now."""
        with self._connection() as db, db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            db.execute(
                "CREATE TABLE IF NOT EXISTS dicomtls_migrations "
                "(version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())"
            )
            row = db.execute("SELECT COALESCE(MAX(version), 0) FROM dicomtls_migrations").fetchone()
            current = int(row[0])
            if current > len(MIGRATIONS):
                raise IndexUnavailable(
                    f"the index schema is at version {current}, newer than this node knows "
                    f"({len(MIGRATIONS)}): upgrade the node",
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                db.execute(MIGRATIONS[version - 1])
                db.execute("INSERT INTO dicomtls_migrations (version) VALUES (%s)", (version,))
            return len(MIGRATIONS) - current

    def close(self) -> None:
        self._pool.close()

    def check(self) -> None:
        """Raise if the index cannot answer (the node's health check)."""
        with self._connection() as db:
            db.execute("SELECT 1").fetchone()

    # -- writing ------------------------------------------------------------------------

    def intend(self, path: Path | str) -> None:
        """Name an object about to be uploaded: until indexed it counts as a possible orphan."""
        with self._connection() as db:
            db.execute(
                "INSERT INTO pending_objects (path, node) VALUES (%s, %s)", (str(path), self.node)
            )

    def forget(self, path: Path | str) -> None:
        """An intended object that was never uploaded, or was removed again."""
        with self._connection() as db:
            db.execute("DELETE FROM pending_objects WHERE path = %s", (str(path),))

    def add(
        self,
        path: Path,
        attributes: Mapping[str, str],
        transfer_syntax: str = "",
        *,
        size: int | None = None,
        sha256: str | None = None,
        settles: bool = False,
    ) -> str:
        """Index (or re-index) one stored object: ``added``, ``replaced``.

        ``settles``: ``path`` was named by :meth:`intend`, and that row goes in the same
        transaction. Raises :class:`ObjectReaped` if the janitor took it first, and
        :class:`SameUidAnotherObject` if the UID belongs to another object already.
        """
        values = [attributes.get(column, "").strip() for column in INDEXED_KEYWORDS]
        if size is None:
            try:
                size = path.stat().st_size
            except OSError:
                size = 0
        with self._connection() as db:
            row = db.execute(
                "SELECT dicomtls_add(%s, %s, %s, %s, %s, %s)",
                (values, transfer_syntax, str(path), size, sha256, settles),
            ).fetchone()
        outcome = str(row[0])
        if outcome == "reaped":
            raise ObjectReaped(f"{path}: the janitor removed the upload before it was indexed")
        if outcome == "another":
            raise SameUidAnotherObject(
                f"{attributes.get('SOPInstanceUID', '?')}: an object of another series or "
                "SOP class holds this SOP Instance UID in the index"
            )
        return outcome

    def rebuild(self, files: Iterable[Path]) -> tuple[int, int]:
        """Index every object of ``files`` again (the objects are the truth); (indexed,
        skipped): see :func:`~dicomtls.node.index.index_files`."""
        return index_files(files, self.add)

    # -- reading ------------------------------------------------------------------------

    def count(self) -> int:
        with self._connection() as db:
            return int(db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])

    def identity(self, sop_instance_uid: str, keywords: Sequence[str]) -> dict[str, str] | None:
        """What the index holds of one stored instance (keyword -> text), or None if none.

        Its patient, study and series as that object named them (``claimed``), which may
        differ from its study's row when objects disagree: a re-send is judged against itself.
        """
        columns = ", ".join(
            _CLAIMED.get(keyword, _BY_KEYWORD[keyword].column) for keyword in keywords
        )
        with self._connection() as db:
            row = db.execute(
                f"SELECT {columns} FROM flat WHERE sop_instance_uid = %s", (sop_instance_uid,)
            ).fetchone()
        return None if row is None else {k: v or "" for k, v in zip(keywords, row, strict=True)}

    def stored(self, sop_instance_uid: str) -> tuple[str, int, str | None] | None:
        """(path, size, SHA-256) of an indexed instance, or None."""
        with self._connection() as db:
            row = db.execute(
                "SELECT path, size, sha256 FROM instances WHERE sop_instance_uid = %s",
                (sop_instance_uid,),
            ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]), row[2])

    @contextlib.contextmanager
    def _limited(self, status: int) -> Iterator[None]:
        """A query the statement timeout cut off is refused as out of resources (``status``),
        in one line, as SQLite's is (:func:`~dicomtls.node.index.over_time_limit`)."""
        try:
            yield
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != _QUERY_CANCELED:
                raise
            raise over_time_limit(self.timeout, status) from None

    def find(self, identifier: Dataset, model: QueryModel) -> Iterator[Dataset]:
        """C-FIND, as :meth:`dicomtls.node.index.Index.find` answers it: :class:`QueryError`
        at once for an identifier a baseline C-FIND does not allow, then the matches as the
        peer reads them (:meth:`_streamed`)."""
        query = find_query(identifier, model, POSTGRESQL)
        return query.matches(self._streamed(query.sql, query.args, Status.OUT_OF_RESOURCES))

    def _streamed(
        self, sql: str, args: Sequence[object], status: int
    ) -> Iterator[Sequence[object]]:
        """A query's rows from a server-side cursor, :data:`FIND_BATCH` at a time.

        A ``*`` C-FIND of a large archive matches millions of rows: read at once they took
        gigabytes of the node's memory. The cursor lives in a transaction on a pooled
        connection held until the rows end, fail or are abandoned (closed, or collected):
        then the transaction ends (rolled back unless finished) and the connection goes
        back. Nothing is taken before the first row is asked for, so an unstarted generator
        holds nothing. Each FETCH is a statement under the statement timeout (``status`` if
        cut off). A C-FIND over :attr:`find_slots` is refused ``status`` at once: waiting for
        a slot would hold one of the node's few worker threads for as long as a peer stalls.
        """
        if not self._finding.acquire(blocking=False):
            raise QueryError(
                f"{self.find_slots} C-FINDs are reading the index already "
                "(half its connections; the rest are kept for storing)",
                status,
            )
        try:
            with (
                self._limited(status),
                self._connection() as db,
                db.cursor(name="dicomtls_find") as cursor,
                db.transaction(),  # ends before the cursor's close: its end closes the cursor
            ):
                cursor.execute(sql, args)
                while rows := cursor.fetchmany(FIND_BATCH):
                    yield from rows
        finally:
            self._finding.release()

    def files(self, identifier: Dataset, model: QueryModel) -> list[Path]:
        """C-MOVE/C-GET: where every selected instance is stored (its store reads it)."""
        sql, args = retrieve_query(identifier, model, POSTGRESQL)
        with self._limited(Status.OUT_OF_RESOURCES_NUMBER_OF_MATCHES), self._connection() as db:
            return [Path(row[0]) for row in db.execute(sql, args)]

    def describe(
        self, *, paths: Iterable[Path] = (), sop_instance_uids: Iterable[str] = ()
    ) -> list[InstanceFacts]:
        """What the audit trail says of stored instances: study, SOP class, patient."""
        sql = "SELECT study_uid, sop_class_uid, patient_id, patient_name FROM flat WHERE "
        facts: list[InstanceFacts] = []
        with self._connection() as db:
            for column, values in (
                ("path", [str(p) for p in paths]),
                ("sop_instance_uid", list(sop_instance_uids)),
            ):
                if values:
                    rows = db.execute(sql + f"{column} = ANY(%s)", (values,))
                    facts.extend(InstanceFacts(*row) for row in rows)
        return facts
