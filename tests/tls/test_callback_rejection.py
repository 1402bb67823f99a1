"""A verify callback that refuses a chain OpenSSL found valid is reported as OpenSSL reports it.

OpenSSL has no error of its own to record then, and ``X509_verify_cert`` falls back to
X509_V_ERR_UNSPECIFIED (1). An outside acceptance test found our report saying OK (0)
instead, in client NONE mode ("continues although its certificate ... failed: OK (0)")
and in the errors of every mode. Each case here is a real handshake on loopback, and our
verdict is held to the one OpenSSL recorded on the same connection.
"""

from __future__ import annotations

import logging

import pytest

from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.errors import HandshakeStage
from dicomtls.tls.flags import VerifyFlags
from dicomtls.tls.verify_error import VerifyCode, VerifyError

from ..conftest import MatrixPKI
from .loopback import Recorder, handshake

PEER_FAIL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_client_none_mode_reports_unspecified_like_openssl(
    matrix_pki: MatrixPKI, caplog: pytest.LogCaptureFixture
) -> None:
    """The acceptance case: NONE lets the link go on, and says why it is unverified."""
    recorder = Recorder(policy="reject")
    client = matrix_pki.settings("client", VerifyFlags.NONE, on_verify=recorder)
    with caplog.at_level(logging.WARNING, logger="dicomtls.tls"):
        outcome = handshake(matrix_pki.settings("server", VerifyFlags.NONE), client)
    assert outcome.ok, outcome  # NONE: a failed verification does not end the link
    assert len(recorder.calls) == 1  # OpenSSL stops at the first certificate refused
    ok, refused, _ = recorder.calls[0]
    assert ok  # OpenSSL had no objection to it
    assert outcome.client_session is not None
    result = outcome.client_session.verify_result
    assert result.code == VerifyCode.UNSPECIFIED == outcome.client_openssl_verify_result
    assert result.by_callback and result.depth == refused.depth
    assert (
        result.message == "the verify callback rejected a certificate that passed OpenSSL's checks"
    )
    assert result.to_dict()["code"] == 1 and result.to_dict()["name"] == "UNSPECIFIED"
    assert outcome.client_session.to_dict()["verify_result"]["by_callback"] is True
    expected = (
        f"continues although its certificate '{refused.readable_subject}' failed: "
        f"UNSPECIFIED (1) at depth {refused.depth}: the verify callback rejected"
    )
    assert any(expected in line for line in _warnings(caplog)), _warnings(caplog)
    assert not any("OK (0)" in line for line in _warnings(caplog))


def test_client_none_mode_refusing_only_the_leaf(matrix_pki: MatrixPKI) -> None:
    seen: list[int] = []

    def leaf_refused(ok: bool, cert: CertificateInfo, error: VerifyError) -> bool:
        seen.append(cert.depth)
        return ok and cert.depth > 0

    client = matrix_pki.settings("client", VerifyFlags.NONE, on_verify=leaf_refused)
    outcome = handshake(matrix_pki.settings("server", VerifyFlags.NONE), client)
    assert outcome.ok and outcome.client_session is not None
    assert seen == [2, 1, 0]  # root first, leaf last
    result = outcome.client_session.verify_result
    assert (result.name, result.depth, result.by_callback) == ("UNSPECIFIED", 0, True)
    assert outcome.client_openssl_verify_result == result.code


@pytest.mark.parametrize("server", ["server", "expired", "self-signed", "untrusted"])
def test_client_none_mode_agrees_with_openssl_without_a_refusing_callback(
    matrix_pki: MatrixPKI, server: str
) -> None:
    """OpenSSL's own errors, and a clean chain, are reported with OpenSSL's code as before."""
    recorder = Recorder()  # returns ok: the default
    client = matrix_pki.settings("client", VerifyFlags.NONE, on_verify=recorder)
    outcome = handshake(matrix_pki.settings(server, VerifyFlags.NONE), client)
    assert outcome.ok and outcome.client_session is not None
    result = outcome.client_session.verify_result
    assert result.code == outcome.client_openssl_verify_result
    assert not result.by_callback
    assert result.ok is (server == "server")


def test_client_peer_mode_names_the_callback(matrix_pki: MatrixPKI) -> None:
    client = matrix_pki.settings("client", VerifyFlags.PEER, on_verify=Recorder(policy="reject"))
    outcome = handshake(matrix_pki.settings("server", VerifyFlags.NONE), client)
    assert not outcome.exchanged
    error = outcome.client_error
    assert error is not None and error.stage is HandshakeStage.VERIFY
    assert error.verify_error == VerifyError.callback_rejection(2)
    assert "UNSPECIFIED (the verify callback rejected" in str(error)
    assert "OK (ok)" not in str(error)
    assert error.to_dict()["verify_error"]["code"] == 1
    # OpenSSL answers UNSPECIFIED with the internal_error alert; the server is told what
    # that usually means.
    assert outcome.server_error is not None
    assert outcome.server_error.stage is HandshakeStage.PEER_REJECTED
    assert outcome.server_error.alert == "internal_error"
    assert "verify callback refused our certificate" in outcome.server_error.reason


@pytest.mark.parametrize("flags", [VerifyFlags.PEER, PEER_FAIL], ids=["peer", "peer-fail"])
def test_server_peer_mode_names_the_callback(matrix_pki: MatrixPKI, flags: VerifyFlags) -> None:
    recorder = Recorder(policy="reject")
    server = matrix_pki.settings("server", flags, on_verify=recorder)
    outcome = handshake(server, matrix_pki.settings("client", VerifyFlags.PEER))
    assert not outcome.exchanged
    error = outcome.server_error
    assert error is not None and error.stage is HandshakeStage.VERIFY
    assert error.verify_error is not None
    assert error.verify_error.name == "UNSPECIFIED" and error.verify_error.by_callback
    assert error.certificate is not None
    assert error.certificate.depth == error.verify_error.depth == recorder.depths[0]
    assert outcome.client_error is not None and outcome.client_error.alert == "internal_error"


def test_a_crashing_callback_is_unspecified_too(matrix_pki: MatrixPKI) -> None:
    """pyOpenSSL answers 0 for a callback that raised: OpenSSL records UNSPECIFIED."""
    client = matrix_pki.settings("client", VerifyFlags.NONE, on_verify=Recorder(policy="raise"))
    outcome = handshake(matrix_pki.settings("server", VerifyFlags.NONE), client)
    error = outcome.client_error
    assert error is not None and error.stage is HandshakeStage.CALLBACK
    assert error.verify_error is not None and error.verify_error.by_callback
    assert error.verify_error.code == VerifyCode.UNSPECIFIED
