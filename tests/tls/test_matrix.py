"""The full verification matrix, with real handshakes on loopback.

Every legal flag combination x {server mode, client mode} x {no peer certificate,
valid chain, each broken certificate}: whether the handshake succeeds, what the
verify callback saw, and which side got which error.
"""

from __future__ import annotations

import pytest

from dicomtls.tls.errors import HandshakeStage
from dicomtls.tls.flags import VerifyFlags

from ..conftest import BROKEN_KINDS, MatrixPKI
from .loopback import Recorder, handshake

PEER_FAIL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT
LEGAL_FLAGS = [
    VerifyFlags.NONE,
    VerifyFlags.PEER,
    PEER_FAIL,
    VerifyFlags.PEER | VerifyFlags.CLIENT_ONCE,
    PEER_FAIL | VerifyFlags.CLIENT_ONCE,
]

# The first verification code OpenSSL reports for each broken certificate.
EXPECTED_CODE = {
    "valid": "OK",
    "expired": "CERT_HAS_EXPIRED",
    "not-yet-valid": "CERT_NOT_YET_VALID",
    "no-purpose": "INVALID_PURPOSE",
    "self-signed": "DEPTH_ZERO_SELF_SIGNED_CERT",
    "untrusted": "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
    "weak-key": "EE_KEY_TOO_SMALL",
    "sha1": "CA_MD_TOO_WEAK",
    "wrong-hostname": "OK",  # only a client that checks the host name objects, see below
    "revoked": "CERT_REVOKED",
    "long-chain": "CERT_CHAIN_TOO_LONG",
}
PEER_CASES = ["no-certificate", "valid", *BROKEN_KINDS]


def _identity(case: str, role: str) -> str | None:
    if case == "no-certificate":
        return None
    return role if case == "valid" else case


def _flag_id(flags: VerifyFlags) -> str:
    return flags.label.replace(",", "+")


@pytest.mark.parametrize("case", PEER_CASES)
@pytest.mark.parametrize("flags", LEGAL_FLAGS, ids=_flag_id)
def test_server_mode(matrix_pki: MatrixPKI, flags: VerifyFlags, case: str) -> None:
    """We are the server verifying the client's certificate with ``flags``."""
    recorder = Recorder()
    server = matrix_pki.settings("server", flags, on_verify=recorder)
    client = matrix_pki.settings(_identity(case, "client"), PEER_FAIL)
    outcome = handshake(server, client)

    if VerifyFlags.PEER not in flags:
        # No certificate request is sent, so nothing is verified and everyone connects.
        assert outcome.ok, outcome
        assert recorder.calls == []
        assert outcome.server_session is not None
        assert outcome.server_session.peer_chain == ()
        return
    if case == "no-certificate":
        assert recorder.calls == []
        if VerifyFlags.FAIL_IF_NO_PEER_CERT in flags:
            assert outcome.server_error is not None
            assert outcome.server_error.stage is HandshakeStage.NO_PEER_CERTIFICATE
            assert not outcome.exchanged
            assert outcome.client_error is not None  # the client is told, by alert
        else:
            assert outcome.ok, outcome
        return
    expected = EXPECTED_CODE[case]
    if expected == "OK":
        assert outcome.ok, outcome
        # One call per certificate, root first, all OK: the seed's "called once per certificate".
        assert recorder.depths == [2, 1, 0]
        assert recorder.codes == ["OK", "OK", "OK"]
        assert outcome.server_session is not None
        peer = outcome.server_session.peer_certificate
        assert peer is not None and peer.subject.startswith(f"CN = {_identity(case, 'client')},")
        assert [c.depth for c in outcome.server_session.peer_chain] == [0, 1]  # leaf, intermediate
        return
    assert not outcome.exchanged
    error = outcome.server_error
    assert error is not None, outcome
    assert error.stage is HandshakeStage.VERIFY
    assert error.verify_error is not None and error.verify_error.name == expected
    assert error.certificate is not None
    assert error.peer.startswith("127.0.0.1:")
    assert error.hint
    assert expected in recorder.codes
    assert recorder.calls[-1][0] is False  # the call that ended it said "not ok"
    assert outcome.client_error is not None
    assert outcome.client_error.stage in (HandshakeStage.PEER_REJECTED, HandshakeStage.CLOSED)


@pytest.mark.parametrize("case", ["valid", *BROKEN_KINDS])
@pytest.mark.parametrize("flags", LEGAL_FLAGS, ids=_flag_id)
def test_client_mode(matrix_pki: MatrixPKI, flags: VerifyFlags, case: str) -> None:
    """We are the client verifying the server's certificate with ``flags``.

    FAIL_IF_NO_PEER_CERT and CLIENT_ONCE are ignored in client mode; NONE still
    verifies and reports, but a failure does not end the connection. A server
    always presents a certificate, so "no peer certificate" has no client row.
    """
    recorder = Recorder()
    checks_host = VerifyFlags.PEER in flags
    client = matrix_pki.settings("client", flags, on_verify=recorder, check_hostname=checks_host)
    server = matrix_pki.settings(_identity(case, "server"), VerifyFlags.NONE)
    outcome = handshake(server, client)

    expected = EXPECTED_CODE[case]
    if case == "wrong-hostname" and checks_host:
        expected = "IP_ADDRESS_MISMATCH"  # we dialled 127.0.0.1; the SAN names another host
    assert recorder.calls, "the server certificate is always reported to the callback"
    if expected == "OK":
        assert outcome.ok, outcome
        assert recorder.codes == ["OK", "OK", "OK"]
        assert outcome.client_session is not None
        assert outcome.client_session.verify_result.ok
        peer = outcome.client_session.peer_certificate
        assert peer is not None and peer.subject.startswith(f"CN = {_identity(case, 'server')},")
        return
    assert expected in recorder.codes
    if VerifyFlags.PEER not in flags:
        # Client NONE: verified, reported, and the link goes on.
        assert outcome.ok, outcome
        assert outcome.client_session is not None
        assert outcome.client_session.verify_result.name == expected
        return
    assert not outcome.exchanged
    error = outcome.client_error
    assert error is not None, outcome
    assert error.stage is HandshakeStage.VERIFY
    assert error.verify_error is not None and error.verify_error.name == expected
    assert error.side == "client"
    assert outcome.server_error is not None
    assert outcome.server_error.stage in (HandshakeStage.PEER_REJECTED, HandshakeStage.CLOSED)
