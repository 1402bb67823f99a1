"""When "DICOM Instances Transferred" is written for objects received: within a delay of the
first unreported one (not at the association's end), one message per patient, and at once
when the association ends or the node stops. A real index and a real file sink; the
association is a stand-in, as only its names are read."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lxml import etree
from pydicom.uid import generate_uid

from dicomtls.audit import AuditTrail, FileSink
from dicomtls.dimse.status import Status
from dicomtls.net.hooks import Admission, StoreRecord
from dicomtls.node.index import Index
from dicomtls.node.reporting import Reporter

CT = "1.2.840.10008.5.1.4.1.1.2"
TRANSFERRED = "110104"


class Scene:
    """A reporter writing to a real audit file, and objects indexed for two patients."""

    def __init__(self, tmp: Path, report_after: float) -> None:
        self.log = tmp / "audit.log"
        self.index = Index(tmp / "index.sqlite")
        self.trail = AuditTrail([FileSink(self.log)])
        self.reporter = Reporter(
            "PACS", "127.0.0.1", self.index, audit=self.trail, report_after=report_after
        )
        self.events = self.reporter.service_events()
        self.studies = {"P1": generate_uid(), "P2": generate_uid()}

    def association(self, calling: str = "CT1") -> Any:
        association: Any = SimpleNamespace(  # what the audit hooks read of an Association
            calling_ae=calling,
            peer="10.1.2.3:4000",
            link=SimpleNamespace(session=None),
            end_reason="released",
        )
        assert self.events.on_accepted is not None
        self.events.on_accepted(association, Admission())
        return association

    def store(self, association: Any, patient: str, status: int = Status.SUCCESS) -> None:
        uid = generate_uid()
        self.index.add(
            self.log.parent / f"{uid}.dcm",
            {
                "PatientID": patient,
                "PatientName": f"Doe^{patient}",
                "SOPClassUID": CT,
                "SOPInstanceUID": uid,
                "StudyInstanceUID": self.studies[patient],
            },
        )
        assert self.events.on_stored is not None
        self.events.on_stored(association, StoreRecord(CT, uid, status, 1000, 0.01))

    def end(self, association: Any) -> None:
        assert self.events.on_ended is not None
        self.events.on_ended(association)

    def transfers(self) -> list[tuple[str, int, str]]:
        """(patient ID, instances, outcome) of each Instances Transferred message, in order."""
        found = []
        lines = self.log.read_bytes().splitlines() if self.log.exists() else []
        for line in lines:
            root = etree.fromstring(line)
            ident = root.find("EventIdentification")
            assert ident is not None
            event = ident.find("EventID")
            if event is None or event.get("csd-code") != TRANSFERRED:
                continue
            patients = [
                p.get("ParticipantObjectID")
                for p in root.iter("ParticipantObjectIdentification")
                if p.get("ParticipantObjectTypeCodeRole") == "1"  # the patient
            ]
            count = sum(int(c.get("NumberOfInstances", "0")) for c in root.iter("SOPClass"))
            found.append(
                (patients[0] if patients else "", count, str(ident.get("EventOutcomeIndicator")))
            )
        return found

    def events_in_file(self) -> list[str]:
        codes = []
        for line in self.log.read_bytes().splitlines():
            event = etree.fromstring(line).find("EventIdentification/EventID")
            assert event is not None
            codes.append(str(event.get("csd-code")))
        return codes

    def close(self) -> None:
        self.trail.close()
        self.index.close()


async def _until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.01)


async def _batches(scene: Scene) -> None:
    association = scene.association()
    for patient in ("P1", "P1", "P2", "P1"):
        scene.store(association, patient)
    assert scene.transfers() == []  # not one message per object: they wait a moment
    await _until(lambda: len(scene.transfers()) == 2)  # the association is still open
    assert sorted(scene.transfers()) == [("P1", 3, "0"), ("P2", 1, "0")]
    scene.store(association, "P2")
    scene.store(association, "P2", status=Status.OUT_OF_RESOURCES)
    await _until(lambda: len(scene.transfers()) == 3)  # a second batch, on its own timer
    assert scene.transfers()[2] == ("P2", 1, "4")  # one of them failed: minor failure
    scene.end(association)
    assert len(scene.transfers()) == 3  # nothing was left to report at the end


def test_objects_are_reported_within_the_delay_one_message_per_patient(tmp_path: Path) -> None:
    scene = Scene(tmp_path, report_after=0.2)
    try:
        asyncio.run(_batches(scene))
    finally:
        scene.close()


async def _at_once(scene: Scene) -> None:
    first, second = scene.association("CT1"), scene.association("CT2")
    scene.store(first, "P1")
    scene.store(first, "P1")
    scene.store(second, "P2")
    scene.end(first)  # reported now, not an hour later
    assert scene.transfers() == [("P1", 2, "0")]
    scene.reporter.stopped()  # the node stops with the second association still open
    assert scene.transfers() == [("P1", 2, "0"), ("P2", 1, "0")]
    assert scene.events_in_file()[-1] == "110100"  # ... before Application Activity: stop


def test_association_end_and_node_stop_report_at_once(tmp_path: Path) -> None:
    scene = Scene(tmp_path, report_after=3600.0)
    try:
        asyncio.run(_at_once(scene))
    finally:
        scene.close()
