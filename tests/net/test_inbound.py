"""The inbound check of a C-STORE data set: dense input shares the event loop, nesting is bounded."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable

from pydicom.uid import ExplicitVRLittleEndian

from dicomtls.dimse.dataset_scan import ScannedDataset
from dicomtls.dimse.messages import c_store_rq
from dicomtls.dimse.status import Status
from dicomtls.net.inbound import InboundObject

CT = "1.2.840.10008.5.1.4.1.1.2"
UID = "1.2.826.0.1.3680043.10.1432.7"


class _Job:
    """A store job that keeps what it is given."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.committed: ScannedDataset | None = None
        self.aborted = False

    def write(self, data: memoryview) -> Awaitable[None] | None:
        self.received += data
        return None

    async def commit(self, dataset: ScannedDataset) -> int:
        self.committed = dataset
        return Status.SUCCESS

    def abort(self) -> None:
        self.aborted = True


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _identity() -> bytes:
    return _element(0x0008, 0x0016, b"UI", CT.encode()) + _element(
        0x0008, 0x0018, b"UI", UID.encode() + b"\0"
    )


def test_a_dense_fragment_gives_the_loop_to_others_while_it_is_scanned() -> None:
    # 4 MiB of empty private elements: half a million headers in one fragment
    dense = _identity() + _element(0x0009, 0x0010, b"LO", b"") * ((4 << 20) // 8)
    job = _Job()
    inbound = InboundObject(job, c_store_rq(1, CT, UID), ExplicitVRLittleEndian, "peer")
    ticks = 0

    async def other_association() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def run() -> int:
        other = asyncio.get_running_loop().create_task(other_association())
        await asyncio.sleep(0)
        started = ticks
        waiting = inbound.write(memoryview(dense))
        assert waiting is not None  # a large fragment is scanned a slice at a time
        await waiting
        other.cancel()
        assert ticks - started >= 32  # the other task ran between the slices
        return await inbound.finish()

    assert asyncio.run(run()) == Status.SUCCESS
    assert job.received == dense and job.committed is not None


def test_a_bulk_fragment_is_scanned_without_handing_the_loop_away() -> None:
    pixels = struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB", 4 << 20) + bytes(4 << 20)
    job = _Job()
    inbound = InboundObject(job, c_store_rq(1, CT, UID), ExplicitVRLittleEndian, "peer")
    ticks = 0

    async def other_association() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def run() -> int:
        other = asyncio.get_running_loop().create_task(other_association())
        await asyncio.sleep(0)
        started = ticks
        waiting = inbound.write(memoryview(_identity() + pixels))
        assert waiting is not None
        await waiting
        other.cancel()
        assert ticks - started <= 1  # one addition per slice: nothing worth yielding for
        return await inbound.finish()

    assert asyncio.run(run()) == Status.SUCCESS


def test_nesting_past_the_bound_is_refused_and_the_rest_dropped() -> None:
    sequence = struct.pack("<HH2s2xI", 0x0040, 0x0275, b"SQ", 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    job = _Job()
    inbound = InboundObject(
        job, c_store_rq(1, CT, UID), ExplicitVRLittleEndian, "peer", max_depth=4
    )

    async def run() -> int:
        for part in (_identity(), (sequence + item) * 5, b"\0" * 1000):
            if (waiting := inbound.write(memoryview(part))) is not None:
                await waiting
        return await inbound.finish()

    assert asyncio.run(run()) == Status.CANNOT_UNDERSTAND
    assert job.aborted and job.committed is None
    assert len(job.received) == len(_identity())  # nothing after the refusal was forwarded
