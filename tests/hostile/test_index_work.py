"""A C-FIND that makes the embedded SQLite index work hard, against a real ``dicomtls serve``.

A kept value may be 64 KiB long (longer is refused, issue 13), and a wildcard pattern 1,024
characters; matching one against the other costs SQLite about 60 ms a row. A peer allowed to
store and to query stores a hundred such objects, then asks for ``*AAAA...B``: seconds of
SQLite work. That work ran on the one connection the node also writes with, and the node
indexes a C-STORE on its event loop, so the next C-STORE from anyone froze the whole node
(no handshake, no C-ECHO) until the query ended. Queries now run on a connection of their
own: the node goes on serving while one runs.

A few such queries at once (one per worker thread of the event loop's default executor)
also held up every C-STORE of a durable node: its commits (the fsyncs) waited for a thread
of the same pool. The folder store now commits on threads of its own.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

from dicomtls.dimse.command import CommandField, Tag, number
from dicomtls.dimse.datasets import encode_dataset
from dicomtls.dimse.messages import c_find_rq
from dicomtls.dimse.status import Status
from dicomtls.net.association import Association, associate, default_proposals
from dicomtls.net.qr_scu import QueryModel
from dicomtls.node.index import Index, QueryError
from dicomtls.node.index_pg import PostgresIndex
from dicomtls.tls.settings import TLSSettings

from ..conftest import MatrixPKI
from ..node.test_storage import _make_file
from ..servers import PostgresServer, postgres  # noqa: F401  (session fixture)
from .conftest import AE, PATIENT, LiveNode, _timeouts, _tls_args, good_echo, start

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom.valuerep")
CT = UID("1.2.840.10008.5.1.4.1.1.2")
STUDY_ROOT = QueryModel.STUDY_ROOT
#: Objects whose PatientName is as long as a kept value may be, and the pattern that scans it.
HOSTILE_OBJECTS = 100
LONG_NAME = "A" * 65_000
PATTERN = "*" + "A" * 1022 + "B"


def _make(path: Path, name: str) -> Path:
    """A CT object of its own study, whose patient is called ``name``."""
    ds = _make_file(path, pixels=1000)
    ds.PatientName, ds.PatientID = name, "LONG"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.save_as(path, enforce_file_format=True)
    return path


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _until_busy(node: LiveNode, seconds: float, timeout: float = 30) -> None:
    """Wait until the node has spent ``seconds`` of CPU from now: the query is running (it
    has nothing else to do)."""
    start, deadline = _cpu_seconds(node.proc.pid), time.monotonic() + timeout
    while _cpu_seconds(node.proc.pid) - start < seconds:
        assert time.monotonic() < deadline, "the node never got busy with the query"
        await asyncio.sleep(0.05)  # polling the node's CPU time, the event waited for


async def _connect(port: int, tls: TLSSettings, calling: str, *classes: str) -> Association:
    return await associate(
        "127.0.0.1",
        port,
        tls,
        called_ae=AE,
        calling_ae=calling,
        proposals=default_proposals([CT, *classes]),
        dimse_timeout=60,
    )


async def _find_status(assoc: Association, identifier: Dataset) -> int:
    context = assoc.negotiated.context_for(STUDY_ROOT.find_uid)
    assert context is not None
    message_id = assoc.next_message_id()
    data = encode_dataset(identifier, context.transfer_syntax)
    await assoc.send_message(context.id, c_find_rq(message_id, STUDY_ROOT.find_uid), [data])
    while True:
        response = await assoc.response(CommandField.C_FIND_RSP, message_id)
        status = number(response.command, Tag.Status)
        if status != Status.PENDING:
            return status


async def _scenario(
    node: LiveNode, tls: TLSSettings, folder: Path, finders: int
) -> tuple[bool, list[int]]:
    """Whether a C-STORE and a new C-ECHO were served while ``finders`` hostile C-FINDs ran
    (none of them answered yet); their statuses."""
    folder.mkdir()
    long = [_make(folder / f"long{n}.dcm", LONG_NAME) for n in range(HOSTILE_OBJECTS)]
    async with await _connect(node.port, tls, "LOADER") as loader:
        assert [await loader.store(path) for path in long] == [Status.SUCCESS] * len(long)
    query = Dataset()
    query.QueryRetrieveLevel, query.StudyInstanceUID, query.PatientName = "STUDY", "", PATTERN
    associations = [
        await _connect(node.port, tls, f"FINDER{n}", STUDY_ROOT.find_uid) for n in range(finders)
    ]
    try:
        async with await _connect(node.port, tls, "STORER") as storer:
            found = [asyncio.create_task(_find_status(a, query)) for a in associations]
            await _until_busy(node, 0.5)
            stored = await storer.store(_make(folder / "next.dcm", "Next^Patient"))
            assert stored == Status.SUCCESS
            assert await good_echo(node.port, tls) == Status.SUCCESS
            served_meanwhile = not any(task.done() for task in found)
            return served_meanwhile, list(await asyncio.gather(*found))
    finally:
        for association in associations:
            await association.release()


@pytest.mark.parametrize(
    "finders",
    [1, min(32, (os.cpu_count() or 1) + 4)],  # one; as many as the default executor's threads
    ids=["one-query", "a-query-per-worker-thread"],
)
def test_c_finds_that_make_sqlite_work_do_not_hold_up_the_node(
    matrix_pki: MatrixPKI, client_tls: TLSSettings, tmp_path: Path, finders: int
) -> None:
    node = start(tmp_path, *_tls_args(matrix_pki), *_timeouts(PATIENT, PATIENT, PATIENT))
    try:
        served_meanwhile, statuses = asyncio.run(
            _scenario(node, client_tls, tmp_path / "sent", finders)
        )
    finally:
        node.stop()
    node.check_one_line_each()
    assert served_meanwhile, "the C-STORE and the C-ECHO waited for the C-FINDs to end"
    # each answered: no match, or (on a loaded machine) refused past the 10 s time limit
    assert set(statuses) <= {Status.SUCCESS, Status.OUT_OF_RESOURCES}, statuses


# -- the work one query may cost, on both backends --------------------------------------------


def _hostile_rows(index: Index | PostgresIndex, count: int) -> None:
    for n in range(count):
        study = f"1.2.826.0.1.3680043.10.9.{n}"
        attributes = {
            "PatientID": f"LONG{n}",  # a patient each: PostgreSQL holds a name per patient
            "PatientName": LONG_NAME,
            "StudyInstanceUID": study,
            "SeriesInstanceUID": f"{study}.1",
            "SOPInstanceUID": f"{study}.1.1",
            "SOPClassUID": CT,
        }
        index.add(Path(f"/nowhere/{n}.dcm"), attributes)


@pytest.fixture(params=["sqlite", "postgresql"])
def slow_index(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres: PostgresServer,  # noqa: F811
) -> Iterator[Index | PostgresIndex]:
    """An index that allows a query half a second, holding rows that cost ~60 ms each."""
    index: Index | PostgresIndex
    if request.param == "sqlite":
        index = Index(tmp_path / "index.sqlite", query_timeout=0.5)
    else:
        index = PostgresIndex(postgres.new_database(), timeout=0.5)
    try:
        _hostile_rows(index, 80)  # about 5 s of work
        yield index
    finally:
        index.close()


def test_a_query_past_the_index_time_limit_is_refused_out_of_resources(
    slow_index: Index | PostgresIndex,
) -> None:
    query = Dataset()
    query.QueryRetrieveLevel, query.StudyInstanceUID, query.PatientName = "STUDY", "", PATTERN
    started = time.monotonic()
    with pytest.raises(QueryError, match="time limit") as refused:
        list(slow_index.find(query, STUDY_ROOT))
    assert refused.value.status == Status.OUT_OF_RESOURCES
    assert time.monotonic() - started < 2.5  # cut off near its limit, not run to the end
    query.PatientName = "*"
    assert [str(m.StudyInstanceUID) for m in slow_index.find(query, STUDY_ROOT)][:1] == [
        "1.2.826.0.1.3680043.10.9.0"
    ]  # the index still answers
