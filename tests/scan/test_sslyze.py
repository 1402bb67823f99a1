"""An outside scanner's view of ``dicomtls serve``: sslyze against the node's TLS configuration.

sslyze (https://github.com/nabla-c0d3/sslyze) is not ours and knows nothing of DICOM: it offers
every TLS version and every suite it has to a real ``dicomtls serve`` process on loopback,
presenting the node's client certificate (the node requires one), and we read its JSON report.

What the node must show (DICOM PS3.15 B.12 "BCP 195 RFC 8996", the default profile; RFC 9325):

* TLS 1.2 and 1.3 only: SSL 2.0, SSL 3.0, TLS 1.0 and TLS 1.1 refused (RFC 8996);
* every accepted suite is one of the profile's (``dicomtls.tls.profiles``), none is in a class
  RFC 9325 section 4.1 or the profile rules out (NULL, anonymous, EXPORT, RC4, DES/3DES, static
  RSA or DH key exchange, CBC/HMAC suites, MD5, under 128 bits), and all of the profile's suites
  that fit the node's key are accepted (the cipher string is not silently narrowed either);
* forward secrecy only: every TLS 1.2 suite is ECDHE/DHE with an ephemeral key, and the curves
  offered are strong ones;
* renegotiation: RFC 5746 secure renegotiation, client-initiated renegotiation refused; no TLS
  compression; Extended Master Secret (RFC 9325 3.5); TLS_FALLBACK_SCSV honoured;
* no Heartbleed, CCS injection or ROBOT finding;
* the chain sent is complete and in order: leaf, then intermediates, verifying against our CA.

sslyze lives in its own venv (``.venv-sslyze``, made by scripts/setup.sh) because it pins its own
nassl and cryptography versions; it runs here as a program.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dicomtls.pki import CertificateAuthority, KeySpec
from dicomtls.pki.authority import CredentialFiles
from dicomtls.tls.profiles import DEFAULT_PROFILE, get_profile

from ..cli import test_node_cli

ROOT = Path(__file__).resolve().parents[2]
SSLYZE = ROOT / ".venv-sslyze" / "bin" / "sslyze"
PROFILE = get_profile(DEFAULT_PROFILE)

#: What sslyze is asked to scan: only these commands, so a scan takes a few seconds.
SCAN_COMMANDS = (
    "--sslv3",
    "--tlsv1",
    "--tlsv1_1",
    "--tlsv1_2",
    "--tlsv1_3",
    "--certinfo",
    "--reneg",
    "--compression",
    "--ems",
    "--fallback",
    "--elliptic_curves",
    "--heartbleed",
    "--openssl_ccs",
    "--robot",
)

#: Suite classes nothing of ours may accept, with where they are ruled out. Each is a test on the
#: IANA name sslyze reports (sslyze's TLS 1.3 names have no key exchange part: always ephemeral).
FORBIDDEN: dict[str, tuple[str, re.Pattern[str]]] = {
    "NULL encryption": ("RFC 9325 4.1 MUST NOT", re.compile(r"_WITH_NULL_|^TLS_NULL_")),
    "anonymous key exchange": ("RFC 9325 4.1 MUST NOT", re.compile(r"_anon_", re.IGNORECASE)),
    "EXPORT": ("RFC 9325 4.1 MUST NOT", re.compile(r"EXPORT")),
    "RC4": ("RFC 7465, RFC 9325 4.1 MUST NOT", re.compile(r"_RC4_")),
    "DES/3DES": ("RFC 9325 4.1 SHOULD NOT (under 128 bits); not in B.12", re.compile(r"_DES|3DES")),
    "static RSA key transport": ("RFC 9325 4.1 SHOULD NOT; not in B.12", re.compile(r"^TLS_RSA_")),
    "static (EC)DH key exchange": (
        "RFC 9325 4.1 SHOULD NOT; not in B.12",
        re.compile(r"^TLS_(DH|ECDH)_"),
    ),
    "CBC with HMAC (not AEAD)": ("RFC 9325 4.2; B.12 lists AEAD suites only", re.compile(r"_CBC")),
    "SHA-1 or MD5 record MAC": (
        "RFC 9325 4.2; B.12 lists AEAD suites only",
        re.compile(r"_(SHA|MD5)$"),
    ),
}

#: Named groups RFC 9325 4.2.1 and the profile's 256-bit EC minimum allow for (EC)DHE.
STRONG_CURVES = {"X25519", "X448", "secp256r1", "secp384r1", "secp521r1"}


class Node(test_node_cli.Node):
    """``dicomtls serve`` as the CLI tests start it, with its output drained all along: a scan
    fails hundreds of handshakes on purpose and the node logs each one, which would fill an
    unread pipe and stall the node."""

    def __init__(self, cwd: Path, *args: str) -> None:
        super().__init__(cwd, *args)
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self._drain.join(timeout=30)
        return "".join(self.output)


def forbidden_classes(iana_name: str) -> list[str]:
    return [cls for cls, (_, pattern) in FORBIDDEN.items() if pattern.search(iana_name)]


def sha256_b64(cert: x509.Certificate) -> str:
    """sslyze writes certificate fingerprints as base64 of the SHA-256 digest."""
    return base64.b64encode(cert.fingerprint(hashes.SHA256())).decode()


def load_chain(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


@dataclass
class Scanned:
    """A node as started, what it should send, and sslyze's report on it."""

    node: Node
    ca: Path
    chain: list[x509.Certificate]  # what the node's chain file holds: leaf, then intermediates
    report: dict[str, Any]  # sslyze's scan_result, every command in it
    seconds: float

    def result(self, command: str) -> dict[str, Any]:
        entry = self.report[command]
        assert entry["status"] == "COMPLETED", f"sslyze {command}: {entry.get('error_trace')}"
        result: dict[str, Any] = entry["result"]
        return result


def run_sslyze(port: int, out: Path, *args: str) -> dict[str, Any]:
    """One sslyze run against 127.0.0.1:port; its JSON server result."""
    if not SSLYZE.exists():
        pytest.fail(f"{SSLYZE} is missing: run `bash scripts/setup.sh` (it installs sslyze there)")
    done = subprocess.run(
        [
            str(SSLYZE),
            "--quiet",
            "--mozilla_config",
            "disable",
            "--json_out",
            str(out),
            *args,
            f"127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(out.read_text())
    (server,) = document["server_scan_results"]
    assert server["connectivity_status"] == "COMPLETED", server["connectivity_error_trace"]
    assert server["scan_status"] == "COMPLETED", server
    server["sslyze_version"] = document["sslyze_version"]
    result: dict[str, Any] = server
    return result


def scan(node: Node, ca: Path, chain_file: Path, client: CredentialFiles, out: Path) -> Scanned:
    started = time.monotonic()
    server = run_sslyze(
        node.port,
        out,
        "--cert",
        str(client.chain),
        "--key",
        str(client.key),
        "--keyform",
        "PEM",
        "--certinfo_ca_file",
        str(ca),
        *SCAN_COMMANDS,
    )
    # SSL 2.0 apart, with the client's leaf alone: sslyze's legacy OpenSSL (1.0.2, for SSL 2.0)
    # cannot load a certificate chain into an SSL 2.0 context, which has no chains (its error:
    # "invalid input, usage, or OpenSSL build configuration?"). The node refuses SSL 2.0 at the
    # hello, before any certificate, so this does not weaken the probe.
    sslv2 = run_sslyze(
        node.port,
        out.with_suffix(".sslv2.json"),
        "--cert",
        str(client.cert),
        "--key",
        str(client.key),
        "--keyform",
        "PEM",
        "--sslv2",
    )
    report = {
        **server["scan_result"],
        "ssl_2_0_cipher_suites": sslv2["scan_result"]["ssl_2_0_cipher_suites"],
    }
    return Scanned(node, ca, load_chain(chain_file), report, time.monotonic() - started)


@pytest.fixture(scope="module")
def default_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scanned]:
    """``dicomtls serve`` exactly as a person first runs it: its own test PKI (EC P-256
    keys, leaves issued by the root directly), the default profile."""
    cwd = tmp_path_factory.mktemp("default-node")
    node = Node(cwd)
    try:
        pki = cwd / "dicom-store" / "pki"
        client = CredentialFiles(pki / "client.pem", pki / "client-chain.pem", pki / "client.key")
        yield scan(node, pki / "ca.pem", pki / "server-chain.pem", client, cwd / "sslyze.json")
    finally:
        node.stop()


def _rsa_node(cwd: Path, *args: str) -> Generator[Scanned, None, None]:
    pki = cwd / "pki"
    root = CertificateAuthority.create("Scan Root CA", key=KeySpec.rsa(2048))
    ca = root.write_cert(pki / "ca.pem")
    intermediate = root.create_intermediate("Scan Intermediate CA", key=KeySpec.rsa(2048))
    server = intermediate.issue(
        "server", key=KeySpec.rsa(2048), dns=["localhost"], ips=["127.0.0.1"]
    ).write(pki, "server")
    client = intermediate.issue("client", key=KeySpec.rsa(2048), dns=["localhost"]).write(
        pki, "client"
    )
    node = Node(
        cwd, "--tls-cert", str(server.chain), "--tls-key", str(server.key), "--ca", str(ca), *args
    )
    try:
        yield scan(node, ca, server.chain, client, cwd / "sslyze.json")
    finally:
        node.stop()


@pytest.fixture(scope="module")
def rsa_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scanned]:
    """The default profile with an RSA-2048 certificate issued by an intermediate CA: the RSA
    half of the suite list (where static RSA and ROBOT would show) and a chain with a middle."""
    yield from _rsa_node(tmp_path_factory.mktemp("rsa-node"))


@pytest.fixture(params=["default", "rsa"])
def scanned(request: pytest.FixtureRequest) -> Scanned:
    fixture: Scanned = request.getfixturevalue(f"{request.param}_node")
    return fixture


def accepted(scanned: Scanned, command: str) -> list[dict[str, Any]]:
    suites: list[dict[str, Any]] = scanned.result(command)["accepted_cipher_suites"]
    return suites


def names(suites: list[dict[str, Any]]) -> set[str]:
    return {s["cipher_suite"]["name"] for s in suites}


# --- protocol versions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ],
)
def test_versions_before_tls_1_2_are_refused(scanned: Scanned, command: str) -> None:
    result = scanned.result(command)
    assert result["accepted_cipher_suites"] == [] and result["is_tls_version_supported"] is False
    assert result["rejected_cipher_suites"], "sslyze offered no suite: nothing was tested"


def test_tls_1_2_and_1_3_are_accepted(scanned: Scanned) -> None:
    assert [v.display_name for v in PROFILE.versions] == ["TLSv1.2", "TLSv1.3"]
    for command in ("tls_1_2_cipher_suites", "tls_1_3_cipher_suites"):
        assert scanned.result(command)["is_tls_version_supported"] is True, command


# --- suites --------------------------------------------------------------------------------


def test_the_profile_itself_names_no_forbidden_suite() -> None:
    """Our reference list must pass the same rules we hold the scan to."""
    for name in (*PROFILE.tls12_suites, *PROFILE.tls13_suites):
        assert forbidden_classes(name) == [], name


def test_no_accepted_suite_is_forbidden(scanned: Scanned) -> None:
    for command in ("tls_1_2_cipher_suites", "tls_1_3_cipher_suites"):
        for suite in accepted(scanned, command):
            name = suite["cipher_suite"]["name"]
            assert forbidden_classes(name) == [], f"{name} accepted under {command}"
            assert suite["cipher_suite"]["is_anonymous"] is False, name
            assert suite["cipher_suite"]["key_size"] >= 128, name


def test_the_scanner_offered_every_forbidden_class(scanned: Scanned) -> None:
    """sslyze really tried the bad suites (and we refused them), so the test above means something."""
    rejected = {
        s["cipher_suite"]["name"]
        for command in (
            "ssl_3_0_cipher_suites",
            "tls_1_0_cipher_suites",
            "tls_1_1_cipher_suites",
            "tls_1_2_cipher_suites",
        )
        for s in scanned.result(command)["rejected_cipher_suites"]
    }
    tried = {cls for name in rejected for cls in forbidden_classes(name)}
    assert tried == set(FORBIDDEN), f"never offered: {set(FORBIDDEN) - tried}"


def test_accepted_suites_are_exactly_the_profiles_for_this_key(scanned: Scanned) -> None:
    """Each accepted suite is in B.12's list, and each B.12 suite this key can serve is accepted."""
    key = scanned.chain[0].public_key()
    auth = "ECDSA" if isinstance(key, ec.EllipticCurvePublicKey) else "RSA"
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    tls12 = names(accepted(scanned, "tls_1_2_cipher_suites"))
    tls13 = names(accepted(scanned, "tls_1_3_cipher_suites"))
    assert tls12 <= set(PROFILE.tls12_suites), tls12 - set(PROFILE.tls12_suites)
    assert tls13 <= set(PROFILE.tls13_suites), tls13 - set(PROFILE.tls13_suites)
    assert tls12 == {
        s.iana_name for s in PROFILE.suites() if not s.tls13 and s.authentication == auth
    }
    assert tls13 == set(PROFILE.tls13_suites)


def test_forward_secrecy_only(scanned: Scanned) -> None:
    for suite in accepted(scanned, "tls_1_2_cipher_suites"):
        name = suite["cipher_suite"]["name"]
        assert name.startswith(("TLS_ECDHE_", "TLS_DHE_")), name
        assert suite["ephemeral_key"] is not None, f"{name}: no ephemeral key seen"
    for suite in accepted(scanned, "tls_1_3_cipher_suites"):  # (EC)DHE always; check sslyze saw it
        assert suite["ephemeral_key"] is not None, suite["cipher_suite"]["name"]


def test_only_strong_curves(scanned: Scanned) -> None:
    result = scanned.result("elliptic_curves")
    supported = {c["name"] for c in result["supported_curves"]}
    assert result["supports_ecdh_key_exchange"] is True and supported
    assert supported <= STRONG_CURVES, supported - STRONG_CURVES


# --- renegotiation, compression, downgrade, known attacks ---------------------------------


def test_no_insecure_renegotiation(scanned: Scanned) -> None:
    reneg = scanned.result("session_renegotiation")
    assert reneg["supports_secure_renegotiation"] is True  # RFC 5746 (RFC 9325 3.5 MUST)
    assert reneg["is_vulnerable_to_client_renegotiation_dos"] is False
    assert reneg["client_renegotiations_success_count"] == 0  # client-initiated: refused


def test_no_compression_and_extended_master_secret(scanned: Scanned) -> None:
    assert scanned.result("tls_compression")["supports_compression"] is False  # CRIME
    assert scanned.result("tls_extended_master_secret")["supports_ems_extension"] is True


def test_downgrade_protection(scanned: Scanned) -> None:
    assert scanned.result("tls_fallback_scsv")["supports_fallback_scsv"] is True


def test_no_heartbleed_ccs_or_robot(scanned: Scanned) -> None:
    assert scanned.result("heartbleed")["is_vulnerable_to_heartbleed"] is False
    assert scanned.result("openssl_ccs_injection")["is_vulnerable_to_ccs_injection"] is False
    assert scanned.result("robot")["robot_result"] in (
        "NOT_VULNERABLE_NO_ORACLE",
        "NOT_VULNERABLE_RSA_NOT_SUPPORTED",
    )


# --- certificate chain ---------------------------------------------------------------------


def test_chain_is_complete_in_order_and_verifies(scanned: Scanned) -> None:
    info = scanned.result("certificate_info")
    (deployment,) = info["certificate_deployments"]
    received = [c["fingerprint_sha256"] for c in deployment["received_certificate_chain"]]
    expected = [sha256_b64(c) for c in scanned.chain]  # leaf, then every intermediate
    (anchor,) = load_chain(scanned.ca)
    # What we send is our chain file, whole and in order; the root may follow (it MAY be sent).
    assert received in (expected, [*expected, sha256_b64(anchor)]), received
    assert deployment["received_chain_has_valid_order"] is True
    (ours,) = [
        p
        for p in deployment["path_validation_results"]
        if Path(p["trust_store"]["path"]).resolve() == scanned.ca.resolve()
    ]
    assert ours["was_validation_successful"] is True, ours["validation_error"]
    verified = [c["fingerprint_sha256"] for c in ours["verified_certificate_chain"]]
    # No missing intermediate: every certificate but the anchor came from the peer, in order.
    assert verified[-1] == sha256_b64(anchor)
    assert verified[:-1] == received[: len(verified) - 1] == expected
    assert deployment["verified_chain_has_sha1_signature"] is False
    leaf_key = deployment["received_certificate_chain"][0]["public_key"]
    is_ec = isinstance(scanned.chain[0].public_key(), ec.EllipticCurvePublicKey)
    assert leaf_key["key_size"] >= (PROFILE.min_ec_bits if is_ec else PROFILE.min_rsa_bits), (
        leaf_key
    )


# --- the scan itself -----------------------------------------------------------------------


def test_node_requires_a_client_certificate(default_node: Scanned, tmp_path: Path) -> None:
    """Without the client certificate an outside client is told a certificate is required, so
    the scan above needed the credentials it was given."""
    server = run_sslyze(default_node.node.port, tmp_path / "noauth.json", "--tlsv1_3")
    assert server["connectivity_result"]["client_auth_requirement"] == "REQUIRED"


def test_scan_is_quick(scanned: Scanned) -> None:
    assert scanned.seconds < 30, f"sslyze took {scanned.seconds:.1f} s"


def test_a_retired_profile_is_caught(tmp_path: Path) -> None:
    """The control: the same scan and rules against a node opted into retired B.9 (TLS 1.0 and
    static-RSA AES-CBC-SHA allowed) find exactly what they should, so a green run above is not
    a scan that could not see."""
    running = _rsa_node(tmp_path, "--profile", "bcp195")
    retired = next(running)
    try:
        assert retired.result("tls_1_0_cipher_suites")["is_tls_version_supported"] is True
        accepted12 = names(accepted(retired, "tls_1_2_cipher_suites"))
        assert "TLS_RSA_WITH_AES_128_CBC_SHA" in accepted12
        assert set(forbidden_classes("TLS_RSA_WITH_AES_128_CBC_SHA")) == {
            "static RSA key transport",
            "CBC with HMAC (not AEAD)",
            "SHA-1 or MD5 record MAC",
        }
        assert not accepted12 <= set(PROFILE.tls12_suites)
    finally:
        running.close()  # stops the node
