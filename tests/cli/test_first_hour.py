"""The first hour with the command: what a new user meets after the README, item by item (issue 17)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from dicomtls.cli.client_jobs import SKIPPED_NAMED
from dicomtls.pki import BrokenKind

from ..interop.conftest import RsaPKI, storescp
from .test_node_cli import CLIENT_TLS, ENV, EXE, Node, _folder, run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    started = Node(tmp_path_factory.mktemp("node"))
    yield started
    started.stop()


# -- serve: its log, and how it stops -----------------------------------------------------------


def _log_lines(path: Path, level: str) -> list[str]:
    return [
        line
        for line in path.read_text().splitlines()
        if f" {level} dicomtls.node: association from" in line
    ]


def test_one_info_line_per_association_in_the_log_file(tmp_path: Path) -> None:
    served = Node(tmp_path, "--log-file", "node.log")
    try:
        stored = run("store", "127.0.0.1", str(served.port), str(_folder(tmp_path)), cwd=tmp_path)
        echo = run("echo", "127.0.0.1", str(served.port), cwd=tmp_path)
        assert stored.returncode == 0 and echo.returncode == 0, stored.stderr + echo.stderr
    finally:
        console = served.stop()
    assert served.proc.returncode == 0
    assert " INFO " not in console and " WARNING " not in console  # the log went to the file
    lines = _log_lines(tmp_path / "node.log", "INFO")
    assert len(lines) == 2, lines
    size = sum(p.stat().st_size for p in (tmp_path / "folder").rglob("*.dcm"))
    pattern = (
        r"association from 127\.0\.0\.1:\d+ \(calling 'DICOMTLS-SCU', called 'DICOMTLS', "
        r"TLSv1\.3 TLS_\w+\) released after \d+\.\d\d s: {stored} stored \({size} bytes\), "
        r"0 refused, 0 sent \(0 bytes\), 0 queries$"
    )
    assert re.search(pattern.format(stored=3, size=r"[\d,]+"), lines[0]), lines[0]
    received = re.search(r"stored \(([\d,]+) bytes\)", lines[0])
    assert (
        received is not None and 0 < int(received[1].replace(",", "")) < size
    )  # data sets: the files less their Part 10 headers
    assert re.search(pattern.format(stored=0, size="0"), lines[1]), lines[1]


def test_log_level_warning_leaves_the_associations_out(tmp_path: Path) -> None:
    served = Node(tmp_path, "--log-level", "warning", "--log-file", "node.log")
    try:
        assert run("echo", "127.0.0.1", str(served.port), cwd=tmp_path).returncode == 0
        wrong = run("echo", "127.0.0.1", str(served.port), "--called-ae", "WRONG", cwd=tmp_path)
        assert wrong.returncode == 1
    finally:
        served.stop()
    text = (tmp_path / "node.log").read_text()
    assert _log_lines(tmp_path / "node.log", "INFO") == [] and " INFO " not in text
    assert "rejected: CALLED_AE_NOT_RECOGNIZED" in text  # the warning is there


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_the_node_cleanly(tmp_path: Path, signum: int) -> None:
    served = Node(tmp_path)
    assert "Ctrl-C stops it" in served.output[-1]
    served.proc.send_signal(signum)
    rest, _ = served.proc.communicate(timeout=60)
    assert served.proc.returncode == 0
    assert "shutting down: running transfers may finish" in rest and "Traceback" not in rest
    assert "WARNING" not in rest  # not "draining: /healthz now answers 503": it has none


def test_a_retired_profile_is_warned_of_once(tmp_path: Path) -> None:
    """It came three times: the warning as Python shows it (our source file, line and code),
    then the log line once for the node's side and once for its C-MOVE connections."""
    served = Node(tmp_path, "--profile", "bcp195")
    try:
        started = "".join(served.output)
    finally:
        served.stop()
    warned = [line for line in started.splitlines() if "retired by DICOM PS3.15" in line]
    assert (
        len(warned) == 1 and " WARNING dicomtls.tls: TLS profile 'bcp195' (B.9) is " in (warned[0])
    ), started
    assert "UserWarning" not in started and "py.warnings" not in started


# -- clients --------------------------------------------------------------------------------------


def _ca_name(pki: Path) -> str:
    """The common name the PKI in ``pki`` gave its CA (it names its host and day)."""
    cert = x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_echo_says_success_once_and_lists_the_leaf_once(node: Node) -> None:
    said = run("echo", "127.0.0.1", str(node.port), cwd=node.cwd)
    assert re.fullmatch(
        rf"C-ECHO 127\.0\.0\.1:{node.port} \(DICOMTLS\): 0x0000 success in \d+ ms\n", said.stdout
    )
    shown = json.loads(run("echo", "127.0.0.1", str(node.port), "--json", cwd=node.cwd).stdout)
    chain = shown["tls"]["peer_chain"]
    assert [(c["depth"], c["subject"]) for c in chain] == [
        (0, "CN = server, O = dicomtls test PKI"),
        (1, f"CN = {_ca_name(node.cwd / 'dicom-store' / 'pki')}, O = dicomtls test PKI"),
    ]


def test_get_out_leaves_the_objects_and_nothing_else(node: Node, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    assert run("store", "127.0.0.1", str(node.port), str(folder), cwd=node.cwd).returncode == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own")
    study = pydicom.dcmread(next(folder.rglob("*.dcm"))).StudyInstanceUID
    got = run(
        "get",
        "127.0.0.1",
        str(node.port),
        "--out",
        str(mine),
        "-k",
        f"StudyInstanceUID={study}",
        "--json",
        cwd=node.cwd,
    )
    assert got.returncode == 0 and json.loads(got.stdout)["completed"] == 3, got.stderr
    sent = {f"{pydicom.dcmread(p).SOPInstanceUID}.dcm" for p in folder.rglob("*.dcm")}
    assert {p.name for p in mine.iterdir()} == sent | {"notes.txt"}  # no .incoming, .spare, *.part


def test_a_file_whose_meta_names_no_sop_class_is_skipped_not_the_batch(
    node: Node, tmp_path: Path
) -> None:
    """As in pydicom's own test files (meta_missing_tsyntax.dcm): the association could not
    even be proposed, and the whole batch ended in one line naming no file."""
    folder = _folder(tmp_path)
    odd = next(folder.rglob("*.dcm"))
    ds = pydicom.dcmread(odd)
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.UID("")
    ds.save_as(folder / "no-class.dcm", enforce_file_format=False)
    done = run("store", "127.0.0.1", str(node.port), str(folder), "--json", cwd=node.cwd)
    said = json.loads(done.stdout)
    assert (done.returncode, said["stored"], said["failed"]) == (0, 3, []), done.stderr
    assert sorted(Path(p).name for p in said["skipped_non_dicom"]) == ["README.txt", "no-class.dcm"]


def test_the_summary_names_the_skipped_files_and_why(node: Node, tmp_path: Path) -> None:
    """It gave a count only ('skipped (not DICOM) 7'): which, and why, the user had to find."""
    folder = _folder(tmp_path, count=1)
    for number in range(SKIPPED_NAMED + 1):
        (folder / f"note{number:02}.txt").write_text("not DICOM")
    done = run("store", "127.0.0.1", str(node.port), str(folder), cwd=node.cwd)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stdout.splitlines() if line.startswith("skipped ")]
    names = sorted(str(p) for p in folder.rglob("*.txt"))
    assert said == [
        f"skipped {name}: not a DICOM Part 10 file (no 'DICM' after the preamble)"
        for name in names[:SKIPPED_NAMED]
    ]
    assert "and 2 more skipped (--json lists them all)" in done.stdout.splitlines()
    listed = json.loads(
        run("store", "127.0.0.1", str(node.port), str(folder), "--json", cwd=node.cwd).stdout
    )
    assert sorted(listed["skipped_non_dicom"]) == names


@pytest.mark.parametrize("content", [None, "not DICOM"], ids=["empty-folder", "no-dicom-files"])
def test_a_folder_with_nothing_to_send_is_a_mistake(
    node: Node, tmp_path: Path, content: str | None
) -> None:
    """It printed an empty summary and exit code 0: it looked as if the studies were sent."""
    folder = tmp_path / "studies"
    folder.mkdir()
    if content is not None:
        (folder / "notes.txt").write_text(content)
    done = run("store", "127.0.0.1", str(node.port), str(folder), cwd=node.cwd)
    found = "no files" if content is None else "1 file(s) there, none a DICOM file (" + str(folder)
    assert done.returncode == 1 and done.stdout == "", done.stdout
    assert done.stderr.startswith(f"dicomtls: error: nothing to send from {folder}: {found}")
    assert done.stderr.endswith(
        "Hint: give the files or folders that hold the DICOM (Part 10) files\n"
    )
    assert done.stderr.count("\n") == 1


def _table_rows(text: str) -> list[list[str]]:
    """The cells of each row of a rich table (header included)."""
    rows = [line.strip() for line in text.splitlines() if line.startswith(("│", "┃"))]
    return [[cell.strip() for cell in re.split("[│┃]", row.strip("│┃"))] for row in rows]


def test_find_shows_the_keys_in_the_order_given_and_names_each_match(
    node: Node, tmp_path: Path
) -> None:
    """Columns came in tag order, and a find without -k printed one 'STUDY' per match."""
    folder = _folder(tmp_path)
    assert run("store", "127.0.0.1", str(node.port), str(folder), cwd=node.cwd).returncode == 0
    study = pydicom.dcmread(next(folder.rglob("*.dcm"))).StudyInstanceUID
    keys = ("-k", "PatientName=Doe*", "-k", "StudyInstanceUID", "-k", "PatientID")
    given = run("find", "127.0.0.1", str(node.port), *keys, cwd=node.cwd)
    assert _table_rows(given.stdout)[0] == ["PatientName", "StudyInstanceUID", "PatientID"]
    assert ["Doe^Jane", study, "P1"] in _table_rows(given.stdout)
    bare = run("find", "127.0.0.1", str(node.port), "--level", "study", cwd=node.cwd)
    assert _table_rows(bare.stdout)[0] == ["StudyInstanceUID"]
    assert [study] in _table_rows(bare.stdout), bare.stdout


def test_a_query_the_levels_refuse_says_what_a_level_needs(node: Node) -> None:
    patient = run("find", "127.0.0.1", str(node.port), "--level", "patient", cwd=node.cwd)
    assert patient.returncode == 2
    assert patient.stderr.startswith(
        "dicomtls: error: Invalid value for --level: --level patient needs --model patient "
        "(Study Root has no patient level)"
    )
    series = run("find", "127.0.0.1", str(node.port), "--level", "series", cwd=node.cwd)
    assert series.returncode == 1 and series.stderr.count("\n") == 1
    assert series.stderr.startswith(
        f"dicomtls: error: C-FIND failed at 127.0.0.1:{node.port}: 0xA900 "
    )  # the status's name, not only its number
    assert "Hint: below the top level, a query names one entity of each level above it: -k " in (
        series.stderr
    )


# -- doctor ---------------------------------------------------------------------------------------


@pytest.mark.interop
def test_doctor_exits_0_against_a_tls_1_3_only_storescp(tmp_path: Path) -> None:
    """DCMTK's TLS 1.2 suites need an RSA key: with an EC one storescp speaks TLS 1.3 only,
    so there are no TLS 1.2 suites to judge (SKIP), and nothing to fix."""
    assert run("pki", "init", "pki", cwd=tmp_path).returncode == 0
    pki = RsaPKI(
        tmp_path / "pki" / "ca.pem",
        {"scp": (tmp_path / "pki" / "server-chain.pem", tmp_path / "pki" / "server.key")},
    )

    async def probe() -> subprocess.CompletedProcess[str]:
        async with storescp(pki, tmp_path) as port:
            return await asyncio.to_thread(
                run,
                "doctor",
                "127.0.0.1",
                str(port),
                "--called-ae",
                "STORESCP",
                "--json",
                *CLIENT_TLS,
                cwd=tmp_path,
            )

    done = asyncio.run(probe())
    steps = {s["name"]: s["verdict"] for s in json.loads(done.stdout)["steps"]}
    assert steps.pop("cipher-suites") == "SKIP" and set(steps.values()) == {"PASS"}, steps
    assert json.loads(done.stdout)["steps"][3]["summary"] == "accepts TLSv1.3"
    assert done.returncode == 0, done.stdout


# -- help, start-up, checkout ----------------------------------------------------------------------


def test_pki_issue_help_gives_each_broken_kind_its_line(tmp_path: Path) -> None:
    shown = run("pki", "issue", "--help", cwd=tmp_path).stdout.splitlines()
    for kind in BrokenKind:
        assert f"    {kind.value}: {kind.description}" in shown, kind
    assert any(line.strip().startswith("dicomtls pki issue ./pki") for line in shown)


def test_debug_is_a_flag_of_every_command_too(tmp_path: Path) -> None:
    done = run("ciphers", "--profile", "bcp195-rfc8996", "--debug", cwd=tmp_path)
    assert done.returncode == 0 and "TLS_AES_128_GCM_SHA256" in done.stdout


def test_the_command_starts_where_python_has_no_resource_module(tmp_path: Path) -> None:
    """Windows has no ``resource``: the CLI must start, and the node must not need it."""
    script = (
        "import sys; sys.modules['resource'] = None\n"  # import resource -> ImportError
        "from dicomtls.node.node import _enough_files\n"
        "_enough_files(100, 16, 512)\n"
        "sys.argv = ['dicomtls', '--version']\n"
        "from dicomtls.cli import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV)
    assert done.returncode == 0 and done.stdout.startswith("dicomtls, version"), done.stderr


def test_the_quick_start_store_is_not_something_to_commit() -> None:
    for made in ("dicom-store/index.sqlite", "dicom-store-ca/ca.key", "dicom-store/pki/ca.pem"):
        ignored = subprocess.run(["git", "check-ignore", "-q", made], cwd=ROOT)
        assert ignored.returncode == 0, made


def test_the_demo_prints_its_story_and_nothing_on_stderr(tmp_path: Path) -> None:
    """The handshake failure it explains is shown from both sides, not logged again, and its
    node holds no trusted CA's key (the CA key is kept away from the CA file it trusts)."""
    done = subprocess.run(
        [EXE, "demo"], cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=120
    )
    assert done.returncode == 0 and "demo: all went as expected" in done.stdout
    assert done.stderr == ""
    assert done.stdout.count("TLS handshake with 127.0.0.1:") == 2  # client side, server log line
    quiet = subprocess.run(
        [EXE, "demo", "--json"], cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=120
    )
    assert (quiet.returncode, json.loads(quiet.stdout), quiet.stderr) == (0, {"ok": True}, "")
