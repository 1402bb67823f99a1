"""kill -9 under load: what the clients were told is stored survives, and nothing else half-exists.

The rule, after ``SIGKILL`` of a node receiving from several clients at once, then a restart:

* objects on disk ⊇ objects the clients saw Success for (lost = 0);
* every object on disk is one that was sent, complete, byte for byte as sent, and indexed
  (an object committed whose Success the kill swallowed may be there: that is allowed);
* nothing partial: ``.incoming/`` is empty after recovery, which says what it removed;
* the index names no file that is not there, and C-FIND finds exactly what is indexed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomtls.node.storage import DurableStore

from .helpers import (
    SUCCESS,
    SentObject,
    Serve,
    assert_intact,
    connect,
    indexed,
    leftovers,
    make_object,
    on_disk,
    partial_objects,
    series_uid,
    serving,
)

CLIENTS = 5
OBJECTS = 50
KILL_AFTER = 12  # Success responses seen before the kill is armed
MiB = 1 << 20


def _objects(folder: Path, study_uid: str) -> list[SentObject]:
    folder.mkdir()
    sizes = [200_000 + (i * 7919 * 1000) % (3 * MiB) for i in range(OBJECTS)]  # 0.2 to 3.2 MB
    return [make_object(folder / f"{i:02}.dcm", size, study_uid, i) for i, size in enumerate(sizes)]


class Load:
    """CLIENTS associations storing their share of the objects; kills the node mid-transfer."""

    def __init__(self, node: Serve, store: Path) -> None:
        self.node, self.store = node, store
        self.status: dict[str, int | str] = {}  # uid -> status, or why no status came
        self.started: set[str] = set()
        self.in_flight: set[str] = set()
        self.successes = 0
        self.armed = asyncio.Event()
        self.in_flight_at_kill: set[str] = set()
        self.successes_at_kill = 0

    async def client(self, share: list[SentObject]) -> None:
        try:
            assoc = await connect(self.node, self.store)
        except Exception as exc:
            for sent in share:
                self.status[sent.uid] = f"no association: {exc!r}"
            return
        for sent in share:
            self.started.add(sent.uid)
            self.in_flight.add(sent.uid)
            try:
                status = await assoc.store(sent.path)
            except Exception as exc:  # the node died under this transfer
                self.status[sent.uid] = f"connection lost: {type(exc).__name__}"
                return
            finally:
                self.in_flight.discard(sent.uid)
            self.status[sent.uid] = status
            if status == SUCCESS:
                self.successes += 1
                if self.successes >= KILL_AFTER:
                    self.armed.set()
        await assoc.release()

    async def killer(self) -> None:
        """After KILL_AFTER Successes, SIGKILL as soon as the node is writing a partial object."""
        await self.armed.wait()
        deadline = time.monotonic() + 20
        while not partial_objects(self.store):
            assert time.monotonic() < deadline, "no object was being received: nothing to kill"
            await asyncio.sleep(0.001)  # let the transfers run; the condition is the observable
        os.kill(self.node.proc.pid, signal.SIGKILL)
        self.in_flight_at_kill = set(self.in_flight)
        self.successes_at_kill = self.successes

    async def run(self, objects: list[SentObject]) -> None:
        shares = [objects[i::CLIENTS] for i in range(CLIENTS)]
        killer = asyncio.create_task(self.killer())
        await asyncio.wait_for(asyncio.gather(*(self.client(s) for s in shares)), 90)
        if not killer.done():  # every object went through before the kill: the test is void
            killer.cancel()
            raise AssertionError(f"all {len(self.status)} objects stored before the kill")
        killer.result()


async def _find_images(node: Serve, store: Path, study_uid: str) -> tuple[int, set[str]]:
    assoc = await connect(node, store)
    try:
        echo = await assoc.echo()
        query = Dataset()
        query.QueryRetrieveLevel, query.StudyInstanceUID, query.SOPInstanceUID = (
            "IMAGE",
            study_uid,
            "",
        )
        query.SeriesInstanceUID = series_uid(study_uid)
        found = [str(match.SOPInstanceUID) async for match in assoc.find(query)]
    finally:
        await assoc.release()
    assert len(found) == len(set(found)), "C-FIND returned an instance twice"
    return echo, set(found)


def test_kill_9_while_clients_store(tmp_path: Path) -> None:
    store = tmp_path / "dicom-store"
    study_uid = generate_uid()
    objects = _objects(tmp_path / "sent", study_uid)
    by_uid = {o.uid: o for o in objects}

    node = Serve(tmp_path)  # creates the store and its PKI, as on a fresh machine
    load = Load(node, store)
    try:
        asyncio.run(load.run(objects))
    finally:
        node.kill()
    assert node.proc.returncode == -signal.SIGKILL

    succeeded = {uid for uid, status in load.status.items() if status == SUCCESS}
    failed = {uid: s for uid, s in load.status.items() if s != SUCCESS and isinstance(s, int)}
    assert failed == {}, f"the node refused objects under load: {failed}"
    partial_at_kill = partial_objects(store)
    # committed (linked into place) but maybe not indexed when the kill came: the restart
    # must index them
    caught_committing = {
        p.name.partition(".dcm.")[0]
        for p in (store / ".incoming").glob("*.dcm.*.part")
        if p.stat().st_nlink > 1
    }
    assert load.in_flight_at_kill, "the kill came while no transfer was in flight"
    assert partial_at_kill, "the kill left no partial object: it did not hit a transfer"

    with serving(tmp_path) as again:  # same store
        recovered = again.wait_for("partial object(s)")
        assert f"removed {len(partial_at_kill)} partial object(s)" in recovered
        assert leftovers(store) == [], "recovery left something in .incoming/"
        if caught_committing:
            assert f"indexed {len(caught_committing)} object(s) stored just before" in again.output

        files = on_disk(store)
        index = indexed(store, tmp_path)
        lost = succeeded - files.keys()
        print(
            f"\nkill -9: {len(objects)} objects, {CLIENTS} clients; {load.successes_at_kill} "
            f"Success before the kill, {len(succeeded)} in all; {len(load.in_flight_at_kill)} in "
            f"flight, {len(partial_at_kill)} partial file(s) removed at restart, "
            f"{len(caught_committing)} caught between commit and index; "
            f"{len(files)} on disk, {len(index)} indexed; lost {len(lost)}"
        )
        assert lost == set(), f"{len(lost)} object(s) acknowledged with Success are gone"
        assert files.keys() <= load.started, "an object that was never sent is in the store"
        for uid in files:  # the acknowledged ones and any committed whose Success was lost
            assert_intact(store, by_uid[uid])
        assert index.keys() == files.keys(), "index and files disagree"
        for uid, path in index.items():
            assert path == DurableStore(store).path_for(uid) and path.is_file()
        never_acknowledged = files.keys() - succeeded
        assert never_acknowledged <= load.in_flight_at_kill | {
            uid for uid, s in load.status.items() if s != SUCCESS
        }

        echo, found = asyncio.run(_find_images(again, store, study_uid))
        assert echo == SUCCESS
        assert found == index.keys()
    assert again.proc.returncode == 0, again.output
    assert pydicom.dcmread(files[next(iter(succeeded))]).StudyInstanceUID == study_uid
