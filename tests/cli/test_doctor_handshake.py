"""What ``dicomtls doctor`` concludes from a failed handshake, one case per way it fails."""

from __future__ import annotations

import pytest

from dicomtls.doctor.probes import DoctorOptions, _handshake_failure
from dicomtls.doctor.report import Report, Verdict
from dicomtls.pki import init_pki
from dicomtls.tls.errors import HandshakeStage, TLSHandshakeError
from dicomtls.tls.flags import Side
from dicomtls.tls.settings import TLSSettings


def _error(stage: HandshakeStage, alert: str | None = None) -> TLSHandshakeError:
    return TLSHandshakeError(
        "127.0.0.1:2762", Side.CLIENT, stage, "what OpenSSL said", alert=alert, hint="its hint"
    )


def _steps(error: TLSHandshakeError, tls: TLSSettings | None = None) -> tuple[bool, Report]:
    report = Report("127.0.0.1:2762")
    plain = _handshake_failure(report, DoctorOptions("127.0.0.1", 2762, tls), error)
    return plain, report


@pytest.fixture(scope="module")
def with_certificate(tmp_path_factory: pytest.TempPathFactory) -> TLSSettings:
    pki = init_pki(tmp_path_factory.mktemp("doctor-handshake") / "pki")
    return TLSSettings(
        certificate=pki.chain("client"), private_key=pki.key("client"), ca_files=pki.ca
    )


def test_a_port_without_tls_is_ours_to_fix_and_speaks_plain_dicom() -> None:
    plain, report = _steps(_error(HandshakeStage.NOT_TLS))
    (step,) = report.steps
    assert plain and (step.name, step.verdict, step.code, step.side) == (
        "protocol",
        Verdict.FAIL,
        "NOT_TLS",
        "ours",
    )
    assert step.summary == "what OpenSSL said" and "--no-tls" in str(step.fix)


def test_no_answer_to_our_hello() -> None:
    plain, report = _steps(_error(HandshakeStage.TIMEOUT))
    (step,) = report.steps
    assert not plain and (step.code, step.side) == ("TLS_TIMEOUT", "peer")
    assert step.summary == "no TLS answer to our ClientHello"


@pytest.mark.parametrize("alert", ["protocol_version", "handshake_failure"])
def test_a_refused_offer_is_the_handshake_failing(alert: str) -> None:
    plain, report = _steps(_error(HandshakeStage.PEER_REJECTED, alert))
    (step,) = report.steps
    assert not plain and (step.name, step.code, step.side, step.fix) == (
        "protocol",
        "PEER-REJECTED",
        "peer",
        "its hint",
    )


def test_refused_without_a_certificate_of_ours() -> None:
    plain, report = _steps(_error(HandshakeStage.PEER_REJECTED, "certificate_required"))
    protocol, client = report.steps
    assert not plain and protocol.verdict is Verdict.PASS
    assert (client.name, client.code, client.side) == (
        "client-certificate",
        "CLIENT_CERTIFICATE_REQUIRED",
        "ours",
    )


def test_refused_although_we_sent_a_certificate(with_certificate: TLSSettings) -> None:
    _, report = _steps(_error(HandshakeStage.CLOSED, "unknown_ca"), with_certificate)
    _, client = report.steps
    assert (client.code, client.fix) == ("UNKNOWN_CA", "its hint")
    assert client.summary.startswith("the node refused us: ")


def test_closed_without_an_alert_names_no_alert(with_certificate: TLSSettings) -> None:
    _, report = _steps(_error(HandshakeStage.CLOSED), with_certificate)
    _, client = report.steps
    assert (client.code, client.summary) == ("CLOSED", "the node refused us: what OpenSSL said")


def test_the_evidence_is_the_error() -> None:
    error = _error(HandshakeStage.TIMEOUT)
    _, report = _steps(error)
    assert report.steps[0].evidence == error.to_dict()
