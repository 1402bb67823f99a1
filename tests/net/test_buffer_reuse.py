"""Reused buffers are never overwritten while something still sees them.

The SCU reads file blocks and ciphertext into pooled buffers (:mod:`dicomtls.buffers`), and
the SCP hands PDVs on as views of the PDU body they arrived in. Here every fragment the SCP
receives is kept as the very memoryview it arrived as, not a copy, until its object is
committed, and checked byte for byte twice: on arrival and at commit. The SCP reads nothing
more until the SCU's transport has paused for flow control, so the SCU is held with PDVs of
its blocks in flight. A buffer reused too early on either side shows up as wrong bytes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from pathlib import Path

import pytest

from dicomtls.dimse.command import CommandSet, Tag
from dicomtls.dimse.dataset_scan import ScannedDataset
from dicomtls.dimse.part10 import read_header
from dicomtls.dimse.status import Status
from dicomtls.net import link as link_module
from dicomtls.net.association import Association, associate, default_proposals
from dicomtls.net.scp import Services, serve_dicom
from dicomtls.tls.flags import Side, VerifyFlags
from dicomtls.ul.acse import AcceptorPolicy

from ..conftest import MatrixPKI
from ..node.test_storage import CT, _make_file

PEER_FAIL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT
EXPLICIT = "1.2.840.10008.1.2.1"
#: 512 KiB PDUs: blocks big enough to be pooled, many PDUs per object.
POLICY = AcceptorPolicy(
    "STORESCP", {"1.2.840.10008.1.1": [EXPLICIT], CT: [EXPLICIT]}, max_pdu_length=512 << 10
)
#: The first object outgrows what the sockets and transport buffer, so the SCU must pause.
SIZES = [24_000_000] + [1_000_000 + 77_777 * i for i in range(12)]


class _Keeping:
    """A store target that keeps each fragment's own memoryview and checks it twice."""

    def __init__(self, expected: dict[str, bytes], scu_paused: asyncio.Event) -> None:
        self.expected = expected
        self.scu_paused = scu_paused
        self.verified: list[str] = []

    @property
    def keep_tags(self) -> frozenset[int]:
        return frozenset()

    def begin(self, association: Association, command: CommandSet, syntax: str) -> _KeepingJob:
        return _KeepingJob(self, str(command[Tag.AffectedSOPInstanceUID]))


class _KeepingJob:
    def __init__(self, target: _Keeping, uid: str) -> None:
        self.target, self.uid = target, uid
        self.expected = target.expected[uid]
        self.views: list[memoryview] = []
        self.size = 0

    def write(self, data: memoryview) -> Awaitable[None] | None:
        assert data == self.expected[self.size : self.size + len(data)], "wrong on arrival"
        self.views.append(data)
        self.size += len(data)
        # Read nothing more until the SCU has had to wait for the socket.
        return None if self.target.scu_paused.is_set() else self._until_scu_paused()

    async def _until_scu_paused(self) -> None:
        await self.target.scu_paused.wait()

    async def commit(self, dataset: ScannedDataset) -> int:
        assert b"".join(self.views) == self.expected, "overwritten after arrival"
        self.target.verified.append(self.uid)
        return Status.SUCCESS

    def abort(self) -> None:
        raise AssertionError(f"{self.uid} aborted")


def _objects(tmp: Path) -> tuple[list[Path], dict[str, bytes]]:
    """Files of distinct random content, and each one's data set bytes by SOP instance."""
    files, expected = [], {}
    for i, size in enumerate(SIZES):
        path = tmp / f"ct{i}.dcm"
        ds = _make_file(path, pixels=size, pixel_data=os.urandom(size))
        with path.open("rb") as handle:
            handle.seek(read_header(path).dataset_offset)
            expected[str(ds.SOPInstanceUID)] = handle.read()
        files.append(path)
    return files, expected


def _signal_scu_pauses(monkeypatch: pytest.MonkeyPatch, paused: asyncio.Event) -> None:
    original = link_module._LinkProtocol.pause_writing

    def pause_writing(self: link_module._LinkProtocol) -> None:
        original(self)
        if self._side is Side.CLIENT:
            paused.set()

    monkeypatch.setattr(link_module._LinkProtocol, "pause_writing", pause_writing)


async def _store_all(
    pki: MatrixPKI, tls: bool, files: list[Path], target: _Keeping
) -> list[int | Exception]:
    server_tls = pki.settings("server", PEER_FAIL) if tls else None
    client_tls = pki.settings("client", PEER_FAIL) if tls else None
    server = await serve_dicom("127.0.0.1", 0, server_tls, POLICY, Services(store=target))
    async with (
        server,
        await associate(
            "127.0.0.1",
            server.port,
            client_tls,
            called_ae="STORESCP",
            proposals=default_proposals([CT]),
        ) as assoc,
    ):
        async with asyncio.timeout(120):
            return [status async for _, status in assoc.store_many(files)]


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain-tcp"])
def test_pooled_buffers_are_not_overwritten_while_viewed(
    matrix_pki: MatrixPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: bool
) -> None:
    files, expected = _objects(tmp_path)

    async def run() -> tuple[list[int | Exception], _Keeping]:
        paused = asyncio.Event()
        _signal_scu_pauses(monkeypatch, paused)
        target = _Keeping(expected, paused)
        return await _store_all(matrix_pki, tls, files, target), target

    statuses, target = asyncio.run(run())
    assert statuses == [Status.SUCCESS] * len(files)
    assert sorted(target.verified) == sorted(expected)
