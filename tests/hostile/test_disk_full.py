"""A peer with a valid certificate stores until the disk is full; a node's C-GET never ends.

Run on a real small file system (a tmpfs of a few MiB, mounted here as root) against a real
``dicomtls serve`` over mutual TLS, and a real ``dicomtls get`` against a hostile SCP:

- a peer that stores until the disk is full took the last bytes from the index and the
  audit trail: the C-STOREs that followed were refused only once SQLite could not grow
  ("database or disk is full"), and the audit records of everyone else's work were lost.
  Now the store keeps a free-space floor (``min_free_space``, by default 1 GiB or 5% of the
  disk, whichever is smaller): a C-STORE that would go below it is refused with A700H and one
  line naming the peer and the free space, the index and the audit trail keep their room,
  C-ECHO and C-FIND go on, and once space is freed the next C-STORE succeeds, no restart;
- a node answering ``dicomtls get`` with C-STOREs that never end filled the ``--out``
  folder's disk and ran on, forever. Now the same floor holds there, and ``--max-bytes``
  bounds a retrieval: past either, the C-GET is cancelled (C-CANCEL), the command says why
  and exits non-zero, and what was received stays;
- an audit file whose disk fills (another program's doing, or another disk) kept a torn
  record at the end, counted as lost a record it later wrote after all, and said the loss
  once in the node's life: a second outage lost records without a line. Now a record is
  written whole or taken back, and each outage is said when it begins and, with the count
  lost, when it ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydicom.dataset import Dataset

from dicomtls.audit.messages import AuditMessage
from dicomtls.audit.transport import FileSink
from dicomtls.dimse.command import CommandField, Tag, command_field, decode_command, number
from dicomtls.dimse.messages import c_get_rsp, c_store_rq
from dicomtls.dimse.status import Status
from dicomtls.net.association import Association, associate
from dicomtls.net.qr_scu import QueryModel
from dicomtls.tls.settings import TLSSettings

from ..conftest import MatrixPKI
from ..node.test_storage import CT, SERIES_UID, STUDY_UID, _make_file
from .conftest import AE, PATIENT, LiveNode, _timeouts, _tls_args
from .dimse import message_pdus
from .scp import SCPLink
from .test_cli_hostile_node import STUDY, _classes_in_study, answering_find, dicomtls_get
from .test_get_folder import _data_set, _receiving_context
from .test_store_identity import PROPOSALS

MIB = 1 << 20
#: The small disk: its default floor is 5% of it (819 KiB), well above one test object.
DISK = 16 * MIB
BIG, SMALL = 300_000, 2_000
QR = QueryModel.STUDY_ROOT


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of :data:`DISK` bytes, unmounted again after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _health(node: LiveNode) -> tuple[int, str]:
    """The node's /healthz answer: its status and body."""
    try:
        with urllib.request.urlopen(f"http://{_metrics(node)}/healthz", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def _health_until(node: LiveNode, status: int, timeout: float = 20) -> tuple[int, str]:
    """Ask /healthz until it answers ``status`` (the node asks its disk at most once a
    second), or the deadline passes; the last answer."""
    deadline = time.monotonic() + timeout
    while (answer := _health(node))[0] != status and time.monotonic() < deadline:
        time.sleep(0.1)  # the interval between two looks at an observable, not a guess
    return answer


def _room_gauges(node: LiveNode) -> dict[str, float]:
    """The store's free bytes and floor, as the node's /metrics says them."""
    with urllib.request.urlopen(f"http://{_metrics(node)}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("dicomtls_store_")
    }


def _metrics(node: LiveNode) -> str:
    found = re.search(r"metrics on http://([^/]+)/metrics", node.output())
    assert found, node.output()
    return found[1]


def _free(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def _audit_events(audit: Path) -> list[str]:
    """The EventID of every record, each line parsed (a torn line fails here)."""
    events = []
    for line in audit.read_text(encoding="utf-8").splitlines():
        found = ET.fromstring(line).find("EventIdentification/EventID")
        assert found is not None, line
        events.append(str(found.get("originalText")))
    return events


class _Filler:
    """A peer with a valid certificate that stores until the node refuses."""

    def __init__(self, node: LiveNode, tls: TLSSettings, made: Path) -> None:
        self.node, self.tls, self.made = node, tls, made
        self.statuses: list[int] = []

    async def connect(self) -> Association:
        return await associate(
            "127.0.0.1",
            self.node.port,
            self.tls,
            called_ae=AE,
            calling_ae="FILLER",
            proposals=PROPOSALS,
            dimse_timeout=30,
        )

    def object(self, size: int) -> Path:
        path = self.made / f"{len(list(self.made.iterdir()))}.dcm"
        _make_file(path, pixels=size)
        return path

    async def fill(self) -> None:
        """Large objects until one is refused, then small ones until 20 in a row are."""
        async with await self.connect() as assoc:
            for size, refusals in ((BIG, 1), (SMALL, 20)):
                refused = 0
                while refused < refusals:
                    status = await assoc.store(self.object(size))
                    self.statuses.append(status)
                    refused = refused + 1 if status != Status.SUCCESS else 0

    async def find_and_echo(self) -> tuple[int, int]:
        """An IMAGE-level C-FIND of the study (how many match) and a C-ECHO."""
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.StudyInstanceUID, query.SeriesInstanceUID = STUDY_UID, SERIES_UID
        query.SOPInstanceUID = ""
        async with await self.connect() as assoc:
            matches = [m async for m in assoc.find(query, QR)]
            return len(matches), await assoc.echo()

    async def store_one(self) -> int:
        async with await self.connect() as assoc:
            return await assoc.store(self.object(SMALL))


def test_a_peer_storing_until_the_disk_is_full_leaves_index_and_audit_their_room(
    matrix_pki: MatrixPKI, client_tls: TLSSettings, small_disk: Path, tmp_path: Path
) -> None:
    audit = small_disk / "audit.log"
    node = LiveNode(
        tmp_path,
        *("--ae-title", AE, "--store", str(small_disk / "store")),
        *_tls_args(matrix_pki),
        *_timeouts(PATIENT, PATIENT, PATIENT),
        *("--audit", f"file:{audit}"),
        *("--metrics-port", "0"),
    )
    made = tmp_path / "made"
    made.mkdir()
    filler = _Filler(node, client_tls, made)
    try:
        ballast = small_disk / "ballast"  # what the operator frees once alerted
        ballast.write_bytes(bytes(MIB))
        asyncio.run(filler.fill())
        stored = filler.statuses.count(Status.SUCCESS)
        refused = [s for s in filler.statuses if s != Status.SUCCESS]
        assert set(refused) == {Status.OUT_OF_RESOURCES}, filler.statuses
        # Full, as far as peers go: everyone else is still served, and audited.
        for _ in range(10):
            assert asyncio.run(filler.find_and_echo()) == (stored, Status.SUCCESS)
        # ... and a balancer is told to send new clients elsewhere until there is room again
        health = _health(node)
        assert health[0] == 503 and "store below its free-space floor" in health[1], health
        full = _room_gauges(node)
        assert full["dicomtls_store_free_bytes"] < full["dicomtls_store_floor_bytes"], full
        ballast.unlink()
        assert _health_until(node, 200) == (200, "ok\n")
        freed = _room_gauges(node)
        assert freed["dicomtls_store_free_bytes"] >= freed["dicomtls_store_floor_bytes"], freed
        assert freed["dicomtls_store_floor_bytes"] == DISK // 20  # the default: 5% of it
        assert asyncio.run(filler.store_one()) == Status.SUCCESS  # no restart needed
    finally:
        said = node.stop()
    refusals = [line for line in said.splitlines() if "refused" in line and "C-STORE" in line]
    assert len(refusals) == len(refused), said
    for line in refusals:  # each names the peer and the free space, none a failed index
        assert re.search(r"C-STORE from 127\.0\.0\.1:\d+ of [\d.]+ refused \(0xA700", line), line
        assert "free" in line and "floor" in line and "not indexed" not in line, line
    assert "Traceback" not in said and " ERROR " not in said, said
    assert "audit file" not in said, said  # no audit record was lost
    events = _audit_events(audit)
    assert events.count("Query") == 10, events
    assert events.count("DICOM Instances Transferred") == 2, events
    assert not list((small_disk / "store" / ".incoming").iterdir())
    with_index = subprocess.run(
        ["sqlite3", str(small_disk / "store" / "index.sqlite"), "PRAGMA integrity_check"],
        capture_output=True,
        text=True,
    )
    assert with_index.stdout.strip() == "ok", with_index
    on_disk = list((small_disk / "store" / "objects").rglob("*.dcm"))
    assert len(on_disk) == stored + 1


# -- dicomtls get against a node whose C-GET never ends ------------------------------------------

#: What the endless node sends at most before it ends the C-GET with Success after all: far
#: more than the small disk holds.
PUSHED_AT_MOST = 200


#: The UIDs the endless node sends its objects under, each as long as the one in its template.
UID_PREFIX = "1.2.826.0.1.3680043.8.498.77."


class _Endless:
    """A node answering the C-GET with one C-STORE after another (never the final response)
    until we C-CANCEL; it then ends the C-GET with Cancel, as PS3.4 C.4.3.3 has it."""

    def __init__(self, template: Path) -> None:
        dataset = pydicom.dcmread(template)
        dataset.SOPInstanceUID = self.uid(0)
        dataset.save_as(template, enforce_file_format=True)
        self.template = _data_set(template)
        self.answers: list[int] = []
        self.cancelled_after: int | None = None

    def __call__(self, link: SCPLink) -> None:
        get = link.next_command()
        assert get is not None
        link.next_pdu()  # its identifier
        context = _receiving_context(link, CT)
        status = Status.SUCCESS
        for message_id in range(1, PUSHED_AT_MOST + 1):
            uid = self.uid(message_id)
            dataset = self.template.replace(self.uid(0).encode(), uid.encode())
            if not link.send(message_pdus(context, c_store_rq(message_id, CT, uid), dataset)):
                return
            answer = link.next_command()
            assert answer is not None
            command = decode_command(bytes(answer.pdvs[-1].data))
            if command_field(command) is CommandField.C_CANCEL_RQ:
                self.cancelled_after = len(self.answers)
                answer = link.next_command()  # the answer to the C-STORE in flight
                assert answer is not None
                command = decode_command(bytes(answer.pdvs[-1].data))
                status = Status.CANCEL
            self.answers.append(number(command, Tag.Status))
            if status == Status.CANCEL:
                break
        final = c_get_rsp(1, STUDY.get_uid, status, (0, len(self.answers), 0, 0))
        link.send(message_pdus(get.pdvs[0].context_id, final))
        link.release()

    @staticmethod
    def uid(number: int) -> str:
        return f"{UID_PREFIX}{100_000 + number}"  # no leading zero (PS3.5 9.1)


def _get_endless(
    pki: MatrixPKI, scp_context: ssl.SSLContext, out: Path, made: Path, *options: str
) -> tuple[_Endless, subprocess.CompletedProcess[str]]:
    """``dicomtls get --out out`` against a node pushing ``made`` without end."""
    _make_file(made, pixels=BIG)
    endless = _Endless(made)
    find = answering_find(_classes_in_study(CT))
    code, said, err, _ = dicomtls_get(pki, scp_context, out, find, endless, *options)
    return endless, subprocess.CompletedProcess(["dicomtls", "get"], code, said, err)


def test_get_from_a_node_that_never_ends_stops_at_the_out_folders_floor(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, small_disk: Path, tmp_path: Path
) -> None:
    out = small_disk / "got"
    endless, done = _get_endless(matrix_pki, scp_context, out, tmp_path / "made.dcm")
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert endless.cancelled_after is not None, (endless.answers, said)
    kept = endless.answers.count(Status.SUCCESS)
    # the object refused, then the one in flight when our C-CANCEL went
    assert endless.answers == [Status.SUCCESS] * kept + [Status.OUT_OF_RESOURCES] * 2, said
    assert "C-GET cancelled: the disk of" in said and "below its floor" in said, said
    assert len(list(out.glob("*.dcm"))) == kept  # what was received stays, nothing else
    assert [p.name for p in out.iterdir() if not p.name.endswith(".dcm")] == []
    assert _free(small_disk) > DISK // 20 - BIG  # the floor, less at most one object


def test_get_stops_at_max_bytes(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, tmp_path: Path
) -> None:
    out = tmp_path / "got"
    endless, done = _get_endless(
        matrix_pki, scp_context, out, tmp_path / "made.dcm", "--max-bytes", "1MB", "--json"
    )
    assert done.returncode == 1, done
    answer = json.loads(done.stdout)
    assert answer["ok"] is False and answer["status"] == Status.CANCEL, answer
    assert "--max-bytes of 976.6 KiB" in answer["cancelled"], answer
    assert endless.answers == [Status.SUCCESS] * 3 + [Status.OUT_OF_RESOURCES] * 2, endless.answers
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{u}.dcm" for u in answer["stored"])
    assert sum(p.stat().st_size for p in out.iterdir()) <= 1_000_000


# -- the audit file's disk full (by someone else: another program, or another disk) -----------


def _record(number: int) -> AuditMessage:
    """An audit message of ~3 KB (a Query record with its identifier is of that order)."""
    return AuditMessage(
        "Query", b"<AuditMessage>" + b"x" * 3000 + b"<n>%d</n></AuditMessage>" % number
    )


def _leave_free(disk: Path, ballast: Path, free: int) -> None:
    ballast.write_bytes(bytes(max(0, _free(disk) - free)))


def _whole_records(audit: Path) -> list[int]:
    """The number in each record; fails on a torn one."""
    data = audit.read_bytes()
    assert data.endswith(b"\n"), data[-60:]
    numbers = []
    for line in data.splitlines():
        assert line.startswith(b"<AuditMessage>") and line.count(b"<AuditMessage>") == 1
        numbers.append(int(ET.fromstring(line).findtext("n") or "-1"))
    return numbers


def test_an_audit_file_whose_disk_fills_keeps_whole_records_and_says_each_loss(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    audit, ballast = small_disk / "audit.log", small_disk / "ballast"
    sink = FileSink(audit)
    sent = 0
    try:
        with caplog.at_level(logging.WARNING, logger="dicomtls.audit"):
            for _outage in range(2):
                _leave_free(small_disk, ballast, 10_000)
                for _ in range(8):
                    sink.send(_record(sent))
                    sent += 1
                _whole_records(audit)  # a record cut short by the full disk is not left torn
                ballast.unlink()
                for _ in range(2):
                    sink.send(_record(sent))
                    sent += 1
    finally:
        sink.close()  # the disk can be unmounted
    kept = _whole_records(audit)
    assert sink.sent == len(kept) and sink.sent + sink.dropped == sent, (kept, sink.dropped)
    assert kept[-2:] == [sent - 2, sent - 1] and sink.dropped > 0
    said = [r.getMessage() for r in caplog.records]
    assert sum("not writable, messages are lost" in line for line in said) == 2, said
    again = [line for line in said if "writable again" in line]
    assert len(again) == 2 and sum(int(line.split(": ")[1].split()[0]) for line in again) == (
        sink.dropped
    ), said
