"""A full disk: the object that does not fit is refused (0xA7xx), never acknowledged, never half-kept.

The store is a small tmpfs mounted for the test (we are root here and in CI); the node
is a real ``dicomtls serve`` on it. Covered: the data file not fitting (ENOSPC while
streaming), the file fitting but SQLite not (the index write after the commit), and
no inode left for the temporary file (ENOSPC from open).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from dicomtls.dimse.status import Status
from dicomtls.net.association import Association
from dicomtls.node.storage import DurableStore

from .helpers import (
    SUCCESS,
    assert_intact,
    connect,
    indexed,
    is_out_of_resources,
    leftovers,
    make_object,
    on_disk,
    serving,
)

PAGE = os.sysconf("SC_PAGE_SIZE")  # tmpfs counts its size in pages


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:  # not root, or no CAP_SYS_ADMIN (a loop device needs it too)
        pytest.skip(f"cannot mount a tmpfs for a full disk: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


def _remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


def _free_bytes(where: Path) -> int:
    stat = os.statvfs(where)
    return stat.f_bavail * stat.f_frsize


def _fill(path: Path) -> None:
    """Write until the file system says ENOSPC."""
    with path.open("wb", buffering=0) as filler:
        for chunk in (b"\0" * (1 << 20), b"\0" * PAGE):
            try:
                while True:
                    filler.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    assert _free_bytes(path.parent) == 0


def _assert_consistent(store: Path, cwd: Path) -> None:
    """No partial file, no unindexed object; the index names exactly the files there."""
    assert leftovers(store) == []
    files, index = on_disk(store), indexed(store, cwd)
    assert index.keys() == files.keys()
    assert all(path.is_file() for path in index.values())


def test_disk_full_refuses_with_out_of_resources(tmp_path: Path) -> None:
    study = generate_uid()
    with tmpfs(tmp_path / "store", "size=4m") as store:
        objects = [
            make_object(tmp_path / f"{i}.dcm", 600_000, study, i) for i in range(12)
        ]  # 7 MB: does not fit in 4 MB
        with serving(tmp_path, "--store", str(store)) as node:

            async def scenario() -> None:
                assoc = await connect(node, store)
                try:
                    await run(assoc)
                finally:
                    await assoc.release()

            async def run(assoc: Association) -> None:
                # 1. fill the disk through the node
                statuses: list[int] = []
                for sent in objects:
                    statuses.append(await assoc.store(sent.path))
                    if statuses[-1] != SUCCESS:
                        break
                stored, refused = objects[: len(statuses) - 1], objects[len(statuses) - 1]
                print(f"\nfull disk: {len(stored)} stored, then 0x{statuses[-1]:04X}")
                assert stored and all(s == SUCCESS for s in statuses[:-1])
                assert is_out_of_resources(statuses[-1]), f"0x{statuses[-1]:04X}"
                said = node.wait_for(f"of {refused.uid} refused")
                assert "No space left on device" in said
                assert len(node.lines_with(refused.uid)) == 1, node.output  # one clear line
                assert node.alive() and await assoc.echo() == SUCCESS
                assert not DurableStore(store).path_for(refused.uid).exists()
                _assert_consistent(store, tmp_path)
                for sent in stored:
                    assert_intact(store, sent)

                # 2. room again: the same object is stored
                _remount(store, "size=16m")
                assert await assoc.store(refused.path) == SUCCESS
                assert_intact(store, refused)
                stored.append(refused)

                # 3. the file fits, the index row does not: SQLite says "database or disk is full"
                filler = store / "filler"
                _fill(filler)
                nxt = objects[len(stored)]
                overhead = DurableStore(store).path_for(refused.uid).stat().st_size - len(
                    refused.path.read_bytes()
                )  # our file meta vs the sender's; same for every object of this sender
                pages = -(-(nxt.path.stat().st_size + overhead) // PAGE)
                os.truncate(filler, filler.stat().st_size - pages * PAGE)
                assert _free_bytes(store) == pages * PAGE  # exactly the object, not a page more
                status = await assoc.store(nxt.path)
                assert status == Status.OUT_OF_RESOURCES, f"0x{status:04X}"
                said = node.wait_for(f"of {nxt.uid} refused")
                assert "not indexed" in said and "full" in said and "removed" in said, said
                assert not DurableStore(store).path_for(nxt.uid).exists()
                assert nxt.uid not in indexed(store, tmp_path)
                _assert_consistent(store, tmp_path)
                assert node.alive() and await assoc.echo() == SUCCESS

                # 4. room again
                filler.unlink()
                assert await assoc.store(nxt.path) == SUCCESS
                stored.append(nxt)
                for sent in stored:
                    assert_intact(store, sent)
                _assert_consistent(store, tmp_path)
                assert set(indexed(store, tmp_path)) == {s.uid for s in stored}

            asyncio.run(scenario())
        assert node.proc.returncode == 0, node.output


def test_no_inode_left_for_the_temporary_file(tmp_path: Path) -> None:
    """No inode left (ENOSPC from open or mkdir): 0xA700, not an aborted association.

    Where it strikes depends on what exists: the node makes the next object's file ahead
    (a spare), so the first refusal may come at the new bucket directory, not the file.
    """
    study = generate_uid()
    with tmpfs(tmp_path / "store", "size=16m,nr_inodes=64") as store:
        first, second = (make_object(tmp_path / f"{i}.dcm", 100_000, study, i) for i in range(2))
        while (
            DurableStore(store).path_for(second.uid).parent
            == DurableStore(store).path_for(first.uid).parent
        ):
            second = make_object(tmp_path / "1.dcm", 100_000, study, 1)  # a bucket still to make
        with serving(tmp_path, "--store", str(store)) as node:

            async def scenario() -> None:
                assoc = await connect(node, store)
                try:
                    assert await assoc.store(first.path) == SUCCESS
                    junk = store / "junk"
                    junk.mkdir()
                    with contextlib.suppress(OSError):
                        for i in range(1000):
                            (junk / str(i)).touch()
                    with pytest.raises(OSError, match="No space left"):
                        (junk / "one-more").touch()
                    status = await assoc.store(second.path)
                    assert is_out_of_resources(status), f"0x{status:04X}"
                    said = node.wait_for(f"of {second.uid} refused")
                    assert "No space left" in said, said
                    assert "cannot start" in said or "cannot store" in said, said
                    assert node.alive() and await assoc.echo() == SUCCESS
                    _assert_consistent(store, tmp_path)
                    for leftover in junk.iterdir():
                        leftover.unlink()
                    assert await assoc.store(second.path) == SUCCESS
                    assert_intact(store, first)
                    assert_intact(store, second)
                    _assert_consistent(store, tmp_path)
                finally:
                    await assoc.release()

            asyncio.run(scenario())
        assert node.proc.returncode == 0, node.output
