"""The real ``dicomtls`` command in subprocesses: a node started as a person would, used as printed."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from ..node.test_storage import SERIES_UID, STUDY_UID, _make_file

EXE = str(Path(sys.executable).with_name("dicomtls"))
ENV = {**os.environ, "COLUMNS": "200"}  # wide tables whatever terminal the tests run in


# A client's TLS options for a PKI in ``pki/`` under the command's working folder.
CLIENT_TLS = (
    "--ca",
    "pki/ca.pem",
    "--tls-cert",
    "pki/client-chain.pem",
    "--tls-key",
    "pki/client.key",
)


def study_keys(study_uid: str) -> tuple[str, ...]:
    """The options naming one study at the study level."""
    return ("--level", "study", "-k", f"StudyInstanceUID={study_uid}")


# The test study (node/test_storage's files).
STUDY = study_keys(STUDY_UID)


def run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV
    )


def get_study(
    port: int, *args: str, cwd: Path, study_uid: str = STUDY_UID, out: str = "retrieved"
) -> subprocess.CompletedProcess[str]:
    """``dicomtls get`` of a study (the test study unless told) from the node on ``port``
    into ``cwd/out``."""
    keys = study_keys(study_uid)
    return run("get", "127.0.0.1", str(port), "--out", out, *keys, *args, cwd=cwd)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Node:
    def __init__(self, cwd: Path, *args: str, port: int | None = None) -> None:
        """Start ``dicomtls serve``; with ``port`` given, the args (e.g. --config) choose it."""
        self.cwd = cwd
        self.port = port or _free_port()
        where = [] if port else ["--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [EXE, "serve", *where, *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=ENV,
        )
        self.output: list[str] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # the node says when it listens: no sleeping
            self.output.append(line)
            if "listening on" in line:
                break
        else:
            raise AssertionError("node did not start:\n" + "".join(self.output))
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None

    def wait_for(self, text: str, timeout: float = 20) -> str:
        """The next output line containing ``text``.

        A reader thread, because select() on the pipe cannot see lines already in
        Python's buffer, and a blocking readline could wait forever.
        """
        if self._reader is None:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line with {text!r}:\n" + "".join(self.output)) from None
            if line is None:
                raise AssertionError(f"node exited before {text!r}:\n" + "".join(self.output))
            if text in line:
                return line

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    @property
    def client_command(self) -> list[str]:
        text = "".join(self.output).replace("\n", " ")
        match = re.search(r"dicomtls (echo localhost .*?client\.key)", text)
        assert match, text
        return shlex.split(match.group(1))

    def stop(self) -> str:
        self.proc.terminate()
        if self._reader is not None:
            self.proc.wait(timeout=30)
            self._reader.join(timeout=30)
            return "".join(self.output)
        rest, _ = self.proc.communicate(timeout=30)
        return "".join(self.output) + rest


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    started = Node(tmp_path)
    yield started
    started.stop()


def _folder(tmp: Path, count: int = 3) -> Path:
    folder = tmp / "folder" / "sub"
    folder.mkdir(parents=True)
    for i in range(count):
        _make_file(folder / f"img{i}.dcm", pixels=30_000)
    (folder / "README.txt").write_text("not DICOM")
    return tmp / "folder"


def test_fresh_node_prints_a_client_command_that_works(node: Node, tmp_path: Path) -> None:
    assert (tmp_path / "dicom-store" / "pki" / "ca.pem").exists()
    done = run(*node.client_command[:1], *node.client_command[1:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "0x0000 success" in done.stdout


def test_get_is_refused_where_default_services_leave_it_out(tmp_path: Path) -> None:
    """C-GET is a default service like C-FIND; an operator who leaves it out is obeyed."""
    config = tmp_path / "node.toml"
    config.write_text('[access]\ndefault_services = ["echo", "store", "find"]\n')
    node = Node(tmp_path, "--config", str(config))
    try:
        got = get_study(node.port, cwd=tmp_path)
    finally:
        log = node.stop()
    assert got.returncode == 1
    assert "did not accept C-GET" in got.stderr and "'DICOMTLS-SCU'" in got.stderr
    assert len(got.stderr.strip().splitlines()) == 1
    assert "the default access policy does not grant get" in log


def test_store_find_get_move_index(node: Node, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    stored = run("store", "127.0.0.1", str(node.port), str(folder), "--json", cwd=tmp_path)
    assert stored.returncode == 0, stored.stderr
    report = json.loads(stored.stdout)
    assert (
        report["stored"] == 3 and report["failed"] == [] and len(report["skipped_non_dicom"]) == 1
    )

    found = run(
        "find",
        "127.0.0.1",
        str(node.port),
        "--level",
        "series",
        "-k",
        f"StudyInstanceUID={STUDY_UID}",
        "-k",
        "SeriesInstanceUID",
        "-k",
        "Modality",
        "--json",
        cwd=tmp_path,
    )
    assert found.returncode == 0, found.stderr
    series = json.loads(found.stdout)
    assert len(series) == 1 and series[0]["Modality"] == "CT"

    got = get_study(node.port, "--json", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["completed"] == 3
    sent = {pydicom.dcmread(p).SOPInstanceUID for p in folder.rglob("*.dcm")}
    assert {p.stem for p in (tmp_path / "retrieved").glob("*.dcm")} == sent

    rebuilt = run("index", "--rebuild", cwd=tmp_path)  # while the node runs
    assert rebuilt.returncode == 0 and "indexed 3 object(s)" in rebuilt.stderr + rebuilt.stdout

    refused = run(
        "move",
        "127.0.0.1",
        str(node.port),
        "--dest",
        "NOWHERE",
        "-k",
        f"StudyInstanceUID={STUDY_UID}",
        cwd=tmp_path,
    )
    assert refused.returncode != 0 and "move destination unknown" in refused.stdout


def test_index_survives_restart_and_is_rebuilt_from_files(tmp_path: Path) -> None:
    first = Node(tmp_path)
    assert (
        run("store", "127.0.0.1", str(first.port), str(_folder(tmp_path)), cwd=tmp_path).returncode
        == 0
    )
    first.stop()
    again = Node(tmp_path)
    try:
        assert "(3 objects indexed)" in "".join(again.output)
    finally:
        again.stop()
    for leftover in (tmp_path / "dicom-store").glob("index.sqlite*"):
        leftover.unlink()
    junk = next((tmp_path / "dicom-store" / "objects").iterdir()) / "junk.dcm"
    junk.write_text("not DICOM\n")  # skipped and named; the rebuild goes on
    rebuilt = run("index", "--rebuild", cwd=tmp_path)
    said = rebuilt.stdout + rebuilt.stderr
    assert rebuilt.returncode == 0 and "indexed 3 object(s)" in said, said
    assert "1 skipped (each named above)" in said and "junk.dcm skipped" in said, said
    junk.unlink()
    third = Node(tmp_path)
    try:
        found = run(
            "find",
            "127.0.0.1",
            str(third.port),
            "--level",
            "image",
            "-k",
            f"StudyInstanceUID={STUDY_UID}",
            "-k",
            f"SeriesInstanceUID={SERIES_UID}",
            "-k",
            "SOPInstanceUID",
            "--json",
            cwd=tmp_path,
        )
        assert len(json.loads(found.stdout)) == 3
    finally:
        third.stop()


def test_move_to_a_second_node(tmp_path: Path) -> None:
    viewer_dir = tmp_path / "viewer"
    viewer_dir.mkdir()
    archive_dir = tmp_path / "archive"
    archive_dir.mkdir()
    viewer = Node(viewer_dir, "--ae-title", "VIEWER")
    pki = viewer_dir / "dicom-store" / "pki"
    tls = [
        "--ca",
        str(pki / "ca.pem"),
        "--tls-cert",
        str(pki / "server-chain.pem"),
        "--tls-key",
        str(pki / "server.key"),
    ]
    archive = Node(archive_dir, "--move-destination", f"VIEWER=127.0.0.1:{viewer.port}", *tls)
    try:
        folder = _folder(tmp_path)
        client = [
            "--ca",
            str(pki / "ca.pem"),
            "--tls-cert",
            str(pki / "client-chain.pem"),
            "--tls-key",
            str(pki / "client.key"),
        ]
        assert (
            run(
                "store", "127.0.0.1", str(archive.port), str(folder), *client, cwd=tmp_path
            ).returncode
            == 0
        )
        moved = run(
            "move",
            "127.0.0.1",
            str(archive.port),
            "--dest",
            "VIEWER",
            *STUDY,
            "--json",
            *client,
            cwd=tmp_path,
        )
        assert moved.returncode == 0, moved.stderr + moved.stdout
        assert json.loads(moved.stdout)["completed"] == 3
        assert len(list((viewer_dir / "dicom-store" / "objects").rglob("*.dcm"))) == 3
    finally:
        viewer.stop()
        archive.stop()


def test_failures_are_one_line_with_an_exit_code(node: Node, tmp_path: Path) -> None:
    cases = [
        (["echo", "127.0.0.1", str(_free_port())], "TCP connection refused"),
        (["echo", "127.0.0.1", str(node.port), "--called-ae", "WRONG"], "CALLED_AE_NOT_RECOGNIZED"),
        (["echo", "127.0.0.1", str(node.port), "--no-tls"], "connect with TLS"),
        (["echo", "127.0.0.1", str(node.port), "--verify", "bogus"], "unknown verify flag 'bogus'"),
        (["store", "127.0.0.1", str(node.port), "missing-folder"], "does not exist"),
        (["find", "127.0.0.1", str(node.port), "-k", "NotAKeyword=1"], "not a DICOM keyword"),
    ]
    for args, expected in cases:
        done = run(*args, cwd=tmp_path)
        assert done.returncode != 0, args
        assert expected in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert (
            len(
                [
                    line
                    for line in done.stderr.splitlines()
                    if line.startswith(("dicomtls:", "Error:"))
                ]
            )
            == 1
        )


def test_bad_key_password_and_port_in_use(node: Node, tmp_path: Path) -> None:
    from dicomtls.pki import CertificateAuthority

    ca = CertificateAuthority.create("CLI CA")
    ident = ca.issue("locked")
    (tmp_path / "locked.pem").write_bytes(ident.cert_chain_pem())
    (tmp_path / "locked.key").write_bytes(ident.private_key_pem(password=b"right"))
    echo_locked = ("echo", "127.0.0.1", str(node.port), "--tls-cert", "locked.pem")
    done = run(*echo_locked, "--tls-key", "locked.key", "--key-password", "wrong", cwd=tmp_path)
    assert done.returncode == 1 and "wrong password for private key locked.key" in done.stderr
    other_key = str(tmp_path / "dicom-store/pki/client.key")
    mismatched = run(*echo_locked, "--tls-key", other_key, cwd=tmp_path)
    assert mismatched.returncode == 1 and "does not match the certificate" in mismatched.stderr
    busy = run(
        "serve", "--host", "127.0.0.1", "--port", str(node.port), "--store", "other", cwd=tmp_path
    )
    assert busy.returncode == 1 and "address already in use" in busy.stderr.lower()
    assert "Traceback" not in done.stderr + mismatched.stderr + busy.stderr


def test_pki_inspect_ciphers(tmp_path: Path) -> None:
    assert run("pki", "init", "pki", cwd=tmp_path).returncode == 0
    assert run("pki", "issue", "pki", "modality", "--ip", "10.0.0.9", cwd=tmp_path).returncode == 0
    assert (
        run("pki", "issue", "pki", "expired", "--broken", "expired", cwd=tmp_path).returncode == 0
    )
    shown = run("inspect", "pki/modality-chain.pem", cwd=tmp_path)
    assert (
        "Extended Key Usage: serverAuth, clientAuth" in shown.stdout
        and "IP:10.0.0.9" in shown.stdout
    )
    expired = json.loads(run("inspect", "pki/expired.pem", "--json", cwd=tmp_path).stdout)
    assert expired[0]["warnings"] == ["expired"]
    table = run("ciphers", "--profile", "bcp195-rfc8996", cwd=tmp_path)
    assert "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" in table.stdout and "B.12" in table.stdout
    again = run("pki", "init", "pki", cwd=tmp_path)
    assert again.returncode == 2 and "already holds a PKI" in again.stderr


def test_help_everywhere_has_examples(tmp_path: Path) -> None:
    for command in (
        "serve",
        "echo",
        "store",
        "find",
        "move",
        "get",
        "inspect",
        "ciphers",
        "index",
        "demo",
    ):
        done = run(command, "--help", cwd=tmp_path)
        assert done.returncode == 0 and "Example" in done.stdout, command
    assert os.access(EXE, os.X_OK)


def test_config_file_with_tls_keys(tmp_path: Path) -> None:
    assert run("pki", "init", "pki", cwd=tmp_path).returncode == 0
    port = _free_port()
    (tmp_path / "node.toml").write_text(
        f'port = {port}\nae_title = "FROMTOML"\ntls_cert = "pki/server-chain.pem"\n'
        'tls_key = "pki/server.key"\nca = ["pki/ca.pem"]\nverify = "peer,fail-if-no-peer-cert"\n'
    )
    node = Node(tmp_path, "--host", "127.0.0.1", "--config", "node.toml", port=port)
    try:
        assert (
            "FROMTOML" in "".join(node.output) and not (tmp_path / "dicom-store" / "pki").exists()
        )
        echo = run(
            "echo",
            "127.0.0.1",
            str(port),
            "--called-ae",
            "FROMTOML",
            *CLIENT_TLS,
            cwd=tmp_path,
        )
        assert echo.returncode == 0, echo.stderr
    finally:
        node.stop()
    (tmp_path / "bad.toml").write_text('tls_cert = "nowhere.pem"\n')
    bad = run("serve", "--config", "bad.toml", cwd=tmp_path)
    assert bad.returncode == 2 and "tls_cert = 'nowhere.pem': file not found" in bad.stderr


def test_verbose_shows_each_certificate_and_the_cipher(node: Node, tmp_path: Path) -> None:
    done = run("echo", "127.0.0.1", str(node.port), "-v", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (
        "certificate at depth 1: OK" in done.stdout and "certificate at depth 0: OK" in done.stdout
    )
    assert "Subject Name: CN = server" in done.stdout and "SSL server : Yes" in done.stdout
    assert "Negotiated secure link" in done.stdout and "TLSv1.3" in done.stdout


def test_a_wrong_called_ae_title_is_explained_on_both_sides(tmp_path: Path) -> None:
    (tmp_path / "strict").mkdir()
    strict = Node(tmp_path / "strict")
    try:
        done = run(
            "echo", "127.0.0.1", str(strict.port), "--called-ae", "ANY-SCP", cwd=tmp_path / "strict"
        )
    finally:
        log = strict.stop()
    assert done.returncode != 0
    assert (
        "does not answer to called AE title 'ANY-SCP'" in done.stderr
        and "--called-ae" in done.stderr
    )
    assert "called AE title 'ANY-SCP' is not ours ('DICOMTLS')" in log
    assert "--accept-any-called-ae" in log


def test_accept_any_called_ae_answers_whatever_title_is_called(tmp_path: Path) -> None:
    lenient = Node(tmp_path, "--accept-any-called-ae")
    try:
        done = run("echo", "127.0.0.1", str(lenient.port), "--called-ae", "ANY-SCP", cwd=tmp_path)
    finally:
        lenient.stop()
    assert done.returncode == 0, done.stderr
    assert "0x0000" in done.stdout


def _compressed_samples(folder: Path) -> dict[str, bytes]:
    """pydicom's own encoded files (local ones only), each under a fresh SOP instance UID
    and one study; SOP instance UID -> the data set bytes as stored."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study = generate_uid()
    kept = {}
    for name in (
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEG2000.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
        "MR_small.dcm",
    ):
        path = get_testdata_file(name)
        assert isinstance(path, str)  # a path: read=True was not asked
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.PatientID = study, "COMPRESSED"
        ds.save_as(folder / name)
        kept[ds.SOPInstanceUID] = _data_set(folder / name)
    return kept


def _data_set(path: Path) -> bytes:
    from dicomtls.dimse.part10 import read_header

    return path.read_bytes()[read_header(path).dataset_offset :]


def test_get_brings_compressed_objects_back_as_stored(node: Node, tmp_path: Path) -> None:
    sent = _compressed_samples(tmp_path / "compressed")
    stored = run(
        "store", "127.0.0.1", str(node.port), str(tmp_path / "compressed"), "--json", cwd=tmp_path
    )
    assert stored.returncode == 0, stored.stderr
    assert json.loads(stored.stdout)["stored"] == len(sent)
    study = pydicom.dcmread(next((tmp_path / "compressed").glob("*.dcm"))).StudyInstanceUID
    got = get_study(node.port, "--json", cwd=tmp_path, study_uid=study, out="back")
    assert got.returncode == 0, got.stderr + got.stdout
    assert json.loads(got.stdout)["completed"] == len(sent)
    back = {p.stem: _data_set(p) for p in (tmp_path / "back").glob("*.dcm")}
    assert back == sent  # every data set bit for bit, in its own transfer syntax


def test_get_in_one_syntax_converts_what_the_node_can(node: Node, tmp_path: Path) -> None:
    sent = _compressed_samples(tmp_path / "compressed")
    assert (
        run(
            "store", "127.0.0.1", str(node.port), str(tmp_path / "compressed"), cwd=tmp_path
        ).returncode
        == 0
    )
    study = pydicom.dcmread(next((tmp_path / "compressed").glob("*.dcm"))).StudyInstanceUID
    got = get_study(
        node.port,
        "--ts",
        "ExplicitVRLittleEndian",
        "--json",
        cwd=tmp_path,
        study_uid=study,
        out="back",
    )
    report = json.loads(got.stdout)
    back = list((tmp_path / "back").glob("*.dcm"))
    syntaxes = {str(pydicom.dcmread(p).file_meta.TransferSyntaxUID) for p in back}
    assert syntaxes == {"1.2.840.10008.1.2.1"}
    assert report["completed"] + report["failed"] == len(sent) and report["completed"] == len(back)


def test_query_keys_and_syntaxes_are_checked(node: Node, tmp_path: Path) -> None:
    twice = run(
        "find",
        "127.0.0.1",
        str(node.port),
        "-k",
        "PatientName=Mü*",
        "-k",
        "PatientName",
        cwd=tmp_path,
    )
    assert twice.returncode != 0 and "PatientName given twice" in twice.stderr
    bogus = run(
        "get",
        "127.0.0.1",
        str(node.port),
        "--out",
        "x",
        "-k",
        "StudyInstanceUID=1.2",
        "--ts",
        "NotASyntax",
        cwd=tmp_path,
    )
    assert bogus.returncode != 0 and "'NotASyntax' is not a transfer syntax" in bogus.stderr
