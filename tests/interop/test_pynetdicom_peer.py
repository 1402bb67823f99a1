"""pynetdicom 3 (PyPI) and our node, each as SCU and SCP, over mutual TLS (the standard
library's ssl on pynetdicom's side), every service, every transfer syntax of the corpus.

pynetdicom keeps and sends data sets as bytes here, so every object whose syntax was
kept must arrive bit for bit. A second pynetdicom SCP accepts Implicit and Explicit VR
Little Endian only, as many a storage SCP does: what we have compressed, deflated or big
endian, we convert, and it must decode to the same pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from ..servers import free_port
from .compat import Outcome, record
from .corpus import SAMPLES
from .matrix import (
    OUR_AE,
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
    study_identifier,
)
from .pynetdicom_peer import (
    EVERY_SYNTAX,
    LITTLE_ENDIAN,
    PYNET_SCP_AE,
    Archive,
    PynetPeer,
    associate_scu,
    get_roles,
    little_endian_contexts,
    qr_context,
    restore_chunked,
    send_files_chunked,
    storage_contexts,
)

pytestmark = pytest.mark.interop

NATIVE_AE = "PYNETLE"


@dataclass
class Site(NodeSite):
    """Our node, a pynetdicom archive taking every syntax, and one taking little endian only."""

    peer: PynetPeer
    native: PynetPeer
    name: str
    native_name: str

    def scu(self, contexts: list[Any], **kwargs: Any) -> Any:
        tls = self.pki.ssl_context("pynetdicom", server=False)
        return associate_scu(self.node.port, OUR_AE, tls, contexts, **kwargs)


@pytest.fixture(scope="module")
def site(interop_pki: InteropPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:  # noqa: F811
    import pynetdicom

    folder = tmp_path_factory.mktemp("pynetdicom-site")
    node_port, port, native_port = free_port(), free_port(), free_port()
    sop_classes = list(dict.fromkeys(_sop_classes()))
    previous = send_files_chunked()
    server_tls = interop_pki.ssl_context("pynetdicom", server=True)
    client_tls = interop_pki.ssl_context("pynetdicom", server=False)
    peers = []
    try:
        for ae, p, syntaxes in (
            (PYNET_SCP_AE, port, EVERY_SYNTAX),
            (NATIVE_AE, native_port, LITTLE_ENDIAN),
        ):
            (folder / ae).mkdir()
            peers.append(
                PynetPeer(
                    Archive(folder / ae),
                    server_tls,
                    client_tls,
                    sop_classes,
                    syntaxes,
                    p,
                    {OUR_AE: node_port},
                    ae_title=ae,
                )
            )
        node = start_node(
            folder / "node", interop_pki, node_port, {PYNET_SCP_AE: port, NATIVE_AE: native_port}
        )
        try:
            name = f"pynetdicom {pynetdicom.__version__}"
            yield Site(
                node,
                interop_pki,
                folder,
                peer=peers[0],
                native=peers[1],
                name=name,
                native_name=f"{name}, uncompressed little endian only",
            )
        finally:
            node.stop()
    finally:
        for peer in peers:
            peer.stop()
        restore_chunked(previous)


def _sop_classes() -> list[str]:
    import pydicom

    from .corpus import TEST_FILES

    return [
        str(pydicom.dcmread(TEST_FILES / s.source, stop_before_pixels=True).SOPClassUID)
        for s in SAMPLES
    ]


def _final(responses: Any) -> tuple[int, list[Dataset]]:
    """The final status of a pynetdicom C-FIND/C-GET/C-MOVE and the pending identifiers."""
    status, pending = -1, []
    for response, identifier in responses:
        assert response is not None and "Status" in response, "no response from our node"
        status = int(response.Status)
        if status in (0xFF00, 0xFF01) and identifier is not None:
            pending.append(identifier)
    return status, pending


def test_echo_both_ways(site: Site) -> None:
    assoc = site.scu([qr_context(Verification)])
    try:
        status = int(assoc.send_c_echo().Status)
    finally:
        assoc.release()
    record(Outcome(site.name, "echo", "to-us", "", f"status 0x{status:04X}", status == 0))
    echoed = site.client("echo", site.peer.port, PYNET_SCP_AE)
    protocol = echoed["tls"]["protocol"]
    ok = echoed["ok"] and protocol.startswith("TLSv1.")
    record(Outcome(site.name, "echo", "to-peer", "", f"success ({protocol})", ok))
    assert status == 0 and ok, echoed


def test_store_from_pynetdicom(site: Site) -> None:
    scenario = site.scenario("STORE-FROM-PYNETDICOM")
    assoc = site.scu(storage_contexts(scenario))
    try:
        statuses = [int(assoc.send_c_store(item.path).Status) for item in scenario.items]
    finally:
        assoc.release()
    failures = check_objects(site.name, "store", "to-us", scenario, site.in_node)
    assert not failures, failures
    assert statuses == [0] * len(scenario.items)


def test_store_to_pynetdicom(site: Site) -> None:
    scenario = site.scenario("STORE-TO-PYNETDICOM")
    stored = site.client("store", site.peer.port, PYNET_SCP_AE, str(scenario.folder))
    failures = check_objects(site.name, "store", "to-peer", scenario, site.peer.archive.file)
    assert not failures, failures
    assert stored["stored"] == len(scenario.items), stored


def test_store_to_pynetdicom_taking_native_syntaxes_only(site: Site) -> None:
    """The peer refuses every syntax but uncompressed little endian: we convert the other
    objects, it decodes the same pixels."""
    scenario = site.scenario("STORE-TO-NATIVE")
    stored = site.client("store", site.native.port, NATIVE_AE, str(scenario.folder))
    failures = check_objects(
        site.native_name, "store", "to-peer", scenario, site.native.archive.file
    )
    assert not failures, failures
    assert stored["stored"] == len(scenario.items), stored


def test_find_both_ways(site: Site) -> None:
    scenario = site.scenario("FIND-PYNETDICOM")
    site.store_in_node(scenario)
    site.peer.archive.preload(scenario)
    uids = {item.sop_instance_uid for item in scenario.items}

    query = Dataset()
    query.SpecificCharacterSet = "ISO_IR 192"
    query.QueryRetrieveLevel, query.PatientName, query.PatientID = (
        "STUDY",
        "Müller*",
        scenario.patient_id,
    )
    query.StudyInstanceUID = ""
    images = Dataset()
    images.QueryRetrieveLevel, images.StudyInstanceUID = "IMAGE", scenario.study_uid
    images.SeriesInstanceUID, images.SOPInstanceUID = scenario.series_uid, ""
    assoc = site.scu([qr_context(StudyRootQueryRetrieveInformationModelFind)])
    try:
        status, studies = _final(
            assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
        )
        image_status, found = _final(
            assoc.send_c_find(images, StudyRootQueryRetrieveInformationModelFind)
        )
    finally:
        assoc.release()
    theirs = find_outcome(
        site.name,
        "to-us",
        [str(s.PatientName) for s in studies],
        {str(f.SOPInstanceUID) for f in found},
        uids,
    )

    listed_studies = site.client("find", site.peer.port, PYNET_SCP_AE, *find_study_args(scenario))
    listed = site.client("find", site.peer.port, PYNET_SCP_AE, *image_level_args(scenario))
    ours = find_outcome(
        site.name,
        "to-peer",
        [m.get("PatientName") for m in listed_studies],
        {m["SOPInstanceUID"] for m in listed},
        uids,
    )
    assert status == image_status == 0 and theirs.ok and ours.ok, (
        status,
        image_status,
        theirs,
        ours,
    )


@pytest.mark.parametrize("native", [False, True], ids=["every-syntax", "little-endian-only"])
def test_get_from_our_node(site: Site, native: bool) -> None:
    """pynetdicom's C-GET SCU retrieves a study from our node, proposing one context per
    syntax; or, like a viewer without decoders, uncompressed little endian only, and our
    node converts the rest."""
    scenario = site.scenario("GET-LE-BY-PYNETDICOM" if native else "GET-BY-PYNETDICOM")
    site.store_in_node(scenario)
    received: dict[str, bytes] = {}

    def on_store(event: evt.Event) -> int:
        request = cast(C_STORE, event.request)  # what an EVT_C_STORE carries
        received[str(request.AffectedSOPInstanceUID)] = event.encoded_dataset()
        return 0x0000

    storage = little_endian_contexts(scenario) if native else storage_contexts(scenario)
    contexts = [qr_context(StudyRootQueryRetrieveInformationModelGet), *storage]
    assoc = site.scu(
        contexts, ext_neg=get_roles(scenario), evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        status, _ = _final(
            assoc.send_c_get(study_identifier(scenario), StudyRootQueryRetrieveInformationModelGet)
        )
    finally:
        assoc.release()
    name = site.native_name if native else site.name
    failures = check_objects(name, "get", "to-peer", scenario, received.get)
    assert not failures, failures
    assert status == 0, f"final C-GET status 0x{status:04X}"


def test_get_from_pynetdicom(site: Site, tmp_path: Path) -> None:
    """Our C-GET SCU retrieves a study from pynetdicom, proposing each object's own syntax."""
    scenario = site.scenario("GET-FROM-PYNETDICOM")
    site.peer.archive.preload(scenario)
    result = get_study(site.pki, site.peer.port, PYNET_SCP_AE, scenario, tmp_path)

    failures = check_objects(site.name, "get", "to-us", scenario, file_in(tmp_path))
    assert not failures, (failures, result)
    assert result.ok and result.completed == len(scenario.items), result


def test_get_command_from_pynetdicom(site: Site, tmp_path: Path) -> None:
    """`dicomtls get` as a person runs it, against an SCP that converts nothing and does not
    return SOP Classes in Study: the command learns the classes instance by instance and
    proposes each in every syntax, so every object arrives as it is stored."""
    scenario = site.scenario("GET-COMMAND-FROM-PYNETDICOM")
    site.peer.archive.preload(scenario)
    got = site.client(
        "get",
        site.peer.port,
        PYNET_SCP_AE,
        "--out",
        str(tmp_path),
        "--level",
        "study",
        "-k",
        f"StudyInstanceUID={scenario.study_uid}",
    )
    failures = check_objects(site.name, "get-command", "to-us", scenario, file_in(tmp_path))
    assert not failures, (failures, got)
    assert got["completed"] == len(scenario.items), got


def test_move_from_pynetdicom_to_our_node(site: Site) -> None:
    """Our client asks pynetdicom to C-MOVE a study to our node; its sub-association offers
    one context per syntax."""
    scenario = site.scenario("MOVE-FROM-PYNETDICOM")
    site.peer.archive.preload(scenario)
    site.peer.move_contexts = storage_contexts(scenario)
    moved = site.client(
        "move",
        site.peer.port,
        PYNET_SCP_AE,
        "--dest",
        OUR_AE,
        "--level",
        "study",
        "-k",
        f"StudyInstanceUID={scenario.study_uid}",
    )
    failures = check_objects(site.name, "move", "to-us", scenario, site.in_node)
    assert not failures, failures
    assert moved["ok"] and moved["completed"] == len(scenario.items), moved


@pytest.mark.parametrize("native", [False, True], ids=["every-syntax", "little-endian-only"])
def test_move_from_our_node_to_pynetdicom(site: Site, native: bool) -> None:
    """pynetdicom asks our node to C-MOVE a study to a pynetdicom storage SCP; the one
    taking uncompressed little endian only gets the other objects converted by our node."""
    scenario = site.scenario("MOVE-TO-NATIVE" if native else "MOVE-TO-PYNETDICOM")
    site.store_in_node(scenario)
    target, name = (site.native, site.native_name) if native else (site.peer, site.name)
    destination = NATIVE_AE if native else PYNET_SCP_AE
    assoc = site.scu([qr_context(StudyRootQueryRetrieveInformationModelMove)])
    try:
        status, _ = _final(
            assoc.send_c_move(
                study_identifier(scenario), destination, StudyRootQueryRetrieveInformationModelMove
            )
        )
    finally:
        assoc.release()
    failures = check_objects(name, "move", "to-peer", scenario, target.archive.file)
    assert not failures, failures
    assert status == 0, f"final C-MOVE status 0x{status:04X}"
