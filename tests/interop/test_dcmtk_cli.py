"""The dicomtls command with DCMTK on the other end, both ways (TLS where Debian's DCMTK has it)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pydicom
import pytest

from ..cli.test_node_cli import STUDY, Node, _folder, run
from ..node.test_storage import STUDY_UID
from .conftest import RsaPKI, storescp

pytestmark = pytest.mark.interop


def _dcmtk(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60)


def test_dcmtk_tools_against_dicomtls_serve(tmp_path: Path) -> None:
    node = Node(tmp_path)
    (tmp_path / "plain").mkdir()
    plain = Node(tmp_path / "plain", "--no-tls")
    try:
        pki = tmp_path / "dicom-store" / "pki"
        tls = [
            "+tls",
            str(pki / "client.key"),
            str(pki / "client-chain.pem"),
            "+cf",
            str(pki / "ca.pem"),
        ]
        files = sorted(str(p) for p in _folder(tmp_path).rglob("*.dcm"))
        stored = _dcmtk(
            "storescu",
            "-v",
            *tls,
            "-aec",
            "DICOMTLS",
            "127.0.0.1",
            str(node.port),
            *files,
            cwd=tmp_path,
        )
        assert stored.returncode == 0, stored.stdout + stored.stderr
        assert (stored.stdout + stored.stderr).count("Received Store Response (Success)") == 3
        keys = [
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={STUDY_UID}",
            "-k",
            "PatientName",
        ]
        found = _dcmtk(
            "findscu",
            "-v",
            "-S",
            *tls,
            "-aec",
            "DICOMTLS",
            *keys,
            "127.0.0.1",
            str(node.port),
            cwd=tmp_path,
        )
        assert found.returncode == 0 and "Doe^Jane" in found.stdout + found.stderr
        # movescu and getscu of Debian's DCMTK 3.6.7 have no TLS: the same node, served in plain TCP
        assert (
            _dcmtk(
                "storescu", "-aec", "DICOMTLS", "127.0.0.1", str(plain.port), *files, cwd=tmp_path
            ).returncode
            == 0
        )
        out = tmp_path / "got"
        out.mkdir()
        got = _dcmtk(
            "getscu",
            "-S",
            "-aec",
            "DICOMTLS",
            *keys,
            "-od",
            str(out),
            "127.0.0.1",
            str(plain.port),
            cwd=tmp_path,
        )
        assert got.returncode == 0, got.stdout + got.stderr
        assert len(list(out.iterdir())) == 3
    finally:
        node.stop()
        plain.stop()


def test_storescu_of_the_retired_aes_profile_is_told_what_it_offered(
    tmp_path: Path, rsa_pki: RsaPKI
) -> None:
    """DCMTK's retired AES profile (+pa) against a BCP 195 node: the node's line says what
    storescu offered and which profile takes it; served as the line says, storescu stores."""
    cert, key = rsa_pki.files["scp"]
    tls = ["--tls-cert", str(cert), "--tls-key", str(key), "--ca", str(rsa_pki.ca)]
    sample = str(sorted(_folder(tmp_path).rglob("*.dcm"))[0])
    storescu = ["storescu", "-v", *rsa_pki.dcmtk_args("scu"), "+pa", "-aec", "DICOMTLS"]
    nodes = []
    for name, extra in (("bcp195-rfc8996", []), ("bcp195", ["--profile", "bcp195"])):
        (tmp_path / name).mkdir()
        nodes.append(Node(tmp_path / name, *tls, *extra))
    strict, suggested = nodes
    try:
        refused = _dcmtk(*storescu, "127.0.0.1", str(strict.port), sample, cwd=tmp_path)
        line = strict.wait_for("no shared cipher")
        stored = _dcmtk(*storescu, "127.0.0.1", str(suggested.port), sample, cwd=tmp_path)
    finally:
        for node in nodes:
            node.stop()
    assert refused.returncode != 0
    assert "the client offered TLSv1.2 with TLS_RSA_WITH_AES_128_CBC_SHA. Hint: " in line
    assert "serve this device with --profile bcp195 " in line
    assert "certificate, and ours is" not in line  # our RSA certificate suits those suites
    assert stored.returncode == 0, stored.stdout + stored.stderr
    assert "Received Store Response (Success)" in stored.stdout + stored.stderr


def test_movescu_against_dicomtls_serve(tmp_path: Path) -> None:
    """Plain TCP: Debian's movescu 3.6.7 has no TLS. The node moves to a second node."""
    (tmp_path / "viewer").mkdir()
    (tmp_path / "archive").mkdir()
    viewer = Node(tmp_path / "viewer", "--no-tls", "--ae-title", "VIEWER")
    archive = Node(
        tmp_path / "archive", "--no-tls", "--move-destination", f"VIEWER=127.0.0.1:{viewer.port}"
    )
    try:
        files = sorted(str(p) for p in _folder(tmp_path).rglob("*.dcm"))
        assert (
            _dcmtk(
                "storescu", "-aec", "DICOMTLS", "127.0.0.1", str(archive.port), *files, cwd=tmp_path
            ).returncode
            == 0
        )
        keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY_UID}"]
        moved = _dcmtk(
            "movescu",
            "-v",
            "-S",
            "-aec",
            "DICOMTLS",
            "-aem",
            "VIEWER",
            *keys,
            "127.0.0.1",
            str(archive.port),
            cwd=tmp_path,
        )
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert "Received Final Move Response (Success)" in moved.stdout + moved.stderr
        assert len(list((tmp_path / "viewer" / "dicom-store" / "objects").rglob("*.dcm"))) == 3
    finally:
        viewer.stop()
        archive.stop()


def test_dicomtls_client_against_storescp(tmp_path: Path, rsa_pki: RsaPKI) -> None:
    received = tmp_path / "received"
    received.mkdir()
    folder = _folder(tmp_path)

    async def run_against_storescp() -> tuple[
        subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]
    ]:
        async with storescp(rsa_pki, received, "--require-peer-cert") as port:
            args = [
                "127.0.0.1",
                str(port),
                "--called-ae",
                "STORESCP",
                *rsa_pki.client_args("scu"),
            ]
            loop = asyncio.get_running_loop()
            echo = await loop.run_in_executor(
                None, lambda: run("echo", *args, "--json", cwd=tmp_path)
            )
            store = await loop.run_in_executor(
                None,
                lambda: run("store", *args[:2], str(folder), *args[2:], "--json", cwd=tmp_path),
            )
            return echo, store

    echo, store = asyncio.run(run_against_storescp())
    assert echo.returncode == 0, echo.stderr
    assert json.loads(echo.stdout)["tls"]["protocol"] == "TLSv1.3"
    assert store.returncode == 0, store.stderr
    assert json.loads(store.stdout)["stored"] == 3
    sent = {pydicom.dcmread(p).SOPInstanceUID for p in folder.rglob("*.dcm")}
    assert {pydicom.dcmread(p).SOPInstanceUID for p in received.iterdir()} == sent


def test_dicomtls_client_against_dcmqrscp(tmp_path: Path) -> None:
    """find/get/store from the command line against DCMTK's archive (plain: no TLS in Debian's 3.6.7)."""
    from .conftest import _free_port, dcmtk_listener
    from .test_dcmtk_dicom import _dcmqrscp_config

    def argv(port: int) -> list[str]:
        return ["dcmqrscp", "-c", str(_dcmqrscp_config(tmp_path, port, _free_port()))]

    with dcmtk_listener(argv, tmp_path / "dcmqrscp.log") as port:
        common = ["127.0.0.1", str(port), "--called-ae", "ARCHIVE", "--no-tls"]
        stored = run(
            "store", *common[:2], str(_folder(tmp_path)), *common[2:], "--json", cwd=tmp_path
        )
        assert stored.returncode == 0 and json.loads(stored.stdout)["stored"] == 3, stored.stderr
        found = run(
            "find",
            *common,
            *STUDY,
            "-k",
            "PatientName",
            "--json",
            cwd=tmp_path,
        )
        assert found.returncode == 0 and json.loads(found.stdout)[0]["PatientName"] == "Doe^Jane"
        got = run(
            "get",
            *common,
            "--out",
            "got",
            *STUDY,
            "--json",
            cwd=tmp_path,
        )
        assert got.returncode == 0 and json.loads(got.stdout)["completed"] == 3, (
            got.stdout + got.stderr
        )
        assert "TLS is off" in found.stderr  # the opt-out is never silent
