"""Negotiated-session introspection: the seed's cipher details, from real handshakes."""

from __future__ import annotations

from pathlib import Path
from typing import Unpack

from dicomtls.pki import CertificateAuthority, KeySpec
from dicomtls.tls.flags import VerifyFlags
from dicomtls.tls.settings import TLSSettings

from ..conftest import MatrixPKI, TLSOptions
from .loopback import handshake

PEER_FAIL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT


def test_tls13_with_ecdsa(matrix_pki: MatrixPKI) -> None:
    outcome = handshake(
        matrix_pki.settings("server", PEER_FAIL), matrix_pki.settings("client", PEER_FAIL)
    )
    session = outcome.client_session
    assert session is not None and outcome.ok
    assert session.protocol == "TLSv1.3"
    assert session.cipher_iana == "TLS_AES_256_GCM_SHA384"
    assert session.key_exchange.startswith("ECDHE")
    assert session.authentication == "ECDSA"
    assert (session.encryption, session.encryption_bits, session.integrity) == (
        "AES-256-GCM",
        256,
        "AEAD",
    )
    assert (session.peer_key_type, session.peer_key_bits) == ("EC", 256)
    assert session.server_name == "127.0.0.1"
    assert not session.resumed
    assert "TLSv1.3 TLS_AES_256_GCM_SHA384" in session.summary()
    assert session.to_dict()["peer_chain"][0]["depth"] == 0
    server = outcome.server_session
    assert server is not None and server.peer_key_bits == 256


def test_tls12_with_rsa(tmp_path: Path) -> None:
    root = CertificateAuthority.create("RSA Root", key=KeySpec.rsa(2048))
    ca = root.write_cert(tmp_path / "ca.pem")
    files = {
        n: root.issue(n, key=KeySpec.rsa(2048), ips=["127.0.0.1"]).write(tmp_path, n)
        for n in ("s", "c")
    }

    def settings(name: str, **extra: Unpack[TLSOptions]) -> TLSSettings:
        return TLSSettings(
            certificate=files[name].chain, private_key=files[name].key, ca_files=ca, **extra
        )

    outcome = handshake(
        settings("s"), settings("c", ciphers=["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"])
    )
    session = outcome.client_session
    assert session is not None and outcome.ok
    assert session.protocol == "TLSv1.2"
    assert session.cipher_openssl == "ECDHE-RSA-AES128-GCM-SHA256"
    assert session.key_exchange.startswith("ECDHE")
    assert session.authentication == "RSA"
    assert (session.encryption, session.encryption_bits) == ("AES-128-GCM", 128)
    assert (session.peer_key_type, session.peer_key_bits) == ("RSA", 2048)


def test_peer_chain_lists_each_certificate_once_leaf_first(matrix_pki: MatrixPKI) -> None:
    """Both sides see the peer's leaf then its intermediate, each once.

    A client's OpenSSL hands back the leaf inside the sent chain and a server's
    leaves it out; either way the chain we report is the same shape.
    """
    outcome = handshake(
        matrix_pki.settings("server", PEER_FAIL), matrix_pki.settings("client", PEER_FAIL)
    )
    assert outcome.ok, outcome
    for session, leaf in ((outcome.client_session, "server"), (outcome.server_session, "client")):
        assert session is not None
        chain = session.peer_chain
        assert [c.depth for c in chain] == [0, 1]
        assert chain[0].subject.startswith(f"CN = {leaf},")
        assert chain[1].subject.startswith("CN = dicomtls Matrix Intermediate CA")
        fingerprints = [c.sha256_fingerprint for c in chain]
        assert len(set(fingerprints)) == len(fingerprints)
        assert session.peer_certificate is not None
        assert session.peer_certificate.sha256_fingerprint == fingerprints[0]
