"""Issue 13, finding 4 and part of 11, against a real ``dicomtls serve`` over mutual TLS.

- ``<existing UID>\\n`` took over the victim's index row: now refused 0117H at the gate, the
  victim's file and index row intact (queried back over C-FIND);
- ``.`` and ``..`` passed as UIDs: refused 0117H, nothing written;
- the same SOP Instance UID from another patient replaced the object: refused 0124H, the
  object held kept, a Security Alert in the audit trail;
- the same object again (a corrected re-send) replaces it, audited as an update (action U);
- a 70,000-byte PatientID was indexed as "": refused A900H, nothing stored or indexed.

Every hostile association gets exactly one log line naming it (checked at teardown, with no
traceback anywhere in the node's output).
"""

from __future__ import annotations

import asyncio
import io
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from lxml import etree
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicomtls.dimse.command import CommandField, Tag, number
from dicomtls.dimse.datasets import encode_dataset
from dicomtls.dimse.messages import c_store_rq
from dicomtls.dimse.status import Status
from dicomtls.net.association import Association, associate
from dicomtls.net.qr_scu import QueryModel
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.acse import Proposal

from ..audit.conftest import SCHEMA
from ..conftest import MatrixPKI
from ..node.test_store_identity import CT, make_object
from .conftest import AE, PATIENT, LiveNode, _running, _timeouts, _tls_args, start
from .peers import VERIFICATION

QR = QueryModel.STUDY_ROOT
#: CT in each syntax on its own context (an implicit VR data set can hold a 70,000-byte LO).
PROPOSALS = [
    Proposal(VERIFICATION, (ImplicitVRLittleEndian,)),
    Proposal(CT, (ExplicitVRLittleEndian,)),
    Proposal(CT, (ImplicitVRLittleEndian,)),
    Proposal(QR.find_uid, (ExplicitVRLittleEndian,)),
]


@pytest.fixture(scope="module")
def node(matrix_pki: MatrixPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A mutual-TLS node with a file audit trail."""
    tmp = tmp_path_factory.mktemp("identity-node")
    audit = ["--audit", f"file:{tmp / 'audit.log'}"]
    yield from _running(
        start(tmp, *_tls_args(matrix_pki), *_timeouts(PATIENT, PATIENT, PATIENT), *audit)
    )


class _Node:
    """What a test reads of the node: its files, its index (over C-FIND), its audit trail."""

    def __init__(self, live: LiveNode, tls: TLSSettings) -> None:
        assert live.store is not None
        self.live, self.tls, self.store = live, tls, live.store
        self.audit = live.store.parent / "audit.log"

    async def connect(self, calling_ae: str) -> Association:
        return await associate(
            "127.0.0.1",
            self.live.port,
            self.tls,
            called_ae=AE,
            calling_ae=calling_ae,
            proposals=PROPOSALS,
            dimse_timeout=30,
        )

    def files(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in (self.store / "objects").rglob("*") if p.is_file()}

    def stored_file(self, uid: str) -> bytes:
        (found,) = [p for p in (self.store / "objects").rglob(f"{uid}.dcm")]
        return found.read_bytes()

    def find(self, uid: str, study: str, series: str) -> list[tuple[str, str]]:
        """(SOPInstanceUID, PatientID) of every match of an IMAGE-level C-FIND for ``uid``."""
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.StudyInstanceUID, query.SeriesInstanceUID, query.SOPInstanceUID = study, series, uid
        query.PatientID = ""

        async def run() -> list[tuple[str, str]]:
            async with await self.connect("GOOD") as assoc:
                return [(m.SOPInstanceUID, m.PatientID) async for m in assoc.find(query, QR)]

        return asyncio.run(run())

    def good_store(self, path: Path) -> int:
        async def run() -> int:
            async with await self.connect("GOOD") as assoc:
                return await assoc.store(path)

        return asyncio.run(run())

    def audit_records(self, event: str, *, containing: str) -> list[ET.Element]:
        """The audit messages of ``event`` (e.g. "Security Alert") that mention ``containing``."""
        found = []
        for line in self.audit.read_text(encoding="utf-8").splitlines():
            root = ET.fromstring(line)
            ident = root.find("EventIdentification/EventID")
            if ident is not None and ident.get("originalText") == event and containing in line:
                found.append(root)
        return found


@pytest.fixture
def site(node: LiveNode, client_tls: TLSSettings) -> _Node:
    return _Node(node, client_tls)


async def _raw_store(assoc: Association, command_uid: str, dataset: Dataset) -> int:
    """A C-STORE whose command names ``command_uid`` exactly, whatever it holds."""
    context = assoc.negotiated.context_for(CT, ExplicitVRLittleEndian)
    assert context is not None
    message_id = assoc.next_message_id()
    with warnings.catch_warnings():  # pydicom warns of the invalid UID we mean to send
        warnings.simplefilter("ignore", UserWarning)
        data = encode_dataset(dataset, ExplicitVRLittleEndian)
    await assoc.send_message(context.id, c_store_rq(message_id, CT, command_uid), [data])
    response = await assoc.response(CommandField.C_STORE_RSP, message_id)
    return number(response.command, Tag.Status)


def _hostile(site: _Node, attack: Callable[[Association], Awaitable[int]]) -> tuple[int, str]:
    """Run ``attack(assoc)`` on its own association; its status and the node's line for it."""

    async def run() -> tuple[int, str]:
        async with await site.connect("HOSTILE") as assoc:
            return await attack(assoc), assoc.link.local

    status, name = asyncio.run(run())
    return status, site.live.wait_for(name)


def _attacker_dataset(uid: str, patient_id: str = "ATTACKER") -> Dataset:
    ds = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds.SOPClassUID, ds.SOPInstanceUID = CT, uid
    ds.PatientName, ds.PatientID = "Mallory", patient_id
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "CT"
    return ds


def _victim(site: _Node, tmp_path: Path) -> tuple[str, str, str, bytes]:
    """A victim object stored by a good client: (uid, study, series, its file's bytes)."""
    uid, study, series = generate_uid(), generate_uid(), generate_uid()
    path = make_object(tmp_path / "victim.dcm", uid, "VICTIM-1", study=study, series=series)
    assert site.good_store(path) == Status.SUCCESS
    assert site.find(uid, study, series) == [(uid, "VICTIM-1")]
    return uid, study, series, site.stored_file(uid)


def test_an_existing_uid_with_a_newline_is_refused_and_the_victim_intact(
    site: _Node, tmp_path: Path
) -> None:
    uid, study, series, victim_file = _victim(site, tmp_path)
    forged = uid + "\n"

    status, line = _hostile(site, lambda a: _raw_store(a, forged, _attacker_dataset(forged)))

    assert status == Status.INVALID_OBJECT_INSTANCE.value == 0x0117
    assert "0x0117" in line and repr(forged) in line  # the newline named, escaped, not written
    assert site.find(uid, study, series) == [(uid, "VICTIM-1")]  # not the attacker's PatientID
    assert site.stored_file(uid) == victim_file
    assert not [name for name in site.files() if "\n" in name]


@pytest.mark.parametrize("uid", [".", ".."])
def test_dot_and_dot_dot_are_not_uids(site: _Node, uid: str) -> None:
    before = site.files()

    status, line = _hostile(site, lambda a: _raw_store(a, uid, _attacker_dataset(uid)))

    assert status == Status.INVALID_OBJECT_INSTANCE
    assert f"SOP instance UID {uid!r}, which is not a UID" in line
    assert site.files() == before  # nothing written, nothing replaced
    assert not (site.store / "objects" / f"{uid}.dcm").exists()


def test_a_resend_from_another_patient_is_refused_audited_and_the_object_kept(
    site: _Node, tmp_path: Path
) -> None:
    uid, study, series, victim_file = _victim(site, tmp_path)
    other = make_object(tmp_path / "other.dcm", uid, "ATTACKER-2", study=study, series=series)

    status, line = _hostile(site, lambda a: a.store(other))

    assert status == Status.NOT_AUTHORIZED.value == 0x0124
    # the sender is told that much in the response, nothing of what the store holds
    assert getattr(status, "comment", None) == "this SOP Instance UID is held as another object"
    assert "0x0124" in line and "PatientID differ" in line and "held is kept" in line
    assert "ATTACKER-2" not in line and "VICTIM-1" not in line  # patient IDs go to the audit only
    assert site.find(uid, study, series) == [(uid, "VICTIM-1")]
    assert site.stored_file(uid) == victim_file
    (alert,) = site.audit_records("Security Alert", containing=uid)
    description = alert.findtext("EventIdentification/EventOutcomeDescription") or ""
    assert "'VICTIM-1' held, 'ATTACKER-2' received" in description
    assert alert.find("EventIdentification/EventTypeCode[@csd-code='110132']") is not None
    _valid(alert)


def test_the_same_object_again_replaces_it_and_is_audited_as_an_update(
    site: _Node, tmp_path: Path
) -> None:
    uid, study, series = generate_uid(), generate_uid(), generate_uid()
    first = make_object(tmp_path / "first.dcm", uid, "P-SAME", study=study, series=series, marker=1)
    assert site.good_store(first) == Status.SUCCESS
    corrected = make_object(
        tmp_path / "again.dcm", uid, "P-SAME", study=study, series=series, marker=2
    )
    new = make_object(tmp_path / "new.dcm", generate_uid(), "P-SAME", study=study, series=series)

    async def resend() -> tuple[list[int], str]:
        async with await site.connect("MODALITY") as assoc:
            return [await assoc.store(corrected), await assoc.store(new)], assoc.link.local

    statuses, name = asyncio.run(resend())

    assert statuses == [Status.SUCCESS, Status.SUCCESS]
    assert site.live.naming(name) == []  # a corrected re-send is no attack: no warning
    held = pydicom.dcmread(io.BytesIO(site.stored_file(uid)))
    assert held.PixelData[0] == 2  # the corrected copy
    assert site.find(uid, study, series) == [(uid, "P-SAME")]
    # Written before the answer: an update of a copy held (A.5.3.7, action U), the patient named.
    (update,) = _transfers(site, study, action="U")
    assert _study_counts(update) == {(study, CT): 1}
    assert update.find("ParticipantObjectIdentification[@ParticipantObjectID='P-SAME']") is not None
    _valid(update)
    # The association's own record (action C), once it has ended: the new object only. (The
    # first object's association wrote one too: two C records for the study, of one each.)
    created = _wait_for(lambda: _transfers(site, study, action="C"), count=2)
    assert [_study_counts(record) for record in created] == [{(study, CT): 1}] * 2


def _study_counts(record: ET.Element) -> dict[tuple[str, str], int]:
    """(Study Instance UID, SOP class) -> number of instances, as the record counts them."""
    return {
        (str(study.get("ParticipantObjectID")), str(sop.get("UID"))): int(
            str(sop.get("NumberOfInstances"))
        )
        for study in record.iterfind("ParticipantObjectIdentification")
        for sop in study.iterfind("ParticipantObjectDescription/SOPClass")
    }


def _transfers(site: _Node, study: str, *, action: str) -> list[ET.Element]:
    """The Instances Transferred records of ``study`` with EventActionCode ``action``."""
    records = site.audit_records("DICOM Instances Transferred", containing=study)
    return [
        r
        for r in records
        if r.find(f"EventIdentification[@EventActionCode='{action}']") is not None
    ]


def _wait_for(
    records: Callable[[], list[ET.Element]], count: int, timeout: float = 20
) -> list[ET.Element]:
    """The node writes an association's record once the association has ended: wait for it."""
    deadline = time.monotonic() + timeout
    while len(found := records()) < count:
        assert time.monotonic() < deadline, f"{len(found)} of {count} audit records written"
        time.sleep(0.05)  # polling the audit file: the node's only sign of having written it
    assert len(found) == count
    return found


def test_a_patient_id_of_70000_bytes_is_refused_and_nothing_indexed(
    site: _Node, tmp_path: Path
) -> None:
    uid, study, series = generate_uid(), generate_uid(), generate_uid()
    path = make_object(
        tmp_path / "long.dcm",
        uid,
        "P" * 70_000,
        study=study,
        series=series,
        syntax=ImplicitVRLittleEndian,
    )

    status, line = _hostile(site, lambda a: a.store(path))

    assert status == Status.DATASET_DOES_NOT_MATCH_SOP_CLASS.value == 0xA900
    assert "PatientID is 70000 bytes long" in line
    assert site.find(uid, study, series) == []
    assert not list((site.store / "objects").rglob(f"{uid}.dcm"))


def _valid(record: ET.Element) -> None:
    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    document = etree.fromstring(ET.tostring(record))
    assert schema.validate(document), schema.error_log
