"""What the peer matrix tests share: one PKI for every party, our node as a real ``dicomtls
serve``, our client as the real ``dicomtls`` command, and the check each transfer ends with.

Every object that crosses the wire is compared with the file it came from
(:func:`corpus.compare`) and the outcome recorded for the table (:mod:`compat`); a test
collects the failures of all its objects before asserting, so one bad syntax does not
hide the state of the others.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

from dicomtls.dimse.part10 import read_header
from dicomtls.net.association import associate
from dicomtls.net.outbound import proposals_for_headers
from dicomtls.net.qr_scu import QueryModel
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.pki import CertificateAuthority, KeySpec
from dicomtls.tls.flags import VerifyFlags
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.acse import Proposal

from ..cli.test_node_cli import Node, run
from .compat import Outcome, record
from .corpus import PATIENT_NAME, Scenario, compare, prepare

OUR_AE = "DICOMTLS"
OUR_SCU_AE = "DICOMTLS-SCU"
PEER_FAIL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT
IDENTITIES = ("node", "client", "orthanc", "pynetdicom")


@dataclass(frozen=True)
class InteropPKI:
    """One EC P-256 root that issued every party's certificate (chain files hold the leaf
    and nothing else: the root signs the leaves directly)."""

    ca: Path
    certs: dict[str, Path]
    keys: dict[str, Path]

    def tls_args(self, name: str) -> list[str]:
        """The ``dicomtls`` options presenting ``name``'s certificate, trusting the root."""
        return [
            "--ca",
            str(self.ca),
            "--tls-cert",
            str(self.certs[name]),
            "--tls-key",
            str(self.keys[name]),
        ]

    def settings(self, name: str) -> TLSSettings:
        return TLSSettings(
            certificate=self.certs[name],
            private_key=self.keys[name],
            ca_files=self.ca,
            verify=PEER_FAIL,
        )

    def ssl_context(self, name: str, *, server: bool) -> ssl.SSLContext:
        """A standard-library context for pynetdicom: mutual TLS, the peer's chain verified."""
        purpose = ssl.Purpose.CLIENT_AUTH if server else ssl.Purpose.SERVER_AUTH
        context = ssl.create_default_context(purpose, cafile=str(self.ca))
        context.load_cert_chain(str(self.certs[name]), str(self.keys[name]))
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = False
        return context


@pytest.fixture(scope="module")
def interop_pki(tmp_path_factory: pytest.TempPathFactory) -> InteropPKI:
    folder = tmp_path_factory.mktemp("interop-pki")
    root = CertificateAuthority.create("dicomtls Interop Root CA", key=KeySpec.ec())
    ca = root.write_cert(folder / "ca.pem")
    certs, keys = {}, {}
    for name in IDENTITIES:
        written = root.issue(name, dns=["localhost"], ips=["127.0.0.1"]).write(folder, name=name)
        certs[name], keys[name] = written.chain, written.key
    return InteropPKI(ca, certs, keys)


def start_node(folder: Path, pki: InteropPKI, port: int, destinations: dict[str, int]) -> Node:
    """``dicomtls serve`` on ``port`` with the node's certificate; C-MOVE may go to
    ``destinations`` (AE title -> port on 127.0.0.1), over TLS with the same certificate."""
    folder.mkdir()
    moves = [
        a for ae, p in destinations.items() for a in ("--move-destination", f"{ae}=127.0.0.1:{p}")
    ]
    return Node(
        folder,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ae-title",
        OUR_AE,
        *pki.tls_args("node"),
        *moves,
        port=port,
    )


@dataclass
class NodeSite:
    """What every peer matrix has: our node, the PKI, and a folder for scenarios and the
    client's work; a test module's site adds its peers."""

    node: Node
    pki: InteropPKI
    folder: Path

    def scenario(self, name: str) -> Scenario:
        return prepare(self.folder / name.lower(), name)

    def client(self, command: str, port: int, called_ae: str, *args: str) -> Any:
        """Our ``dicomtls`` client against ``port``; its JSON answer."""
        done = dicomtls(
            self.pki, command, port, *args, "--json", cwd=self.folder, called_ae=called_ae
        )
        return json_out(done)

    def store_in_node(self, scenario: Scenario) -> None:
        """Our client stores the scenario in our node (bit for bit: the pynetdicom tests)."""
        stored = self.client("store", self.node.port, OUR_AE, str(scenario.folder))
        assert stored["stored"] == len(scenario.items), stored

    def in_node(self, sop_instance_uid: str) -> Path | None:
        return node_file(self.node, sop_instance_uid)


def node_file(node: Node, sop_instance_uid: str) -> Path | None:
    """Where the node stored this instance, if it did."""
    return file_in(node.cwd / "dicom-store" / "objects")(sop_instance_uid)


def file_in(folder: Path) -> Callable[[str], Path | None]:
    """A lookup of the file a store under ``folder`` wrote for a SOP Instance UID."""

    def find(sop_instance_uid: str) -> Path | None:
        found = list(folder.rglob(f"{sop_instance_uid}.dcm"))
        return found[0] if found else None

    return find


def dicomtls(
    pki: InteropPKI, command: str, port: int, *args: str, cwd: Path, called_ae: str
) -> subprocess.CompletedProcess[str]:
    """The ``dicomtls`` client as a person runs it, with our client certificate."""
    return run(
        command,
        "127.0.0.1",
        str(port),
        *args,
        "--called-ae",
        called_ae,
        *pki.tls_args("client"),
        cwd=cwd,
    )


def json_out(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.stdout.strip(), f"exit {done.returncode}, no output; stderr:\n{done.stderr}"
    return json.loads(done.stdout)


def retrieve_proposals(scenario: Scenario, model: QueryModel) -> list[Proposal]:
    """What our C-GET SCU proposes for the scenario's objects: the GET model, and for each
    storage class one context per syntax its objects are in and the native fallbacks, with
    us in the SCP role (PS3.4 C.4.3.1: the C-STOREs come back on this association)."""
    headers = [read_header(item.path) for item in scenario.items]
    storage = [
        p for p in proposals_for_headers(headers) if p.abstract_syntax != "1.2.840.10008.1.1"
    ]
    return [Proposal(model.get_uid, ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2"))] + [
        Proposal(p.abstract_syntax, p.transfer_syntaxes, scu_role=False, scp_role=True)
        for p in storage
    ]


def study_identifier(scenario: Scenario) -> Dataset:
    """The C-GET/C-MOVE identifier that names the scenario's study."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel, identifier.StudyInstanceUID = "STUDY", scenario.study_uid
    return identifier


def get_study(pki: InteropPKI, port: int, called_ae: str, scenario: Scenario, out: Path) -> Any:
    """Our C-GET SCU retrieves the scenario's study from a peer into ``out``, proposing each
    object's own syntax; the retrieve's result."""
    model = QueryModel.STUDY_ROOT

    async def get() -> Any:
        assoc = await associate(
            "127.0.0.1",
            port,
            pki.settings("client"),
            calling_ae=OUR_SCU_AE,
            called_ae=called_ae,
            proposals=retrieve_proposals(scenario, model),
        )
        async with assoc:
            return await assoc.get(
                study_identifier(scenario), DurableStoreHandler(DurableStore(out, flat=True)), model
            )

    return asyncio.run(get())


def find_study_args(scenario: Scenario) -> list[str]:
    """``dicomtls find`` options asking for the scenario's study by its non-ASCII name."""
    return [
        "--level",
        "study",
        "-k",
        "PatientName=Müller*",
        "-k",
        f"PatientID={scenario.patient_id}",
        "-k",
        "StudyInstanceUID",
    ]


def image_level_args(scenario: Scenario, instances: str | None = None) -> list[str]:
    """``dicomtls find``/``get`` options naming instances of the scenario's series: every
    one, or those whose UIDs ``instances`` lists (backslash-separated)."""
    return [
        "--level",
        "image",
        "-k",
        f"StudyInstanceUID={scenario.study_uid}",
        "-k",
        f"SeriesInstanceUID={scenario.series_uid}",
        "-k",
        "SOPInstanceUID" if instances is None else f"SOPInstanceUID={instances}",
    ]


def check_objects(
    peer: str,
    service: str,
    direction: str,
    scenario: Scenario,
    received: Callable[[str], bytes | Path | None],
    *,
    re_encoding_peer: bool = False,
) -> list[str]:
    """Compare every object of ``scenario`` with what ``received(uid)`` gives back, record
    each outcome; the failures, as text."""
    failures = []
    for item in scenario.items:
        got = received(item.sop_instance_uid)
        label = item.sample.label
        if got is None:
            outcome = Outcome(peer, service, direction, label, "not received", False)
        else:
            comparison = compare(item.path, got)
            ok = comparison.ok(item.sample, re_encoding_peer=re_encoding_peer)
            outcome = Outcome(peer, service, direction, label, comparison.describe(), ok)
        record(outcome)
        if not outcome.ok:
            failures.append(f"{label}: {outcome.result}")
    return failures


def find_outcome(
    peer: str, direction: str, names: list[object], got: set[str], expected: set[str]
) -> Outcome:
    """A C-FIND check, recorded: one study found by the non-ASCII name, the name as
    stored, every instance listed."""
    ok = names == [PATIENT_NAME] and got == expected
    name = "name kept" if names == [PATIENT_NAME] else f"names {names!r}"
    listed = f"{len(got & expected)}/{len(expected)} instances"
    return record(
        Outcome(
            peer,
            "find",
            direction,
            "",
            f"study by non-ASCII name: {len(names)} match, {name}; {listed}",
            ok,
        )
    )
