"""Objects in S3 with intents in PostgreSQL: what a crash leaves, and the janitor that cleans it.

Real PostgreSQL, real SeaweedFS. A "crash" here is an upload whose node never wrote its
index row (the SIGKILL itself is in test_cluster.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dicomtls.dimse.status import Status
from dicomtls.node.index_pg import JANITOR_LOCK, ObjectReaped, PostgresIndex, SameUidAnotherObject
from dicomtls.node.janitor import Janitor
from dicomtls.node.objects_s3 import S3ObjectPath, S3ObjectStore, parse_s3_url
from dicomtls.node.s3 import Credentials
from dicomtls.node.storage import FileMeta

from ..node.site import connect_as, make_site, running
from ..node.test_storage import _make_file
from ..servers import S3_ACCESS_KEY, S3_SECRET_KEY, PostgresServer, SeaweedServer, free_port

CT = "1.2.840.10008.5.1.4.1.1.2"
ATTRIBUTES = {
    "PatientID": "P1",
    "StudyInstanceUID": "1.2.3",
    "SeriesInstanceUID": "1.2.3.4",
    "SOPClassUID": CT,
}


@pytest.fixture
def backends(
    postgres: PostgresServer, seaweedfs: SeaweedServer, tmp_path: Path
) -> Iterator[tuple[PostgresIndex, S3ObjectStore]]:
    index = PostgresIndex(postgres.new_database())
    store = S3ObjectStore(
        parse_s3_url(seaweedfs.url(seaweedfs.new_bucket())),
        index,
        tmp_path / "spool",
        credentials=Credentials(S3_ACCESS_KEY, S3_SECRET_KEY),
    )
    yield index, store
    store.close()
    index.close()


def _upload(store: S3ObjectStore, uid: str, body: bytes = b"\0" * 5000) -> S3ObjectPath:
    """An object uploaded (intent, PUT) but not indexed: a node killed right after its PUT."""
    incoming = store.begin(
        FileMeta(CT, uid, "1.2.840.10008.1.2.1", implementation_class_uid="1.2.3")
    )
    incoming.write(body)
    path = incoming.commit(index_pending=True).path
    assert isinstance(path, S3ObjectPath)
    return path


def _keys(store: S3ObjectStore) -> set[str]:
    return {key for key, _ in store.client.list(store.location.bucket)}


def _pending(index: PostgresIndex) -> list[tuple[str, bool]]:
    with index._connection() as db:
        return [(r[0], r[1]) for r in db.execute("SELECT path, doomed FROM pending_objects")]


def test_an_upload_no_row_names_is_removed_by_the_janitor(
    backends: tuple[PostgresIndex, S3ObjectStore],
) -> None:
    index, store = backends
    orphan = _upload(store, "1.2.3.4.1")
    kept = _upload(store, "1.2.3.4.2")
    index.add(
        kept,
        {**ATTRIBUTES, "SOPInstanceUID": "1.2.3.4.2"},
        size=kept.size,
        sha256=kept.sha256,
        settles=True,
    )
    assert _keys(store) == {str(orphan), str(kept)}
    assert _pending(index) == [(str(orphan), False)]
    janitor = Janitor(index, store)
    assert janitor.run() == janitor.run(grace=3600)  # within the grace: nothing happens
    swept = janitor.run(grace=0)
    assert swept is not None and (swept.removed, swept.failed) == (1, 0)
    assert _keys(store) == {str(kept)} and _pending(index) == []
    assert index.stored("1.2.3.4.2") == (str(kept), kept.size, kept.sha256)


def test_an_upload_the_janitor_took_is_never_indexed(
    backends: tuple[PostgresIndex, S3ObjectStore],
) -> None:
    """The race the grace period makes rare, settled by the row lock, not by time."""
    index, store = backends
    late = _upload(store, "1.2.3.4.3")
    with index._connection() as db:  # the janitor's first step: mark it doomed
        db.execute("UPDATE pending_objects SET doomed = true")
    with pytest.raises(ObjectReaped):
        index.add(
            late,
            {**ATTRIBUTES, "SOPInstanceUID": "1.2.3.4.3"},
            size=late.size,
            sha256=late.sha256,
            settles=True,
        )
    assert index.count() == 0
    swept = Janitor(index, store).run()  # doomed names are finished whatever their age
    assert swept is not None and swept.removed == 1 and _keys(store) == set()


def test_one_janitor_at_a_time(backends: tuple[PostgresIndex, S3ObjectStore]) -> None:
    index, store = backends
    _upload(store, "1.2.3.4.4")
    other = psycopg.connect(index.dsn, autocommit=True)
    try:
        row = other.execute("SELECT pg_try_advisory_lock(%s)", (JANITOR_LOCK,)).fetchone()
        assert row is not None and row[0]
        assert Janitor(index, store).run(grace=0) is None  # another node's turn
        assert len(_keys(store)) == 1
        # Released by a query that returns when it is done: the server frees a closed
        # session's locks only some time after close() has returned.
        other.execute("SELECT pg_advisory_unlock(%s)", (JANITOR_LOCK,))
    finally:
        other.close()
    swept = Janitor(index, store).run(grace=0)
    assert swept is not None and swept.removed == 1


def test_a_replaced_copy_is_the_janitors_and_the_new_one_stays(
    backends: tuple[PostgresIndex, S3ObjectStore],
) -> None:
    index, store = backends
    attributes = {**ATTRIBUTES, "SOPInstanceUID": "1.2.3.4.5"}
    first = _upload(store, "1.2.3.4.5")
    assert (
        index.add(first, attributes, size=first.size, sha256=first.sha256, settles=True) == "added"
    )
    again = _upload(store, "1.2.3.4.5", b"\1" * 5000)
    assert str(again) != str(first)  # a key per attempt: the copy on record is never overwritten
    assert (
        index.add(again, attributes, size=again.size, sha256=again.sha256, settles=True)
        == "replaced"
    )
    assert _pending(index) == [(str(first), False)]
    swept = Janitor(index, store).run(grace=0)
    assert swept is not None and swept.removed == 1
    assert _keys(store) == {str(again)}
    other = _upload(store, "1.2.3.4.5")
    with pytest.raises(SameUidAnotherObject):  # another series under the same UID
        index.add(
            other, {**attributes, "SeriesInstanceUID": "9.9"}, size=1, sha256="", settles=True
        )


def test_no_success_while_s3_cannot_be_reached(
    postgres: PostgresServer, tmp_path: Path, s3_credentials: None
) -> None:
    """The node answers Out of Resources and indexes nothing: never Success before S3's 200.
    The intent stays (its object could not be deleted either, S3 being away): the janitor's."""
    site = make_site(tmp_path / "pki")
    source = tmp_path / "ct.dcm"
    _make_file(source, pixels=10_000)
    dsn = postgres.new_database()
    nowhere = f"s3://dicom-nowhere?endpoint=http://127.0.0.1:{free_port()}"

    async def run() -> int:
        async with (
            running(site, tmp_path / "pacs", index=dsn, objects=nowhere) as pacs,
            await connect_as(site, pacs, "ct1", "CT1") as ct,
        ):
            return await ct.store(source)

    assert asyncio.run(run()) == Status.OUT_OF_RESOURCES
    index = PostgresIndex(dsn)
    with contextlib.closing(index):
        assert index.count() == 0
        (intent,) = _pending(index)
        assert intent[0].startswith("objects/") and not intent[1]


def test_an_object_whose_patient_differs_from_its_studys_is_judged_against_itself(
    postgres: PostgresServer,
) -> None:
    """The study row keeps its first object's patient; a re-send of the second object (another
    PatientID in the same study, as a misconfigured modality sends) is the same object again,
    not "another object under this UID" (found by the cluster test)."""
    index = PostgresIndex(postgres.new_database())
    with contextlib.closing(index):
        first = {**ATTRIBUTES, "SOPInstanceUID": "1.2.3.4.8"}
        other = {**ATTRIBUTES, "SOPInstanceUID": "1.2.3.4.9", "PatientID": "P2"}
        index.add(Path("/a"), first)
        index.add(Path("/b"), other)
        held = index.identity(
            "1.2.3.4.9", ["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID"]
        )
        assert held == {
            "PatientID": "P2",
            "StudyInstanceUID": "1.2.3",
            "SeriesInstanceUID": "1.2.3.4",
            "SOPClassUID": CT,
        }
        assert index.add(Path("/b2"), other) == "replaced"
