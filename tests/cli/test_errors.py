"""Every error a user can cause: one line in the command's terms with the fix; with ``--json``,
a JSON object on stdout (``error``, ``code``, ``hint``) and the same exit code."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomtls.doctor.report import REJECTION_FIXES

from .test_node_cli import CLIENT_TLS, Node, _free_port, run


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    started = Node(tmp_path_factory.mktemp("node"))
    yield started
    started.stop()


def _one_error(done: subprocess.CompletedProcess[str]) -> str:
    """The one line of a failed command: stderr is that line, nothing else."""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dicomtls: error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def _json_error(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert "dicomtls: error" not in done.stderr, done.stderr
    answer: dict[str, str] = json.loads(done.stdout)
    assert set(answer) == {"error", "code", "hint"}, answer
    return answer


def test_no_ca_to_trust_is_said_in_cli_terms(node: Node, tmp_path: Path) -> None:
    """Run from a folder without the quick start's PKI: --ca, and where we looked."""
    args = ("echo", "127.0.0.1", str(node.port))
    line = _one_error(run(*args, cwd=tmp_path))
    assert line.startswith(
        "dicomtls: error: no CA to trust: pass --ca CA.pem (./dicom-store/pki was not found here)"
    )
    assert "ca_files" not in line and "VerifyFlags" not in line
    done = run(*args, "--json", cwd=tmp_path)
    assert done.returncode == 1 and _json_error(done)["code"] == "NO_CA"


def test_a_certificate_without_its_key(node: Node) -> None:
    line = _one_error(
        run(
            "echo",
            "127.0.0.1",
            str(node.port),
            "--tls-cert",
            "dicom-store/pki/client-chain.pem",
            cwd=node.cwd,
        )
    )
    assert line == (
        "dicomtls: error: --tls-key is missing: dicom-store/pki/client-chain.pem holds no private "
        "key. Hint: pass the private key of that certificate with --tls-key KEY"
    )
    alone = _one_error(
        run(
            "echo",
            "127.0.0.1",
            str(node.port),
            "--tls-key",
            "dicom-store/pki/client.key",
            cwd=node.cwd,
        )
    )
    assert alone.startswith("dicomtls: error: --tls-key needs --tls-cert")


def test_a_wrong_called_ae_title_comes_with_the_fix_doctor_gives(node: Node) -> None:
    args = ("127.0.0.1", str(node.port), "--called-ae", "WRONG")
    done = run("echo", *args, cwd=node.cwd)
    assert done.returncode == 1
    line = _one_error(done)
    fix = REJECTION_FIXES["CALLED_AE_NOT_RECOGNIZED"]
    assert line.startswith(
        f"dicomtls: error: 127.0.0.1:{node.port} does not answer to called AE title 'WRONG': "
        f"association rejected (CALLED_AE_NOT_RECOGNIZED). Hint: {fix}"
    )
    assert "--called-ae" in fix and "--accept-any-called-ae" in fix and "doctor" in line
    answer = _json_error(run("echo", *args, "--json", cwd=node.cwd))
    assert answer["code"] == "CALLED_AE_NOT_RECOGNIZED" and answer["hint"].startswith(fix)
    doctor = run("doctor", *args, "--json", cwd=node.cwd)
    step = next(s for s in json.loads(doctor.stdout)["steps"] if s["name"] == "dicom-association")
    assert (step["code"], step["fix"]) == ("CALLED_AE_NOT_RECOGNIZED", fix)  # the same advice


@pytest.mark.parametrize(
    ("args", "option", "title"),
    [
        (("echo", "127.0.0.1", "PORT", "--called-ae", ""), "--called-ae", ""),
        (
            ("store", "127.0.0.1", "PORT", ".", "--ae-title", "RADIOLOGY-WORKSTATION"),
            "--ae-title",
            "RADIOLOGY-WORKSTATION",
        ),
        (
            ("move", "127.0.0.1", "PORT", "-k", "PatientID=1", "--dest", "VIEW\\1"),
            "--dest",
            "VIEW\\1",
        ),
        (("doctor", "127.0.0.1", "PORT", "--called-ae", "PACS\\1"), "--called-ae", "PACS\\1"),
    ],
    ids=["empty-called", "long-calling", "backslash-destination", "doctor"],
)
def test_an_ae_title_no_peer_can_take_is_a_usage_error_before_connecting(
    tmp_path: Path, args: tuple[str, ...], option: str, title: str
) -> None:
    """It was found when the association request was encoded, after the TLS handshake: exit
    code 1, and a line naming no option."""
    closed = str(_free_port())  # nothing listens: connecting would be another error
    done = run(*(closed if a == "PORT" else a for a in args), cwd=tmp_path)
    assert done.returncode == 2
    assert _one_error(done) == (
        f"dicomtls: error: Invalid value for '{option}': '{title}': give 1 to 16 printable "
        f"ASCII characters, no backslash (a DICOM AE title). Hint: see dicomtls {args[0]} --help"
    )


def test_a_port_in_use_is_said_before_anything_is_made(node: Node, tmp_path: Path) -> None:
    done = run("serve", "--port", str(node.port), cwd=tmp_path)
    assert done.returncode == 1
    assert _one_error(done) == (
        f"dicomtls: error: cannot listen on 0.0.0.0:{node.port}: address already in use. Hint: "
        "stop what listens there (another dicomtls serve?), or pass --port N"
    )
    assert done.stdout == ""  # no first-run banner, no "connect with"
    assert sorted(tmp_path.iterdir()) == []  # no PKI, no store
    answer = _json_error(run("serve", "--port", str(node.port), "--json", cwd=tmp_path))
    assert answer["code"] == "PORT_IN_USE"


def test_a_host_name_that_does_not_resolve_is_not_a_firewall_problem(tmp_path: Path) -> None:
    """The hint was "check host, port and firewall", after the resolver's "Name or service
    not known"; .invalid never resolves (RFC 6761)."""
    assert run("pki", "init", "pki", cwd=tmp_path).returncode == 0
    args = ("echo", "pacs.invalid", "2762", *CLIENT_TLS)
    done = run(*args, cwd=tmp_path)
    line = _one_error(done)
    assert line.startswith(
        "dicomtls: error: cannot connect to pacs.invalid:2762: the host name does not resolve ("
    )
    assert line.endswith("Hint: check the host name's spelling, or give the node's IP address")
    assert done.returncode == 1
    assert _json_error(run(*args, "--json", cwd=tmp_path))["code"] == "CONNECT_FAILED"


def test_tls_to_a_plain_dicom_port_points_to_the_doctor(tmp_path: Path) -> None:
    """The peer just closes on our ClientHello: the one-line error cannot know why, the
    doctor can (it tries plain DICOM on the port)."""
    plain = Node(tmp_path, "--no-tls")
    try:
        args = ("echo", "127.0.0.1", str(plain.port), "--ca", "dicom-store/pki/ca.pem")
        assert run("pki", "init", "dicom-store/pki", cwd=tmp_path).returncode == 0
        line = _one_error(run(*args, cwd=tmp_path))
        doctor = json.loads(run("doctor", *args[1:], "--json", cwd=tmp_path).stdout)
    finally:
        plain.stop()
    assert f"TLS handshake with 127.0.0.1:{plain.port} failed (client side, stage closed)" in line
    assert line.endswith(
        "Hint: dicomtls doctor with the same host and port tells whether the port speaks plain "
        "DICOM (then --no-tls, if you must) or the peer dropped us (its log says why)"
    )
    protocol = next(s for s in doctor["steps"] if s["name"] == "protocol")
    assert protocol["code"] == "NOT_TLS" and "speaks DICOM without TLS" in protocol["summary"]


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("expired", "has expired: renew it on the node"),
        ("not-yet-valid", "is not valid yet: check both machines' clocks"),
    ],
)
def test_a_node_certificate_out_of_date_is_the_node_s_to_renew(
    tmp_path: Path, kind: str, said: str
) -> None:
    """The hint was 'renew the certificate': ours or the node's, it did not say."""
    made = (
        run("pki", "init", "pki", cwd=tmp_path),
        run("pki", "issue", "pki", "old", "--broken", kind, cwd=tmp_path),
    )
    assert all(m.returncode == 0 for m in made)
    dated = Node(
        tmp_path,
        "--tls-cert",
        "pki/old-chain.pem",
        "--tls-key",
        "pki/old.key",
        "--ca",
        "pki/ca.pem",
    )
    try:
        done = run("echo", "127.0.0.1", str(dated.port), *CLIENT_TLS, cwd=tmp_path)
    finally:
        dated.stop()
    line = _one_error(done)
    assert "(client side, stage verify)" in line and "CN = old, O = dicomtls test PKI" in line
    assert line.split(". Hint: ")[1].startswith(
        f"the node's certificate (or a CA of its chain) {said}"
    )


def test_a_failed_handshake_is_said_once(node: Node) -> None:
    made = run(
        "pki", "issue", "dicom-store/pki", "mail-only", "--broken", "no-purpose", cwd=node.cwd
    )
    assert made.returncode == 0, made.stderr
    done = run(
        "echo",
        "127.0.0.1",
        str(node.port),
        "--tls-cert",
        "dicom-store/pki/mail-only-chain.pem",
        "--tls-key",
        "dicom-store/pki/mail-only.key",
        cwd=node.cwd,
    )
    line = _one_error(done)  # the error, and not the link's WARNING line as well
    assert "TLS handshake with 127.0.0.1:" in line and "(client side, stage peer-rejected)" in line
    answer = _json_error(
        run(
            "echo",
            "127.0.0.1",
            str(node.port),
            "--json",
            "--tls-cert",
            "dicom-store/pki/mail-only-chain.pem",
            "--tls-key",
            "dicom-store/pki/mail-only.key",
            cwd=node.cwd,
        )
    )
    assert answer["code"] == "UNSUPPORTED_CERTIFICATE" and "extendedKeyUsage" in answer["hint"]


def test_a_key_s_password_and_its_certificate_in_cli_terms(node: Node, tmp_path: Path) -> None:
    from dicomtls.pki import CertificateAuthority

    locked = CertificateAuthority.create("CLI CA").issue("locked")
    (tmp_path / "locked.pem").write_bytes(locked.cert_chain_pem())
    (tmp_path / "locked.key").write_bytes(locked.private_key_pem(password=b"right"))
    ours = ("echo", "127.0.0.1", str(node.port), "--ca", "locked.pem", "--tls-cert", "locked.pem")
    cases = [
        (
            ("--tls-key", "locked.key"),
            "private key locked.key is encrypted. Hint: pass its "
            "password with --key-password (or DICOMTLS_KEY_PASSWORD)",
        ),
        (
            ("--tls-key", "locked.key", "--key-password", "wrong"),
            "wrong password for private key "
            "locked.key. Hint: pass the key's own password with --key-password",
        ),
        (
            ("--tls-key", str(node.cwd / "dicom-store" / "pki" / "client.key")),
            "Hint: pass the key of --tls-cert with --tls-key",
        ),
    ]
    for args, said in cases:
        line = _one_error(run(*ours, *args, cwd=tmp_path))
        assert line.startswith("dicomtls: error: ") and line.endswith(said), line


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ("--ca", "pki/ca.pem", "--tls-key", "pki/client.key", "--tls-cert", "pki/client.key"),
            "certificate file pki/client.key holds no readable certificate: it holds a private "
            "key, not a certificate. Hint: --tls-cert takes our certificate chain",
        ),
        (
            (
                "--ca",
                "pki/ca.pem",
                "--tls-cert",
                "pki/client-chain.pem",
                "--tls-key",
                "pki/client.pem",
            ),
            "pki/client.pem does not contain a readable private key: it holds a certificate, "
            "not a private key. Hint: --tls-key takes the private key of --tls-cert",
        ),
        (
            ("--ca", "notes.txt"),
            "CA file notes.txt holds no readable certificate: it is not PEM, and not a "
            "certificate in DER either. Hint: --ca takes the certificates of the CAs we trust",
        ),
        (
            ("--ca", "pki/ca.pem", "--crl", "pki/ca.pem"),
            "CRL file pki/ca.pem is not a readable CRL: it holds a certificate, not a CRL. "
            "Hint: --crl takes certificate revocation lists",
        ),
    ],
    ids=["key-as-certificate", "certificate-as-key", "text-as-ca", "ca-as-crl"],
)
def test_a_file_given_to_the_wrong_option_is_named_with_that_option(
    tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    """Said before connecting, without the parser's ASN.1 words, and with the option's hint
    rather than one naming all four."""
    assert run("pki", "init", "pki", cwd=tmp_path).returncode == 0
    (tmp_path / "notes.txt").write_text("not a certificate\n")
    done = run("echo", "127.0.0.1", str(_free_port()), *args, cwd=tmp_path)
    assert done.returncode == 1
    assert _one_error(done).startswith(f"dicomtls: error: {said}")
    answer = _json_error(run("echo", "127.0.0.1", "1", *args, "--json", cwd=tmp_path))
    assert answer["code"] == "TLS_FILE" and answer["hint"].split()[0] == args[-2]


def _failures(node: Node, tmp_path: Path) -> list[tuple[str, ...]]:
    """One mistake per command (a closed port, a bad value, a missing file...)."""
    closed = str(_free_port())
    ca = ("--ca", str(node.cwd / "dicom-store" / "pki" / "ca.pem"))
    (tmp_path / "not-a-cert.pem").write_text("hello\n")
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.pem").write_text("")
    return [
        ("echo", "127.0.0.1", closed, *ca),
        ("store", "127.0.0.1", closed, "not-a-cert.pem", *ca),
        ("find", "127.0.0.1", closed, "-k", "PatientID=1", *ca),
        ("move", "127.0.0.1", closed, "--dest", "VIEWER", "-k", "StudyInstanceUID=1.2", *ca),
        ("get", "127.0.0.1", closed, "--out", "out", "-k", "StudyInstanceUID=1.2", *ca),
        ("doctor", "127.0.0.1", closed, "--ca", "missing.pem"),
        ("serve", "--port", str(node.port)),
        ("pki", "init", "pki"),
        ("pki", "issue", "pki", "x"),
        ("inspect", "not-a-cert.pem"),
        ("ciphers", "--profile", "bogus"),
        ("index", "--rebuild", "--store", "nowhere"),
    ]


def test_every_command_answers_in_one_line_or_in_json(node: Node, tmp_path: Path) -> None:
    for args in _failures(node, tmp_path):
        said = run(*args, cwd=tmp_path)
        assert said.returncode in (1, 2), (args, said.stderr)
        line = _one_error(said)
        answered = run(*args, "--json", cwd=tmp_path)
        assert answered.returncode == said.returncode, (args, answered.stdout, answered.stderr)
        answer = _json_error(answered)
        assert answer["error"] in line and answer["code"], (args, answer)


def test_usage_errors_are_one_line_too(tmp_path: Path) -> None:
    done = run("echo", cwd=tmp_path)
    assert done.returncode == 2
    assert _one_error(done) == (
        "dicomtls: error: Missing argument 'HOST'. Hint: see dicomtls echo --help"
    )
    typo = run("echo", "localhost", "2762", "--jsn", cwd=tmp_path)
    assert _one_error(typo) == (
        "dicomtls: error: No such option '--jsn'. Did you mean '--json'? Hint: see dicomtls echo --help"
    )


def test_debug_shows_the_traceback_before_or_after_the_command(tmp_path: Path) -> None:
    closed = str(_free_port())
    plain = run("echo", "127.0.0.1", closed, "--no-tls", cwd=tmp_path)
    assert "dicomtls: error: cannot connect to 127.0.0.1:" in plain.stderr
    assert "Traceback" not in plain.stderr
    for args in (
        ("--debug", "echo", "127.0.0.1", closed),
        ("echo", "127.0.0.1", closed, "--debug"),
    ):
        done = run(*args, "--no-tls", cwd=tmp_path)
        assert done.returncode == 1
        assert "Traceback" in done.stderr and "ConnectError" in done.stderr, done.stderr


def test_a_service_the_node_does_not_grant(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text('[access]\ndefault_services = ["echo"]\n')
    strict = Node(tmp_path, "--config", "node.toml")
    try:
        args = ("find", "127.0.0.1", str(strict.port), "-k", "PatientID=1")
        line = _one_error(run(*args, cwd=tmp_path))
        answer = _json_error(run(*args, "--json", cwd=tmp_path))
    finally:
        strict.stop()
    assert "did not accept C-FIND SOP class" in line and "'DICOMTLS-SCU'" in line
    assert answer["code"] == "NOT_ACCEPTED" and "default_services" in answer["hint"]
