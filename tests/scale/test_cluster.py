"""Issue 16's "done when": nodes behind HAProxy, one killed with SIGKILL halfway, nothing lost.

On one machine: PostgreSQL, SeaweedFS (fsync on), HAProxy and 3 ``dicomtls serve``
processes. 4 senders store distinct objects through HAProxy with ``store_many``, each
keeping a journal of what got Success; when every sender is halfway through its objects, on
an association still open and sending, one node is killed with SIGKILL and started again.
Afterwards:

- every acknowledged object has an index row and an S3 object with the same SHA-256, whose
  data set is the one sent (lost acknowledged objects: 0);
- after the janitor (``dicomtls janitor``) no object in the bucket lacks an index row, and no
  intent is left;
- a C-MOVE through node A returns objects that node B stored;
- the audit records name the senders' address, never HAProxy's.

The same suite runs on the embedded default (one node, SQLite and its folder): the kill, the
journals and the checks are the same, except those that need two nodes or a bucket.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from lxml import etree
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomtls.dimse.part10 import read_header
from dicomtls.errors import DicomTLSError
from dicomtls.net.qr_scu import QueryModel, RetrieveResult
from dicomtls.node.index import Index
from dicomtls.node.index_pg import PostgresIndex
from dicomtls.node.objects_s3 import S3ObjectStore, parse_s3_url
from dicomtls.node.s3 import Credentials

from ..node.site import Site, connect_to, make_site
from ..servers import S3_ACCESS_KEY, S3_SECRET_KEY, PostgresServer, SeaweedServer
from .cluster import EXE, PROXY_SOURCE, Cluster, NodeProcess, start_cluster, start_viewer
from .test_backends import data_set_digest

CT = "1.2.840.10008.5.1.4.1.1.2"
SENDERS = 4
PER_SENDER = 40
STUDIES = 8


def _objects(folder: Path) -> list[Path]:
    """Distinct objects in STUDIES studies, interleaved so every sender feeds several."""
    folder.mkdir()
    studies = [generate_uid() for _ in range(STUDIES)]
    series = [generate_uid() for _ in range(STUDIES)]
    files = []
    for n in range(SENDERS * PER_SENDER):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = CT, generate_uid()
        ds.PatientID, ds.PatientName = f"P{n % 3}", f"Patient^{n % 3}"
        ds.StudyInstanceUID = studies[n % STUDIES]
        ds.SeriesInstanceUID = series[n % STUDIES]
        ds.Modality, ds.InstanceNumber = "CT", str(n)
        ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = 64, 256, 8, 1
        ds.PixelData = random.Random(n).randbytes(64 * 256)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


@dataclass
class Halfway:
    """Where the kill waits for the senders: every one halfway through its objects on an open
    association (the barrier), then every one sending again (``sending``), so SIGKILL always
    cuts associations with objects in flight. Waiting on progress rather than on a count of
    acknowledgements matters: the first writes to a new bucket can stall one node for
    seconds while another finishes its senders, and a kill then found nothing to cut."""

    barrier: asyncio.Barrier
    sending: asyncio.Event
    resumed: int = 0

    async def reached(self) -> None:
        await self.barrier.wait()
        await self.sending.wait()


@dataclass
class Sender:
    """One modality: sends its objects through HAProxy until each got Success, reconnecting
    when its association dies; every Success goes to its journal at once."""

    name: str
    files: list[Path]
    journal: Path
    acknowledged: set[str]
    failures: int = 0

    async def run(self, site: Site, port: int, halfway: Halfway) -> None:
        todo = list(self.files)
        waited = False
        with self.journal.open("a") as journal:
            for _attempt in range(200):
                if not todo:
                    return
                try:
                    async with await connect_to(site, port, "ct1", self.name, "PACS") as assoc:
                        # a copy: todo shrinks as answers come, and a list that changes
                        # under its iterator skips every other object
                        async for path, status in assoc.store_many(list(todo)):
                            if status == 0:
                                uid = read_header(path).sop_instance_uid
                                journal.write(uid + "\n")
                                journal.flush()
                                self.acknowledged.add(uid)
                                todo.remove(path)
                            if not waited and len(todo) <= len(self.files) // 2:
                                waited = True
                                await halfway.barrier.wait()  # the association stays open
                            elif waited and halfway.resumed < SENDERS and status == 0:
                                halfway.resumed += 1  # one more Success: sending again
                                if halfway.resumed == SENDERS:
                                    halfway.sending.set()
                except (DicomTLSError, OSError, ConnectionError):
                    self.failures += 1  # the node died under us, or HAProxy had nowhere to go yet
                    await asyncio.sleep(0.2)
            raise AssertionError(f"{self.name}: {len(todo)} objects never acknowledged")


async def _send_and_kill(
    site: Site, cluster: Cluster, files: list[Path], folder: Path
) -> tuple[list[Sender], NodeProcess]:
    """With every sender halfway and sending, SIGKILL the node holding the most associations
    (HAProxy chose where they went; 4 on at most 3 nodes, so at least 2 are cut); start it
    again and let the senders finish."""
    senders = [
        Sender(f"MOD{n}", files[n::SENDERS], folder / f"journal-{n}.txt", set())
        for n in range(SENDERS)
    ]
    halfway = Halfway(asyncio.Barrier(SENDERS + 1), asyncio.Event())
    tasks = [asyncio.create_task(s.run(site, cluster.port, halfway)) for s in senders]
    reached = asyncio.create_task(halfway.reached())
    await asyncio.wait([reached, *tasks], return_when=asyncio.FIRST_COMPLETED)
    if not reached.done():  # a sender gave up before halfway: its error, not a hang
        reached.cancel()
        await asyncio.gather(*tasks)
    victim = max(cluster.nodes, key=NodeProcess.connections)
    victim.kill()  # SIGKILL halfway, associations and uploads in flight
    await asyncio.to_thread(victim.start)
    await asyncio.gather(*tasks)
    return senders, victim


def _journals(folder: Path) -> set[str]:
    """What the senders wrote down as acknowledged (the files, not memory)."""
    return {uid for path in folder.glob("journal-*.txt") for uid in path.read_text().split()}


def _audit_sources(nodes: list[NodeProcess]) -> Counter[str]:
    """The requestors' addresses in every DICOM Instances Transferred record of a C-STORE
    (action C: the sender is the requestor)."""
    found: Counter[str] = Counter()
    for node in nodes:
        for line in (node.folder / "audit.log").read_text().splitlines():
            record = etree.fromstring(line)
            event = record.find("EventIdentification")
            assert event is not None
            if (
                event.find("EventID").get("csd-code") != "110104"
                or event.get("EventActionCode") != "C"
            ):
                continue
            for participant in record.iter("ActiveParticipant"):
                if participant.get("UserIsRequestor") == "true":
                    found[str(participant.get("NetworkAccessPointID"))] += 1
    return found


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> tuple[Site, list[Path]]:
    folder = tmp_path_factory.mktemp("cluster-objects")
    return make_site(folder / "pki"), _objects(folder / "objects")


def test_three_nodes_one_killed_nothing_acknowledged_is_lost(
    objects: tuple[Site, list[Path]],
    tmp_path: Path,
    postgres: PostgresServer,
    seaweedfs: SeaweedServer,
) -> None:
    site, files = objects
    dsn, bucket = postgres.new_database(), seaweedfs.new_bucket()
    url = seaweedfs.url(bucket)
    viewer = start_viewer(site, tmp_path / "viewer")
    cluster = start_cluster(
        site,
        tmp_path,
        3,
        "--index",
        dsn,
        "--objects",
        url,
        "--move-destination",
        f"VIEWER=127.0.0.1:{viewer.port}",
        env=seaweedfs.environment(),
    )
    try:
        senders, b = asyncio.run(_send_and_kill(site, cluster, files, tmp_path))
        a = next(n for n in cluster.nodes if n is not b)
        acknowledged = _journals(tmp_path)
        assert acknowledged == set().union(*(s.acknowledged for s in senders))
        assert len(acknowledged) == len(files)  # every object got Success in the end
        assert sum(s.failures for s in senders) >= 1  # the kill did cut associations

        index = PostgresIndex(dsn)
        store = S3ObjectStore(
            parse_s3_url(url),
            index,
            tmp_path / "check-spool",
            credentials=Credentials(S3_ACCESS_KEY, S3_SECRET_KEY),
        )
        try:
            sent = {read_header(f).sop_instance_uid: f for f in files}
            lost = []
            by_node: Counter[str] = Counter()
            for uid in acknowledged:
                row = index.stored(uid)
                if row is None:
                    lost.append(uid)
                    continue
                key, size, sha256 = row
                body = store.client.get(bucket, key, 0, size)[0]
                assert hashlib.sha256(body).hexdigest() == sha256 and len(body) == size, uid
                assert data_set_digest(store.locate(Path(key))) == data_set_digest(sent[uid]), uid
                by_node[key.rsplit("/", 1)[1].split("-")[-2]] += 1  # the storing node's PID
            assert lost == []  # lost acknowledged objects: 0
            assert len(by_node) >= 2, by_node  # more than one node stored objects

            # The janitor, as an operator runs it; then no orphans and no intents.
            done = subprocess.run(
                [EXE, "janitor", "--index", dsn, "--objects", url, "--grace", "0"],
                capture_output=True,
                text=True,
                timeout=120,
                env={**os.environ, **seaweedfs.environment()},
            )
            assert done.returncode == 0, done.stderr
            keys = {key for key, _ in store.client.list(bucket)}
            with index._connection() as db:
                named = {r[0] for r in db.execute("SELECT path FROM instances")}
                intents = db.execute("SELECT count(*) FROM pending_objects").fetchone()[0]
            assert keys == named and intents == 0
            assert index.count() == len(files)

            # C-MOVE through node A of a study, with objects node B stored.
            study_of_b = _a_study_stored_by(index, files, {str(pid) for pid in b.pids})
            moved = asyncio.run(_move_via(site, cluster.via[a.name], study_of_b))
            assert moved.completed >= 1 and moved.failed == 0
            received = {
                data_set_digest(p) for p in (viewer.folder / "store" / "objects").glob("*/*.dcm")
            }
            assert received == {data_set_digest(f) for f in files if _study(f) == study_of_b}
        finally:
            store.close()
            index.close()
    finally:
        cluster.stop()
        viewer.stop()
    sources = _audit_sources(cluster.nodes)
    assert set(sources) == {"127.0.0.1"} and sum(sources.values()) >= 1, (
        sources
    )  # never PROXY_SOURCE
    logged = "".join(n.output() for n in cluster.nodes)
    assert f"{PROXY_SOURCE}:" not in logged  # no line takes the balancer for a peer


def test_the_embedded_default_loses_nothing_either(
    objects: tuple[Site, list[Path]], tmp_path: Path
) -> None:
    """SQLite and the store folder, one node behind the same HAProxy, the same kill."""
    site, files = objects
    cluster = start_cluster(site, tmp_path, 1)
    (node,) = cluster.nodes
    try:
        senders, _ = asyncio.run(_send_and_kill(site, cluster, files, tmp_path))
    finally:
        cluster.stop()
    acknowledged = _journals(tmp_path)
    assert len(acknowledged) == len(files) and sum(s.failures for s in senders) >= 1
    index = Index(node.folder / "store" / "index.sqlite")
    try:
        sent = {read_header(f).sop_instance_uid: f for f in files}
        on_disk = sorted((node.folder / "store" / "objects").glob("*/*.dcm"))
        assert index.count() == len(on_disk) == len(files)
        for path in on_disk:
            uid = read_header(path).sop_instance_uid
            assert uid in acknowledged and data_set_digest(path) == data_set_digest(sent[uid])
            assert index.identity(uid, ["SOPInstanceUID"]) == {"SOPInstanceUID": uid}
    finally:
        index.close()
    assert not [p for p in (node.folder / "store" / ".incoming").iterdir()]  # nothing half-written
    sources = _audit_sources(cluster.nodes)
    assert set(sources) == {"127.0.0.1"}, sources


# -- helpers ----------------------------------------------------------------------------------


def _study(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def _a_study_stored_by(index: PostgresIndex, files: list[Path], pids: set[str]) -> str:
    for path in files:
        row = index.stored(read_header(path).sop_instance_uid)
        assert row is not None
        if row[0].rsplit("/", 1)[1].split("-")[-2] in pids:
            return _study(path)
    raise AssertionError("node B stored nothing")


async def _move_via(site: Site, port: int, study: str) -> RetrieveResult:
    """C-MOVE ``study`` to VIEWER through the HAProxy listener of one node."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study
    async with await connect_to(site, port, "ct1", "WORKSTATION", "PACS") as assoc:
        return await assoc.move(identifier, "VIEWER", QueryModel.STUDY_ROOT)
