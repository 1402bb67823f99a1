"""Finding 10: a real ``dicomtls serve`` and the files it leaves on disk.

Patient data (objects, index, audit log, what ``get --out`` retrieves) is the node's
alone whatever the umask; the first-run test PKI keeps its CA key out of the store, so a
copy of the store cannot mint certificates the node trusts; and a node that can read the
key of a CA it trusts says so at start.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from cryptography import x509

from dicomtls.pki import init_pki
from dicomtls.pki.exposure import readable_ca_keys

from ..cli.test_node_cli import _folder, get_study, run
from ..node.test_file_modes import modes_under, umask
from .conftest import LiveNode

STORE = "dicom-store"
CA_KEY_WARNING = "this node can read the private key of a CA it trusts"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _wait_for_bytes(path: Path, wanted: bytes, timeout: float = 20) -> None:
    """Until ``path`` holds ``wanted`` (the node writes it when the transfer is recorded)."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and wanted in path.read_bytes()):
        assert time.monotonic() < deadline, f"{path} never held {wanted!r}"
        time.sleep(0.05)


def _check_store(store: Path, file_mode: int, folder_mode: int) -> dict[str, int]:
    """Every file in the store has ``file_mode``, every folder ``folder_mode``; the test
    PKI's folder is 0700 (keys: 0600), its certificates public (0644)."""
    modes = modes_under(store)
    for name, mode in modes.items():
        path = store / name
        if name == "pki":
            expected = 0o700
        elif path.is_dir():
            expected = folder_mode
        elif name.startswith("pki/"):
            expected = 0o644 if name.endswith(".pem") else 0o600
        else:
            expected = file_mode
        assert mode == expected, f"{name}: {mode:04o}, not {expected:04o}\n{modes}"
    return modes


def test_a_node_under_umask_000_keeps_patient_data_private(tmp_path: Path) -> None:
    """The worst umask, for the node and its clients: every file 0600, every folder 0700."""
    store = tmp_path / STORE
    audit = tmp_path / "logs" / "audit.log"
    with umask(0o000):
        node = LiveNode(
            tmp_path, "--audit", f"file:{audit}", "--move-destination", "DICOMTLS-SCU=127.0.0.1:9"
        )
        try:
            folder = _folder(tmp_path)
            # mutual TLS with the first-run PKI's client certificate, found in ./dicom-store/pki
            stored = run("store", "127.0.0.1", str(node.port), str(folder), "--json", cwd=tmp_path)
            assert stored.returncode == 0, stored.stderr
            assert json.loads(stored.stdout)["stored"] == 3
            got = get_study(node.port, "--json", cwd=tmp_path)
            assert got.returncode == 0, got.stderr + got.stdout
            assert json.loads(got.stdout)["completed"] == 3
            _wait_for_bytes(audit, b'csd-code="110104"')  # DICOM Instances Transferred
            running = _check_store(store, 0o600, 0o700)  # with the index's -wal/-shm, spares
        finally:
            log = node.stop()
    assert {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm"} <= set(running)
    assert len([n for n in running if n.startswith("objects/") and n.endswith(".dcm")]) == 3
    assert any(n.startswith(".spare/") for n in running)
    after = _check_store(store, 0o600, 0o700)
    assert after["."] == 0o700 and "index.sqlite" in after
    assert _mode(audit) == 0o600 and _mode(audit.parent) == 0o700
    assert b'csd-code="110104"' in audit.read_bytes()
    retrieved = modes_under(tmp_path / "retrieved")  # dicomtls get --out: made by the client
    assert len([n for n in retrieved if n.endswith(".dcm")]) == 3
    for name, mode in retrieved.items():
        assert mode == (0o700 if (tmp_path / "retrieved" / name).is_dir() else 0o600), name
    assert "Traceback" not in log and " ERROR " not in log, log


def test_a_group_readable_node_under_umask_077(tmp_path: Path) -> None:
    """--file-mode 0640 gives the group read (folders 0750), even where the umask takes it."""
    config = tmp_path / "node.toml"
    config.write_text('file_mode = "0640"\n')
    with umask(0o077):
        node = LiveNode(tmp_path, "--config", str(config), "--audit", "file:audit.log")
        try:
            stored = run("store", "127.0.0.1", str(node.port), str(_folder(tmp_path)), cwd=tmp_path)
            assert stored.returncode == 0, stored.stderr
        finally:
            node.stop()
    modes = _check_store(tmp_path / STORE, 0o640, 0o750)
    assert len([n for n in modes if n.endswith(".dcm")]) == 3
    assert _mode(tmp_path / "audit.log") == 0o640
    (tmp_path / STORE / "index.sqlite").unlink()
    with umask(0o077):  # a rebuilt index takes the store's mode, not the umask's
        rebuilt = run("index", "--rebuild", cwd=tmp_path)
    assert rebuilt.returncode == 0 and "indexed 3 object(s)" in rebuilt.stderr, rebuilt.stderr
    assert _mode(tmp_path / STORE / "index.sqlite") == 0o640


def test_a_world_readable_mode_is_refused_in_one_line(tmp_path: Path) -> None:
    flag = run("serve", "--file-mode", "0644", cwd=tmp_path)
    (tmp_path / "node.toml").write_text("file_mode = 0o666\n")  # a TOML octal integer
    toml = run("serve", "--config", "node.toml", cwd=tmp_path)
    for done, mode, hint in (
        (flag, "0644", "--file-mode 0644"),
        (toml, "0666", "node.toml: file_mode = 0o666"),
    ):
        assert done.returncode == 2, done.stderr
        error = [line for line in done.stderr.splitlines() if line.startswith("dicomtls: error")]
        assert error == [
            f"dicomtls: error: {hint}: file mode {mode} would let every user of the "
            "machine at patient data: use 0600 (owner only, the default) or 0640 (owner, and "
            "its group may read)"
        ], done.stderr
    assert not (tmp_path / STORE).exists()  # refused before anything was made


def test_first_run_pki_keeps_the_ca_key_out_of_the_store(tmp_path: Path) -> None:
    with umask(0o022):
        node = LiveNode(tmp_path)
    store, ca_key = tmp_path / STORE, tmp_path / "dicom-store-ca" / "ca.key"
    try:
        banner = node.output()
        assert f"its CA key is outside the store, in {ca_key}" in " ".join(banner.split())
        warnings = [line for line in node.lines if CA_KEY_WARNING in line]
        assert len(warnings) == 1 and str(ca_key) in warnings[0], banner
        assert _mode(ca_key) == 0o600 and _mode(ca_key.parent) == 0o700
        ca = x509.load_pem_x509_certificate((store / "pki" / "ca.pem").read_bytes())
        folders = [store, *(p for p in store.rglob("*") if p.is_dir())]
        assert readable_ca_keys([ca], folders) == []  # no copy of the CA key anywhere inside
        assert readable_ca_keys([ca], [ca_key.parent]) == [(ca, ca_key)]
        # clients still find ./dicom-store/pki by themselves
        echo = run("echo", "127.0.0.1", str(node.port), cwd=tmp_path)
        assert echo.returncode == 0 and "0x0000 success" in echo.stdout, echo.stderr
        # and ``pki issue`` still issues from it: the key beside the store is the CA's
        issued = run("pki", "issue", f"{STORE}/pki", "modality", cwd=tmp_path)
        assert issued.returncode == 0, issued.stderr
        modality = run(
            "echo",
            "127.0.0.1",
            str(node.port),
            "--tls-cert",
            f"{STORE}/pki/modality-chain.pem",
            "--tls-key",
            f"{STORE}/pki/modality.key",
            cwd=tmp_path,
        )
        assert modality.returncode == 0, modality.stderr
        assert _mode(store / "pki" / "modality.key") == 0o600
    finally:
        log = node.stop()
    assert "Traceback" not in log


def test_an_older_first_run_store_has_its_ca_key_moved_out(tmp_path: Path) -> None:
    """A store an older version made (0755, ca.key inside): one line each for the key moved
    out and the folders closed; the node and its clients go on as before."""
    store = tmp_path / STORE
    with umask(0o022):
        init_pki(store / "pki")
        os.chmod(store, 0o755)
        os.chmod(store / "pki", 0o755)
        inside = store / "pki" / "ca.key"
        key = inside.read_bytes()
        node = LiveNode(tmp_path)
    beside = tmp_path / "dicom-store-ca" / "ca.key"
    try:
        moved = [line for line in node.lines if "moved the test CA's private key" in line]
        assert len(moved) == 1, node.output()
        assert f"{STORE}/pki/ca.key -> {beside}" in moved[0]
        closed = [line for line in node.lines if "store folders were open to others" in line]
        assert len(closed) == 1 and f"{STORE} 0755" in closed[0], node.output()
        assert not inside.exists() and beside.read_bytes() == key and _mode(beside) == 0o600
        assert _mode(store) == 0o700
        echo = run("echo", "127.0.0.1", str(node.port), cwd=tmp_path)
        assert echo.returncode == 0, echo.stderr
    finally:
        node.stop()
    again = LiveNode(tmp_path)  # the next start has nothing to move or close
    try:
        said = again.output()
    finally:
        again.stop()
    assert "moved the test CA" not in said and "open to others" not in said


def test_a_node_that_can_read_its_ca_key_warns_once(tmp_path: Path) -> None:
    """``pki init`` keeps ca.key beside ca.pem: fine for issuing, wrong on the node."""
    assert run("pki", "init", "pki", cwd=tmp_path).returncode == 0
    tls = [
        "--tls-cert",
        "pki/server-chain.pem",
        "--tls-key",
        "pki/server.key",
        "--ca",
        "pki/ca.pem",
    ]
    node = LiveNode(tmp_path, "--store", "store", *tls)
    try:
        warnings = [line for line in node.lines if CA_KEY_WARNING in line]
    finally:
        node.stop()
    assert len(warnings) == 1, node.output()
    ca = x509.load_pem_x509_certificate((tmp_path / "pki" / "ca.pem").read_bytes())
    assert f"'{ca.subject.rfc4514_string()}' in {tmp_path / 'pki' / 'ca.key'}" in warnings[0]
    assert " WARNING dicomtls.node: " in warnings[0]

    offline = tmp_path / "offline"  # where a CA key belongs: not beside what the node reads
    offline.mkdir()
    (tmp_path / "pki" / "ca.key").rename(offline / "ca.key")
    quiet = LiveNode(tmp_path, "--store", "store", *tls)
    try:
        said = quiet.output()
    finally:
        quiet.stop()
    assert CA_KEY_WARNING not in said and "listening on" in said
