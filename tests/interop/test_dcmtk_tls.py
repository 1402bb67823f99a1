"""Interop with DCMTK's TLS tools (Debian package ``dcmtk``), both directions, TLS 1.2 and 1.3.

DCMTK's Non-Downgrading BCP 195 profile (its default) offers only RSA-authenticated
suites for TLS 1.2, so these tests use an RSA-2048 PKI, as most deployed DICOM
nodes do. The DICOM bytes carried over the link are hand-built here (see
``dicom_bytes``): the point is the secure link, proven by a real DICOM answer.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from dicomtls.net.link import LinkEvents, SecureLink, connect, serve
from dicomtls.pki import CertificateAuthority, KeySpec
from dicomtls.tls.errors import HandshakeStage, TLSHandshakeError
from dicomtls.tls.flags import VerifyFlags
from dicomtls.tls.session import SessionInfo
from dicomtls.tls.settings import TLSSettings

from ..tls.loopback import Recorder
from . import dicom_bytes
from .conftest import RsaPKI, run_tool, storescp

pytestmark = pytest.mark.interop

PEER_FAIL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT
TLS12_ONLY = ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]


def test_dcmtk_is_installed() -> None:
    """The test command installs DCMTK; without it these tests would prove nothing."""
    for tool in ("echoscu", "storescp"):
        assert shutil.which(tool), f"{tool} missing: run scripts/setup.sh"


# -- DCMTK's echoscu against our server -------------------------------------------------------


async def _echoscu_to_us(
    pki: RsaPKI, server_tls: TLSSettings, client: str | None
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    result: dict[str, object] = {}
    ready: asyncio.Future[TLSHandshakeError | None] = loop.create_future()

    def on_ready(peer: str, error: TLSHandshakeError | None) -> None:
        if not ready.done():
            ready.set_result(error)

    async def handler(link: SecureLink) -> None:
        assert link.session is not None
        result["session"] = link.session
        data = b""
        while len(data) < 6 or len(data) < dicom_bytes.read_pdu_length(data):
            chunk = await link.read()
            if not chunk:
                break
            data += chunk
        result["pdu"] = data
        link.write(dicom_bytes.a_associate_rj())
        await link.drain()

    server = await serve(
        handler, "127.0.0.1", 0, server_tls, events=LinkEvents(on_secure_link_ready=on_ready)
    )
    async with server:
        code, output = await run_tool(
            "echoscu", "-d", *pki.dcmtk_args(client), "127.0.0.1", str(server.port)
        )
        result["error"] = await asyncio.wait_for(ready, 30)
    result["code"], result["output"] = code, output
    return result


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_echoscu_to_our_server(rsa_pki: RsaPKI, version: str) -> None:
    recorder = Recorder()
    ciphers = TLS12_ONLY if version == "TLSv1.2" else None
    server_tls = rsa_pki.ours("scp", on_verify=recorder, ciphers=ciphers)
    result = asyncio.run(_echoscu_to_us(rsa_pki, server_tls, "scu"))
    assert result["error"] is None, result["error"]
    session = result["session"]
    assert isinstance(session, SessionInfo) and session.peer_certificate is not None
    assert session.protocol == version
    assert session.peer_certificate.subject.startswith("CN = scu,")
    assert recorder.codes == ["OK", "OK"] and recorder.depths == [1, 0]
    pdu = result["pdu"]
    assert isinstance(pdu, bytes) and pdu[0] == 0x01  # DCMTK's A-ASSOCIATE-RQ, decrypted by us
    assert dicom_bytes.VERIFICATION_SOP_CLASS.encode() in pdu
    assert "Association Rejected" in str(result["output"])  # our A-ASSOCIATE-RJ, decrypted by DCMTK
    assert result["code"] != 0


def test_echoscu_with_no_purpose_certificate_is_refused_and_explained(rsa_pki: RsaPKI) -> None:
    recorder = Recorder()
    result = asyncio.run(
        _echoscu_to_us(rsa_pki, rsa_pki.ours("scp", on_verify=recorder), "no-purpose")
    )
    error = result["error"]
    assert isinstance(error, TLSHandshakeError)
    assert error.stage is HandshakeStage.VERIFY
    assert error.verify_error is not None and error.verify_error.name == "INVALID_PURPOSE"
    assert error.certificate is not None and error.certificate.subject.startswith(
        "CN = no-purpose,"
    )
    assert "pdu" not in result  # nothing reached the DICOM layer
    assert result["code"] != 0
    assert "INVALID_PURPOSE" in recorder.codes


def test_echoscu_without_certificate_is_refused(rsa_pki: RsaPKI) -> None:
    result = asyncio.run(_echoscu_to_us(rsa_pki, rsa_pki.ours("scp"), None))
    error = result["error"]
    assert isinstance(error, TLSHandshakeError)
    assert error.stage is HandshakeStage.NO_PEER_CERTIFICATE
    assert result["code"] != 0


def test_echoscu_without_certificate_is_welcome_when_only_peer_is_set(rsa_pki: RsaPKI) -> None:
    result = asyncio.run(
        _echoscu_to_us(rsa_pki, rsa_pki.ours("scp", verify=VerifyFlags.PEER), None)
    )
    assert result["error"] is None
    session = result["session"]
    assert isinstance(session, SessionInfo) and session.peer_chain == ()


# -- our client against DCMTK's storescp ----------------------------------------------------------


async def _associate(link: SecureLink) -> bytes:
    link.write(dicom_bytes.a_associate_rq(called="STORESCP"))
    data = b""
    while len(data) < 6 or len(data) < dicom_bytes.read_pdu_length(data):
        chunk = await link.read()
        if not chunk:
            break
        data += chunk
    return data


async def _us_tostorescp(
    pki: RsaPKI, tmp: Path, ours: TLSSettings, *opts: str
) -> tuple[str, bytes, bytes]:
    async with storescp(pki, tmp, *opts) as port:
        link = await connect("127.0.0.1", port, ours)
        assert link.session is not None
        answer = await _associate(link)
        release = b""
        if answer[:1] == b"\x02":
            link.write(dicom_bytes.a_release_rq())
            release = await link.read()
        await link.close()
        return link.session.protocol, answer, release


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_our_client_tostorescp(rsa_pki: RsaPKI, tmp_path: Path, version: str) -> None:
    recorder = Recorder()
    ciphers = TLS12_ONLY if version == "TLSv1.2" else None
    ours = rsa_pki.ours("scu", on_verify=recorder, ciphers=ciphers, check_hostname=True)
    protocol, answer, release = asyncio.run(
        _us_tostorescp(rsa_pki, tmp_path, ours, "--require-peer-cert")
    )
    assert protocol == version
    assert answer[0] == 0x02  # A-ASSOCIATE-AC from DCMTK over our link
    assert release[:1] == b"\x06"  # A-RELEASE-RP
    assert recorder.codes == ["OK", "OK"]


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_storescp_requiring_a_certificate_rejects_us_without_one(
    rsa_pki: RsaPKI, tmp_path: Path, version: str
) -> None:
    ciphers = TLS12_ONLY if version == "TLSv1.2" else None
    ours = rsa_pki.ours(None, ciphers=ciphers)
    with pytest.raises(TLSHandshakeError) as caught:
        asyncio.run(_us_tostorescp(rsa_pki, tmp_path, ours, "--require-peer-cert"))
    error = caught.value
    assert error.side == "client"
    assert error.stage in (HandshakeStage.PEER_REJECTED, HandshakeStage.CLOSED)
    if error.alert is not None:
        assert error.alert in ("certificate_required", "handshake_failure")
    if error.stage is HandshakeStage.CLOSED and version == "TLSv1.3":
        assert "requires a client certificate" in (error.hint or "")


def test_storescp_verifying_only_if_present_accepts_us_without_one(
    rsa_pki: RsaPKI, tmp_path: Path
) -> None:
    protocol, answer, _ = asyncio.run(
        _us_tostorescp(rsa_pki, tmp_path, rsa_pki.ours(None), "--verify-peer-cert")
    )
    assert protocol == "TLSv1.3"
    assert answer[0] == 0x02


def test_echoscu_ignoring_our_untrusted_certificate_still_connects(
    rsa_pki: RsaPKI, tmp_path: Path
) -> None:
    stranger = CertificateAuthority.create("Stranger Root", key=KeySpec.rsa(2048))
    files = stranger.issue("stranger", key=KeySpec.rsa(2048)).write(tmp_path, "stranger")
    ours = TLSSettings(certificate=files.chain, private_key=files.key, verify=VerifyFlags.NONE)

    async def run() -> dict[str, object]:
        result: dict[str, object] = {}

        async def handler(link: SecureLink) -> None:
            result["pdu"] = await link.read()
            link.write(dicom_bytes.a_associate_rj())
            await link.drain()

        async with await serve(handler, "127.0.0.1", 0, ours) as server:
            _code, output = await run_tool(
                "echoscu", "+tla", "--ignore-peer-cert", "127.0.0.1", str(server.port)
            )
        result["output"] = output
        return result

    result = asyncio.run(run())
    assert isinstance(result["pdu"], bytes) and result["pdu"][:1] == b"\x01"
    assert "Association Rejected" in str(result["output"])


def test_storescp_with_an_untrusted_certificate_is_refused_by_us(
    rsa_pki: RsaPKI, tmp_path: Path
) -> None:
    other = CertificateAuthority.create("Some Other Root", key=KeySpec.ec())
    other_ca = tmp_path / "other-ca.pem"
    other.write_cert(other_ca)
    cert, key = rsa_pki.files["scu"]
    ours = TLSSettings(certificate=cert, private_key=key, ca_files=other_ca)
    with pytest.raises(TLSHandshakeError) as caught:
        asyncio.run(_us_tostorescp(rsa_pki, tmp_path, ours, "--require-peer-cert"))
    error = caught.value
    assert error.stage is HandshakeStage.VERIFY
    assert error.verify_error is not None
    # DCMTK sends its root along, so OpenSSL meets an untrusted self-signed CA at depth 1.
    assert error.verify_error.name == "SELF_SIGNED_CERT_IN_CHAIN"
    assert error.certificate is not None
    assert error.certificate.subject.startswith("CN = dicomtls DCMTK Root CA")
