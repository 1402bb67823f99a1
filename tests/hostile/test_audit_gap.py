"""The audit record of acknowledged objects survives a crash (issue 13, finding 7: after 5
acknowledged stores and a kill -9, the audit trail had no record of them, because "DICOM
Instances Transferred" was written only when the association ended).

A real ``dicomtls serve`` with a file audit sink; a peer stores 5 objects and keeps its
association open. The record naming the objects' study reaches the file while the
association is still open (it still answers a C-ECHO afterwards); then the node is killed
with SIGKILL, and the record is still in the file.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from lxml import etree

from dicomtls.net.association import associate, default_proposals
from dicomtls.tls.settings import TLSSettings

from ..conftest import MatrixPKI
from ..node.test_storage import CT, STUDY_UID, _make_file
from .conftest import AE, _tls_args, start

INSTANCES_TRANSFERRED = "110104"
DEADLINE = 30.0


def _stored_records(path: Path) -> list[etree._Element]:
    """The "DICOM Instances Transferred" messages for objects received (action C) in ``path``."""
    if not path.exists():
        return []
    records = []
    for line in path.read_bytes().splitlines():
        root = etree.fromstring(line)
        ident = root.find("EventIdentification")
        assert ident is not None
        event = ident.find("EventID")
        code = None if event is None else event.get("csd-code")
        if code == INSTANCES_TRANSFERRED and ident.get("EventActionCode") == "C":
            records.append(root)
    return records


def _instances_of(records: list[etree._Element], study_uid: str) -> int:
    """How many instances of ``study_uid`` the records name, summed over their SOP classes."""
    count = 0
    for root in records:
        for study in root.iter("ParticipantObjectIdentification"):
            if study.get("ParticipantObjectID") != study_uid:
                continue
            for sop_class in study.iter("SOPClass"):
                count += int(sop_class.get("NumberOfInstances", "0"))
    return count


async def _wait_for_records(path: Path, study_uid: str, count: int) -> list[etree._Element]:
    """Wait (a deadline) until the audit file names ``count`` instances of the study."""
    deadline = time.monotonic() + DEADLINE
    while _instances_of(records := _stored_records(path), study_uid) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"no audit record of {count} instances in {path}")
        await asyncio.sleep(0.05)  # the file is written by another process: read it again
    return records


async def _store_and_hold(
    port: int, tls: TLSSettings, files: list[Path], audit: Path
) -> list[etree._Element]:
    assoc = await associate(
        "127.0.0.1",
        port,
        tls,
        called_ae=AE,
        calling_ae="MODALITY",
        proposals=default_proposals([CT]),
        dimse_timeout=30,
    )
    try:
        for path in files:
            assert await assoc.store(path) == 0  # Success: the node has it durably
        records = await _wait_for_records(audit, STUDY_UID, len(files))
        assert await assoc.echo() == 0  # the association was open all along, and still is
        return records
    finally:
        assoc.link.abort()  # no release: the node is killed with the association open


def test_records_of_acknowledged_objects_survive_kill_9(
    matrix_pki: MatrixPKI, client_tls: TLSSettings, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.log"
    files = [tmp_path / f"ct{i}.dcm" for i in range(5)]
    for path in files:
        _make_file(path, pixels=20_000)
    node = start(tmp_path, *_tls_args(matrix_pki), "--audit", f"file:{audit}")
    try:
        seen = asyncio.run(_store_and_hold(node.port, client_tls, files, audit))
        node.proc.send_signal(signal.SIGKILL)
        assert node.proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        node.stop()
    records = _stored_records(audit)  # what is in the file after the crash
    assert _instances_of(records, STUDY_UID) == 5
    assert len(records) == len(seen)
    for root in records:
        text = etree.tostring(root).decode()
        assert "AETITLES=MODALITY" in text  # the peer that sent them
        assert 'ParticipantObjectID="P1"' in text  # one message per patient: Doe^Jane, P1
