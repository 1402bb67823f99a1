"""The storage SCP's handler on a real store: writes behind the loop, a bounded backlog, and
nothing half-written kept, whatever the writer thread is doing when the association ends."""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from dicomtls.dimse.dataset_scan import DatasetScanner, ScannedDataset
from dicomtls.dimse.messages import c_store_rq
from dicomtls.dimse.part10 import iter_blocks, read_header
from dicomtls.dimse.status import Status
from dicomtls.net.association import Association
from dicomtls.net.hooks import StoreJob
from dicomtls.net.inbound import InboundObject
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import _MAX_BACKLOG, DurableStoreHandler

from .test_storage import CT
from .test_storage import _make_file as _make_test_file

MIB = 1 << 20


def _make_file(path: Path, pixels: int) -> Dataset:
    return _make_test_file(path, pixels, os.urandom(pixels))  # random: no two fragments alike


@dataclass
class _Peer:
    """What the handler reads of an association: who is calling, from where."""

    calling_ae: str = "SCU"
    peer: str = "127.0.0.1:1"


def _receiving(store: DurableStore) -> list[Path]:
    return list(store.incoming.iterdir())


def _fragments(path: Path, size: int) -> tuple[str, list[memoryview]]:
    header = read_header(path)
    return header.sop_instance_uid, list(iter_blocks(header, size))


def _begin(handler: DurableStoreHandler, uid: str) -> StoreJob:
    peer = cast(Association, _Peer())  # all the handler reads of one
    return handler.begin(peer, c_store_rq(1, CT, uid), ExplicitVRLittleEndian)


def _scanned(handler: DurableStoreHandler, fragments: list[memoryview]) -> ScannedDataset:
    """The data set as the SCP checked it before handing it to the handler's commit."""
    scanner = DatasetScanner(ExplicitVRLittleEndian, handler.keep_tags)
    for fragment in fragments:
        scanner.feed(fragment)
    return scanner.finish()


def test_large_fragments_are_written_behind_and_the_backlog_is_bounded(tmp_path: Path) -> None:
    source = tmp_path / "big.dcm"
    ds = _make_file(source, pixels=24 * MIB)
    uid, fragments = _fragments(source, 4 * MIB)
    stored: list[tuple[Path, dict[str, str], str]] = []
    handler = DurableStoreHandler(
        DurableStore(tmp_path / "store"),
        lambda *told: stored.append(told),
        keep=["PatientName", "SOPInstanceUID"],
    )

    async def run() -> tuple[list[int], int]:
        gate = threading.Event()
        handler.writer().submit(gate.wait)  # the disk is slow: nothing gets written yet
        job = _begin(handler, uid)
        waiting = {i: w for i, f in enumerate(fragments) if (w := job.write(f)) is not None}
        # with nothing written, every fragment past the backlog limit asks the reader to wait
        gate.set()
        for each in waiting.values():
            await each
        return list(waiting), await job.commit(_scanned(handler, fragments))

    waits, status = asyncio.run(run())
    first_wait = _MAX_BACKLOG // (4 * MIB)  # the fragment that takes the backlog past the limit
    assert len(fragments) == 7 and waits == list(range(first_wait, 7))
    assert status == Status.SUCCESS
    path, attributes, syntax = stored[0]
    assert attributes == {"PatientName": "Doe^Jane", "SOPInstanceUID": ds.SOPInstanceUID}
    assert syntax == ExplicitVRLittleEndian
    assert pydicom.dcmread(path).PixelData == ds.PixelData


def test_an_association_lost_mid_object_leaves_nothing_even_with_writes_queued(
    tmp_path: Path,
) -> None:
    source = tmp_path / "big.dcm"
    _make_file(source, pixels=12 * MIB)
    uid, fragments = _fragments(source, 4 * MIB)
    store = DurableStore(tmp_path / "store")
    handler = DurableStoreHandler(store)
    gate = threading.Event()

    async def run() -> None:
        handler.writer().submit(gate.wait)
        job = _begin(handler, uid)
        for fragment in fragments[:2]:
            job.write(fragment)
        assert len(_receiving(store)) == 1
        job.abort()  # the association died; the writer still holds two fragments

    asyncio.run(run())
    gate.set()
    handler.writer().submit(lambda: None).result()  # the writer has done all it was given
    assert _receiving(store) == []
    assert list(store.objects.rglob("*.dcm")) == []


def test_a_data_set_that_stops_parsing_is_refused_and_not_kept(tmp_path: Path) -> None:
    source = tmp_path / "one.dcm"
    _make_file(source, pixels=3 * MIB)
    uid, fragments = _fragments(source, MIB)
    store = DurableStore(tmp_path / "store")
    handler = DurableStoreHandler(store)
    command = c_store_rq(1, CT, uid)

    async def run() -> int:
        inbound = InboundObject(_begin(handler, uid), command, ExplicitVRLittleEndian, "peer")
        garbage = memoryview(b"\x10\x00\x10\x00XX\x02\x00no")  # where an element was due
        for fragment in [fragments[0], garbage, *fragments[1:]]:
            if (waiting := inbound.write(fragment)) is not None:
                await waiting
        return await inbound.finish()

    assert asyncio.run(run()) == Status.CANNOT_UNDERSTAND
    handler.writer().submit(lambda: None).result()  # the abort is queued behind its writes
    assert _receiving(store) == [] and list(store.objects.rglob("*.dcm")) == []


def test_a_durable_object_larger_than_a_write_back_step_arrives_whole(tmp_path: Path) -> None:
    source = tmp_path / "big.dcm"
    ds = _make_file(source, pixels=70 * MIB)  # crosses the 32 MiB write-back step twice
    uid, fragments = _fragments(source, 4 * MIB)
    store = DurableStore(tmp_path / "store", fsync=True)
    handler = DurableStoreHandler(store)

    async def run() -> int:
        job = _begin(handler, uid)
        for fragment in fragments:
            if (waiting := job.write(fragment)) is not None:
                await waiting
        return await job.commit(_scanned(handler, fragments))

    assert asyncio.run(run()) == Status.SUCCESS
    path = store.path_for(uid)
    data_set = source.read_bytes()[read_header(source).dataset_offset :]
    assert path.read_bytes()[read_header(path).dataset_offset :] == data_set
    assert pydicom.dcmread(path).PixelData == ds.PixelData
