"""The PostgreSQL index's C-FIND streams: a ``*`` query of a large archive holds a batch of
rows in the node, not every match, and gives its connection back however it ends.

Against a real PostgreSQL (tests/servers.py) holding 20,000 studies, filled by SQL: through
:meth:`PostgresIndex.add` they would take most of the suite's time, and the C-FIND reads
the same tables either way.
"""

from __future__ import annotations

import gc
import itertools
import tracemalloc
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from pydicom.dataset import Dataset

from dicomtls.dimse.status import Status
from dicomtls.net.qr_scu import QueryModel
from dicomtls.node.index import QueryError, find_query
from dicomtls.node.index_pg import FIND_BATCH, POSTGRESQL, PostgresIndex

from ..servers import PostgresServer, postgres  # noqa: F401  (a real PostgreSQL, once per session)

STUDIES = 20_000
CT = "1.2.840.10008.5.1.4.1.1.2"

_FILL = f"""
INSERT INTO patients (patient_id, patient_name) VALUES ('P1', 'Many^Studies');
INSERT INTO studies (study_uid, patient_pk, study_date, study_description)
    SELECT '1.2.826.0.1.3680043.10.7.' || n, (SELECT pk FROM patients), '20240101',
           'a study description of some length, as archives hold them'
    FROM generate_series(1, {STUDIES}) AS n;
INSERT INTO series (series_uid, study_pk, modality) SELECT study_uid || '.1', pk, 'CT' FROM studies;
INSERT INTO instances (sop_instance_uid, series_pk, sop_class_uid, path)
    SELECT series_uid || '.1', pk, '{CT}', '/nowhere/' || pk FROM series;
"""


@pytest.fixture(scope="module")
def archive(postgres: PostgresServer) -> str:  # noqa: F811
    """A database of 20,000 studies, one instance each; its DSN."""
    dsn = postgres.new_database()
    PostgresIndex(dsn, pool_size=1).close()  # its schema
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(_FILL)
    return dsn


@pytest.fixture
def index(archive: str) -> Iterator[PostgresIndex]:
    index = PostgresIndex(archive, pool_size=4)
    yield index
    index.close()


def _every_study() -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = query.PatientID = query.PatientName = ""
    query.StudyDate = query.StudyDescription = ""
    return query


def _peak(work: Callable[[], object]) -> int:
    """The most Python memory allocated at once while ``work()`` ran."""
    gc.collect()
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _close(found: Iterator[Dataset]) -> None:
    """What the dispatcher's end of a C-FIND does to its matches (a generator)."""
    assert isinstance(found, Generator)
    found.close()


def _sessions_in_transaction(dsn: str) -> int:
    """The index's sessions the server sees inside a transaction (a C-FIND's cursor open)."""
    with psycopg.connect(dsn, autocommit=True) as db:
        row = db.execute(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'idle in transaction'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_c_find_of_every_study_holds_a_batch_not_every_match(
    index: PostgresIndex, archive: str
) -> None:
    query = find_query(_every_study(), QueryModel.STUDY_ROOT, POSTGRESQL)
    with psycopg.connect(archive) as db:  # what the C-FIND did before: every row at once
        everything = _peak(lambda: db.execute(query.sql, query.args).fetchall())
    finding: list[Iterator[Dataset]] = []
    first: list[Dataset] = []

    def first_matches() -> None:  # a C-FIND as the dispatcher starts it: the call, then reads
        finding.append(index.find(_every_study(), QueryModel.STUDY_ROOT))
        first.extend(itertools.islice(finding[0], 10))

    streamed = _peak(first_matches)
    print(f"peak while reading the first matches: {streamed:,} B; every row: {everything:,} B")
    assert [str(m.StudyInstanceUID) for m in first][:2] == [
        "1.2.826.0.1.3680043.10.7.1",
        "1.2.826.0.1.3680043.10.7.2",
    ]
    # a batch is 1/20 of the matches: a fraction of fetchall's peak, whatever the count
    assert STUDIES // FIND_BATCH >= 20
    assert streamed * 5 < everything
    assert sum(1 for _ in finding[0]) == STUDIES - 10  # and every match still comes


def test_a_closed_or_abandoned_c_find_gives_its_connection_back(
    index: PostgresIndex, archive: str
) -> None:
    with ThreadPoolExecutor(2) as threads:  # the dispatcher reads on any worker thread
        found = index.find(_every_study(), QueryModel.STUDY_ROOT)
        threads.submit(next, found).result()
        next(found)
        assert _sessions_in_transaction(archive) == 1  # the cursor, held between reads
        threads.submit(_close, found).result()  # a C-CANCEL, an aborted association
    assert _sessions_in_transaction(archive) == 0
    abandoned = index.find(_every_study(), QueryModel.STUDY_ROOT)
    next(abandoned)
    del abandoned  # collected: the same
    assert _sessions_in_transaction(archive) == 0
    stats = index._pool.get_stats()
    assert stats["pool_available"] == stats["pool_size"]  # every connection back in the pool


def test_c_finds_take_half_the_connections_and_storing_keeps_the_rest(
    index: PostgresIndex, tmp_path: Path
) -> None:
    assert index.find_slots == 2  # of 4
    reading = [index.find(_every_study(), QueryModel.STUDY_ROOT) for _ in range(2)]
    for found in reading:
        next(found)  # two peers that read a match, then stall
    with pytest.raises(QueryError, match="reading the index already") as refused:
        next(index.find(_every_study(), QueryModel.STUDY_ROOT))
    assert refused.value.status == Status.OUT_OF_RESOURCES
    attributes = {
        "PatientID": "P2",
        "StudyInstanceUID": "1.2.826.0.1.3680043.10.8.1",
        "SeriesInstanceUID": "1.2.826.0.1.3680043.10.8.1.1",
        "SOPInstanceUID": "1.2.826.0.1.3680043.10.8.1.1.1",
        "SOPClassUID": CT,
    }
    try:  # a C-STORE still indexes while they hold their half
        assert index.add(tmp_path / "new.dcm", attributes, size=1) == "added"
        _close(reading.pop())
        assert next(index.find(_every_study(), QueryModel.STUDY_ROOT)).StudyInstanceUID
    finally:
        with psycopg.connect(index.dsn, autocommit=True) as db:
            db.execute(
                "DELETE FROM instances WHERE sop_instance_uid = %s", (attributes["SOPInstanceUID"],)
            )
        for found in reading:
            _close(found)
