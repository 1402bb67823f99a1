"""Orthanc 1.10 (Debian) and our node, each as SCU and SCP, over mutual TLS, every service,
every transfer syntax of the corpus; bytes compared after each transfer.

Orthanc stores and sends every data set through DCMTK, which re-encodes it: undefined
sequence lengths become explicit, encapsulated pixel data written as OW becomes OB,
trailing padding goes. Its objects therefore arrive with the values sent but not the
bytes (``re_encoding_peer``); the pynetdicom tests show our node keeps the bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..servers import free_port
from .compat import Outcome, record
from .corpus import Scenario
from .matrix import (
    OUR_AE,
    OUR_SCU_AE,
    InteropPKI,
    NodeSite,
    check_objects,
    file_in,
    find_outcome,
    find_study_args,
    get_study,
    image_level_args,
    interop_pki,  # noqa: F401  (fixture)
    start_node,
)
from .orthanc import ORTHANC_AE, Modality, Orthanc

JPEG_2000 = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}

pytestmark = pytest.mark.interop


@dataclass
class Site(NodeSite):
    """Orthanc and our node, each configured to reach the other over TLS."""

    orthanc: Orthanc
    peer: str

    def upload(self, scenario: Scenario) -> list[str]:
        return [self.orthanc.upload(item.path) for item in scenario.items]

    def dicomtls(self, command: str, *args: str) -> Any:
        return self.client(command, self.orthanc.dicom_port, ORTHANC_AE, *args)

    def check(
        self,
        service: str,
        direction: str,
        scenario: Scenario,
        received: Callable[[str], bytes | Path | None],
    ) -> list[str]:
        """:func:`check_objects` for Orthanc, which re-encodes what it stores and sends."""
        return check_objects(
            self.peer, service, direction, scenario, received, re_encoding_peer=True
        )

    def query(self, level: str, keys: dict[str, str]) -> list[dict[str, Any]]:
        """Orthanc's C-FIND SCU against our node; the answers, simplified."""
        asked = self.orthanc.call("POST", "/modalities/ours/query", {"Level": level, "Query": keys})
        return list(self.orthanc.call("GET", f"/queries/{asked['ID']}/answers?expand&simplify"))


@pytest.fixture(scope="module")
def site(interop_pki: InteropPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:  # noqa: F811
    folder = tmp_path_factory.mktemp("orthanc-site")
    (folder / "orthanc").mkdir()
    node_port = free_port()
    orthanc = Orthanc.start(
        folder / "orthanc",
        certificate=interop_pki.certs["orthanc"],
        key=interop_pki.keys["orthanc"],
        ca=interop_pki.ca,
        # Our node as a destination and caller, and our client's title as a caller.
        modalities=[Modality("ours", OUR_AE, node_port), Modality("ourscu", OUR_SCU_AE, node_port)],
        # Orthanc queries and answers in its DefaultEncoding, Latin1 unless told: a name's
        # ideographic and phonetic groups would be lost in C-FIND both ways.
        extra={"DefaultEncoding": "Utf8"},
    )
    try:
        node = start_node(folder / "node", interop_pki, node_port, {ORTHANC_AE: orthanc.dicom_port})
        try:
            version = orthanc.call("GET", "/system")["Version"]
            yield Site(node, interop_pki, folder, orthanc=orthanc, peer=f"Orthanc {version}")
        finally:
            node.stop()
    finally:
        orthanc.stop()


def test_echo_both_ways(site: Site) -> None:
    assert site.orthanc.call("POST", "/modalities/ours/echo", {}) == {}  # HTTP 200: Success
    record(Outcome(site.peer, "echo", "to-us", "", "success", True))
    echoed = site.dicomtls("echo")
    assert isinstance(echoed, dict) and echoed["ok"], echoed
    protocol = echoed["tls"]["protocol"]
    record(
        Outcome(site.peer, "echo", "to-peer", "", f"success ({protocol})", protocol == "TLSv1.3")
    )
    assert protocol == "TLSv1.3"


def test_store_to_orthanc(site: Site) -> None:
    scenario = site.scenario("STORE-TO-ORTHANC")
    stored = site.dicomtls("store", str(scenario.folder))
    failures = site.check("store", "to-peer", scenario, site.orthanc.file)
    assert not failures, failures
    assert isinstance(stored, dict) and stored["stored"] == len(scenario.items), stored


def test_store_from_orthanc(site: Site) -> None:
    scenario = site.scenario("STORE-FROM-ORTHANC")
    ids = site.upload(scenario)
    answer = site.orthanc.call(
        "POST", "/modalities/ours/store", {"Resources": ids, "Synchronous": True}
    )
    failures = site.check("store", "to-us", scenario, site.in_node)
    assert not failures, failures
    assert answer["FailedInstancesCount"] == 0 and answer["InstancesCount"] == len(ids), answer


def test_find_both_ways(site: Site) -> None:
    """A study found by its patient's non-ASCII name (a wildcard query), its instances listed;
    the name comes back as it was stored."""
    scenario = site.scenario("FIND")
    site.upload(scenario)
    site.store_in_node(scenario)
    uids = {item.sop_instance_uid for item in scenario.items}

    # Orthanc declares its character set in every query; a query that declares none gets
    # an answer declaring UTF-8 where its text needs it (tests/node: the index's answers).
    query = {"PatientName": "Müller*", "PatientID": scenario.patient_id, "StudyInstanceUID": ""}
    studies = site.query("Study", query)
    images = site.query(
        "Instance",
        {
            "StudyInstanceUID": scenario.study_uid,
            "SeriesInstanceUID": scenario.series_uid,
            "SOPInstanceUID": "",
        },
    )
    theirs = find_outcome(
        site.peer,
        "to-us",
        [s.get("PatientName") for s in studies],
        {i["SOPInstanceUID"] for i in images},
        uids,
    )

    # `dicomtls find` declares UTF-8 itself for a non-ASCII value (Orthanc reads UTF-8).
    studies = site.dicomtls("find", *find_study_args(scenario))
    images = site.dicomtls("find", *image_level_args(scenario))
    ours = find_outcome(
        site.peer,
        "to-peer",
        [s.get("PatientName") for s in studies],
        {i["SOPInstanceUID"] for i in images},
        uids,
    )
    assert theirs.ok and ours.ok, (theirs, ours)


def test_move_from_orthanc_to_our_node(site: Site) -> None:
    """Our client asks Orthanc to C-MOVE a study to our node."""
    scenario = site.scenario("MOVE-FROM-ORTHANC")
    site.upload(scenario)
    moved = site.dicomtls(
        "move", "--dest", OUR_AE, "--level", "study", "-k", f"StudyInstanceUID={scenario.study_uid}"
    )
    failures = site.check("move", "to-us", scenario, site.in_node)
    assert not failures, failures
    assert isinstance(moved, dict) and moved["completed"] == len(scenario.items), moved


def test_move_from_our_node_to_orthanc(site: Site) -> None:
    """Orthanc asks our node to C-MOVE a study to Orthanc (a configured move destination)."""
    scenario = site.scenario("MOVE-TO-ORTHANC")
    site.store_in_node(scenario)
    answer = site.orthanc.call(
        "POST",
        "/modalities/ours/move",
        {
            "Level": "Study",
            "Resources": [{"StudyInstanceUID": scenario.study_uid}],
            "TargetAet": ORTHANC_AE,
            "Synchronous": True,
        },
    )
    failures = site.check("move", "to-peer", scenario, site.orthanc.file)
    assert not failures, (failures, answer)


def test_get_from_orthanc(site: Site, tmp_path: Path) -> None:
    """Our C-GET SCU retrieves a study from Orthanc, proposing each object's own syntax."""
    scenario = site.scenario("GET-FROM-ORTHANC")
    site.upload(scenario)
    result = get_study(site.pki, site.orthanc.dicom_port, ORTHANC_AE, scenario, tmp_path)

    failures = site.check("get", "to-us", scenario, file_in(tmp_path))
    assert not failures, (failures, result)


def test_orthanc_has_no_get_scu(site: Site) -> None:
    """Orthanc 1.10's REST API offers no C-GET SCU: that direction is not Orthanc's to test."""
    routes = site.orthanc.call("GET", "/modalities/ours")
    assert "move" in routes and "get" not in routes
    record(Outcome(site.peer, "get", "to-peer", "", "n/a: Orthanc 1.10 has no C-GET SCU", True))


def test_get_command_from_orthanc(site: Site, tmp_path: Path) -> None:
    """`dicomtls get`, as a person runs it: its storage contexts are the uncompressed
    syntaxes today, and Orthanc converts what it holds compressed."""
    scenario = site.scenario("GET-COMMAND-FROM-ORTHANC")
    tested = scenario  # every syntax: `dicomtls get` proposes each in a context of its own
    site.upload(tested)
    got = site.dicomtls(
        "get",
        "--out",
        str(tmp_path),
        *image_level_args(scenario, "\\".join(i.sop_instance_uid for i in tested.items)),
    )

    failures = site.check("get-command", "to-us", tested, file_in(tmp_path))
    assert not failures, (failures, got)
    assert got["completed"] == len(tested.items), got
