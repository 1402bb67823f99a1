"""``dicomtls doctor`` against real nodes: each case asserts the step that fails and its code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import NameOID

from dicomtls.pki import init_pki, load_ca

from ..interop.conftest import RsaPKI
from .test_node_cli import Node, run


def doctor(cwd: Path, port: int, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    done = run(
        "doctor", "127.0.0.1", str(port), "--json", "--timeout", "2", *args, cwd=cwd, timeout=120
    )
    report = json.loads(done.stdout)
    assert report["ok"] == (done.returncode == 0)
    return done.returncode, {step["name"]: step for step in report["steps"]}


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("doctor-pki")
    init_pki(directory)
    ca = load_ca(directory)
    for kind in ("no-purpose", "expired", "wrong-hostname"):
        ca.issue_broken(kind, kind).write(directory, kind)
    return directory


def _tls(pki: Path, name: str) -> list[str]:
    return [
        "--ca",
        str(pki / "ca.pem"),
        "--tls-cert",
        str(pki / f"{name}-chain.pem"),
        "--tls-key",
        str(pki / f"{name}.key"),
    ]


@pytest.fixture
def node(tmp_path: Path, pki_dir: Path) -> Iterator[Node]:
    started = Node(tmp_path, *_tls(pki_dir, "server"))
    yield started
    started.stop()


def test_healthy_node_passes_every_step(node: Node, tmp_path: Path, pki_dir: Path) -> None:
    code, steps = doctor(tmp_path, node.port, *_tls(pki_dir, "client"))
    assert code == 0
    assert all(s["verdict"] == "PASS" for s in steps.values()), steps
    assert "bcp195-rfc8996 (B.12)" in str(steps["cipher-suites"]["summary"])
    evidence = steps["dicom-association"]["evidence"]
    assert evidence["implementation_version_name"] == "DICOMTLS_010"


@pytest.mark.parametrize(
    ("client", "code"),
    [
        ("no-purpose", "UNSUPPORTED_CERTIFICATE"),
        ("expired", "CERTIFICATE_EXPIRED"),
        (None, "CLIENT_CERTIFICATE_REQUIRED"),
    ],
)
def test_client_certificate_problems_are_named(
    node: Node, tmp_path: Path, pki_dir: Path, client: str | None, code: str
) -> None:
    args = _tls(pki_dir, client) if client else ["--ca", str(pki_dir / "ca.pem")]
    exit_code, steps = doctor(tmp_path, node.port, *args)
    assert exit_code == 1
    step = steps["client-certificate"]
    assert step["verdict"] == "FAIL" and step["code"] == code, step
    assert step["fix"]


def _namesake_site(pki_dir: Path, other: Path) -> str:
    """Another site's PKI whose CA has the name of ``pki_dir``'s (one made on a host of the
    same name the same day, or named by hand alike); that name, as OpenSSL prints it."""
    cn = load_ca(pki_dir).certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(cn[0].value)
    init_pki(other, common_name=name)
    return f"CN = {name}, O = dicomtls test PKI"


def test_a_client_certificate_of_another_ca_with_the_same_name(
    node: Node, tmp_path: Path, pki_dir: Path
) -> None:
    """Two sites whose CAs share a name: the node names the CA it takes, which has our CA's
    name, and the fix is on the node."""
    shared = _namesake_site(pki_dir, tmp_path / "other-site")
    ours = _tls(tmp_path / "other-site", "client")
    ours[1] = str(pki_dir / "ca.pem")  # we trust the node; the node does not trust us
    _, steps = doctor(tmp_path, node.port, *ours)
    step = steps["client-certificate"]
    assert (step["verdict"], step["code"], step["side"]) == ("FAIL", "UNKNOWN_CA", "peer"), step
    assert "it trusts another CA of that name" in step["summary"]
    assert step["evidence"]["accepted_issuers"] == [shared]


def test_a_node_certificate_from_a_namesake_of_our_ca(
    node: Node, tmp_path: Path, pki_dir: Path
) -> None:
    """We trust another site's CA of the same name: the chain step says so rather than "add
    the issuing CA to the CA file", which seems to hold it already."""
    shared = _namesake_site(pki_dir, tmp_path / "other-site")
    _, steps = doctor(tmp_path, node.port, *_tls(tmp_path / "other-site", "client"))
    chain = steps["certificate-chain"]
    assert chain["verdict"] == "FAIL", chain
    assert f"we trust a CA named '{shared}', but not" in chain["summary"]


@pytest.mark.parametrize(
    ("kind", "code", "node_args"),
    [
        ("expired", "CERT_HAS_EXPIRED", ()),
        ("not-yet-valid", "CERT_NOT_YET_VALID", ()),
        ("self-signed", "DEPTH_ZERO_SELF_SIGNED_CERT", ()),
        ("untrusted", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", ()),
        ("client-only", "INVALID_PURPOSE", ()),
        (
            "weak-key",
            "EE_KEY_TOO_SMALL",
            ("--profile", "bcp195"),
        ),  # only a retired profile loads it
        ("sha1", "CA_MD_TOO_WEAK", ("--profile", "bcp195")),
    ],
)
def test_broken_server_certificates_are_shown_with_their_code(
    tmp_path: Path, pki_dir: Path, kind: str, code: str, node_args: tuple[str, ...]
) -> None:
    if not (pki_dir / f"{kind}-chain.pem").exists():
        load_ca(pki_dir).issue_broken(kind, kind).write(pki_dir, kind)
    broken = Node(tmp_path, *_tls(pki_dir, kind), *node_args)
    try:
        _, steps = doctor(tmp_path, broken.port, *_tls(pki_dir, "client"))
    finally:
        broken.stop()
    chain = steps["certificate-chain"]
    assert chain["verdict"] == "FAIL" and chain["code"] == code, chain
    assert f"Subject Name: CN = {kind}" in json.dumps(chain["evidence"])
    assert chain["fix"]


def test_hostname_mismatch_is_reported_and_failed_on_request(tmp_path: Path, pki_dir: Path) -> None:
    wrong = Node(tmp_path, *_tls(pki_dir, "wrong-hostname"))
    try:
        _, reported = doctor(tmp_path, wrong.port, *_tls(pki_dir, "client"))
        _, checked = doctor(tmp_path, wrong.port, *_tls(pki_dir, "client"), "--check-hostname")
    finally:
        wrong.stop()
    assert reported["certificate-chain"]["verdict"] == "WARN"
    assert reported["certificate-chain"]["code"] == "HOSTNAME_MISMATCH"
    assert checked["certificate-chain"]["verdict"] == "FAIL"


def test_wrong_called_ae(node: Node, tmp_path: Path, pki_dir: Path) -> None:
    _, steps = doctor(tmp_path, node.port, *_tls(pki_dir, "client"), "--called-ae", "NOBODY")
    assert steps["dicom-association"]["code"] == "CALLED_AE_NOT_RECOGNIZED"


def test_plain_storescp_is_recognised(tmp_path: Path) -> None:
    from ..interop.conftest import dcmtk_listener

    with dcmtk_listener(
        lambda port: ["storescp", "-od", str(tmp_path), str(port)], tmp_path / "log"
    ) as port:
        _, steps = doctor(tmp_path, port, "--called-ae", "STORESCP")
    assert steps["protocol"]["code"] == "NOT_TLS"
    assert "plain A-ASSOCIATE-RQ" in str(steps["protocol"]["summary"])
    assert steps["c-echo"]["verdict"] == "PASS"  # and the DICOM layer is still diagnosed


def test_silent_listener_times_out(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        _, steps = doctor(tmp_path, listener.getsockname()[1])
    assert steps["tcp"]["verdict"] == "PASS"
    assert steps["protocol"]["code"] == "TLS_TIMEOUT"


def test_refused_port(tmp_path: Path) -> None:
    from ..interop.conftest import _free_port

    code, steps = doctor(tmp_path, _free_port())
    assert code == 1 and steps["tcp"]["code"] == "CONNECTION_REFUSED"


def test_old_tls_versions_are_flagged(tmp_path: Path, pki_dir: Path) -> None:
    """A Python ssl server allowing TLS 1.0, as far as this machine's OpenSSL lets it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki_dir / "server-chain.pem"), str(pki_dir / "server.key"))
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with contextlib.suppress(ValueError):
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(1)
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        _, steps = doctor(tmp_path, listener.getsockname()[1], *_tls(pki_dir, "client"))
    finally:
        stop.set()
        thread.join()
        listener.close()
    versions = steps["tls-versions"]["evidence"]["versions"]
    if versions["TLSv1"]["accepted"]:
        assert steps["tls-versions"]["code"] == "OLD_TLS_ACCEPTED"
    else:  # this machine's OpenSSL cannot even speak TLS 1.0: the report says so instead
        assert (
            versions["TLSv1"]["accepted"] is None
            or "version" in versions["TLSv1"]["detail"].lower()
        )
        assert steps["tls-versions"]["verdict"] == "PASS"


@pytest.mark.parametrize(
    ("verify", "verdict"),
    [("peer", "PASS"), ("none", "PASS"), ("peer,fail-if-no-peer-cert", "FAIL")],
)
def test_verify_modes_of_the_node(tmp_path: Path, pki_dir: Path, verify: str, verdict: str) -> None:
    """Without a client certificate: only a node that requires one refuses us."""
    served = Node(tmp_path, *_tls(pki_dir, "server"), "--verify", verify)
    try:
        _, steps = doctor(tmp_path, served.port, "--ca", str(pki_dir / "ca.pem"))
    finally:
        served.stop()
    assert steps["client-certificate"]["verdict"] == verdict


def test_explain_prints_each_verify_call(tmp_path: Path, pki_dir: Path) -> None:
    served = Node(tmp_path, *_tls(pki_dir, "server"), "--explain")
    try:
        run("echo", "127.0.0.1", str(served.port), *_tls(pki_dir, "no-purpose"), cwd=tmp_path)
    finally:
        log = served.stop()
    assert "certificate at depth 0: INVALID_PURPOSE" in log
    assert "Subject Name: CN = no-purpose" in log
    assert "stage verify" in log and "127.0.0.1:" in log  # the one-line failure with the peer


def test_against_dcmtk_storescp_requiring_a_certificate(tmp_path: Path, rsa_pki: RsaPKI) -> None:
    from ..interop.conftest import storescp

    async def probe(*extra: str) -> tuple[int, dict[str, dict[str, object]]]:
        async with storescp(rsa_pki, tmp_path, "--require-peer-cert") as port:
            return await asyncio.get_running_loop().run_in_executor(
                None, lambda: doctor(tmp_path, port, *extra)
            )

    _, ok = asyncio.run(probe(*rsa_pki.client_args("scu"), "--called-ae", "STORESCP"))
    assert ok["client-certificate"]["verdict"] == "PASS", ok
    assert ok["c-echo"]["verdict"] == "PASS", ok["dicom-association"]
    _, refused = asyncio.run(probe("--ca", str(rsa_pki.ca), "--called-ae", "STORESCP"))
    assert refused["client-certificate"]["verdict"] == "FAIL"
    assert refused["client-certificate"]["code"] in ("CLIENT_CERTIFICATE_REQUIRED",)


def test_against_dcmtk_storescp_with_a_retired_profile(tmp_path: Path, rsa_pki: RsaPKI) -> None:
    """storescp +px (the retired BCP 195 profile) accepts suites BCP 195 RFC 8996 forbids."""
    from ..interop.conftest import storescp

    async def probe() -> tuple[int, dict[str, dict[str, object]]]:
        async with storescp(rsa_pki, tmp_path, "+px") as port:
            args = (*rsa_pki.client_args("scu"), "--called-ae", "STORESCP")
            return await asyncio.get_running_loop().run_in_executor(
                None, lambda: doctor(tmp_path, port, *args)
            )

    code, steps = asyncio.run(probe())
    assert code == 1
    suites = steps["cipher-suites"]
    assert suites["verdict"] == "WARN" and suites["code"] == "FORBIDDEN_SUITES"
    assert "TLS_RSA_WITH_AES_128_CBC_SHA" in str(suites["summary"])
    assert steps["c-echo"]["verdict"] == "PASS"
