"""A crash at each step of a store, replayed on a real store, then a real node started on it.

``kill -9`` rarely lands in the short window between the rename and the index row; here the
store is left exactly as a process dying there leaves it (the same calls, minus the rest).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomtls.dimse.part10 import iter_blocks, read_header
from dicomtls.node.storage import DurableStore, FileMeta, IncomingObject

from .helpers import (
    SUCCESS,
    SentObject,
    assert_intact,
    connect,
    indexed,
    leftovers,
    make_object,
    on_disk,
    series_uid,
    serving,
)


def _receive(store: DurableStore, sent: SentObject) -> IncomingObject:
    header = read_header(sent.path)
    incoming = store.begin(
        FileMeta(
            header.sop_class_uid,
            header.sop_instance_uid,
            header.transfer_syntax_uid,
            implementation_class_uid="1.2.3.4",
            source_ae_title="CRASH",
        )
    )
    for block in iter_blocks(header, block_size=65536):
        incoming.write(block)
    return incoming


def test_restart_indexes_what_a_crash_caught_between_commit_and_index(tmp_path: Path) -> None:
    study = generate_uid()
    root = tmp_path / "dicom-store"
    store = DurableStore(root)
    committed, partial, unrenamed = (
        make_object(tmp_path / f"{i}.dcm", 50_000, study, i) for i in range(3)
    )
    _receive(store, committed).commit(
        index_pending=True
    )  # linked into place, fsynced; the process dies before the index
    _receive(store, partial)  # dies while receiving
    _receive(store, unrenamed)  # dies just before the commit, every byte written
    store.prepare_spare()  # and with the next object's file made ahead
    assert len(leftovers(root)) == 3 and on_disk(root).keys() == {committed.uid}

    with serving(tmp_path) as node:
        assert "removed 2 partial object(s)" in node.output
        assert "indexed 1 object(s) stored just before an earlier crash" in node.output
        assert leftovers(root) == [] and list((root / ".spare").iterdir()) == []
        assert on_disk(root).keys() == indexed(root, tmp_path).keys() == {committed.uid}
        assert_intact(root, committed)

        async def find() -> set[str]:
            assoc = await connect(node, root)
            try:
                query = Dataset()
                query.QueryRetrieveLevel, query.StudyInstanceUID = "IMAGE", study
                query.SeriesInstanceUID, query.SOPInstanceUID = series_uid(study), ""
                found = {str(m.SOPInstanceUID) async for m in assoc.find(query)}
                assert await assoc.store(partial.path) == SUCCESS  # and it takes new objects
                return found
            finally:
                await assoc.release()

        assert asyncio.run(find()) == {committed.uid}
        assert indexed(root, tmp_path).keys() == {committed.uid, partial.uid}
