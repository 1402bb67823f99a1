"""Who issued what: a server refusing our client certificate names the CAs it takes, beside
ours; a certificate from a CA that only shares a trusted CA's name is told apart.

Real handshakes on loopback between our server (which names the CAs it trusts in its
CertificateRequest, as Java-based archives do too) and our client. Before, the error said only
"the peer does not trust the CA that issued our certificate", which is no help when both CAs
carry the same default name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dicomtls.pki import CertificateAuthority
from dicomtls.tls.errors import HandshakeStage, TLSHandshakeError
from dicomtls.tls.flags import VerifyFlags
from dicomtls.tls.settings import TLSSettings

from .loopback import handshake

REQUIRE = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT


def _site(directory: Path, *ca_names: str) -> tuple[TLSSettings, TLSSettings]:
    """A server trusting CAs of ``ca_names`` (its certificate from the first), and a client
    whose certificate the first issued; the client trusts the server's CA."""
    authorities = [CertificateAuthority.create(name) for name in ca_names]
    directory.mkdir(parents=True, exist_ok=True)
    trusted = directory / "trusted.pem"
    trusted.write_bytes(b"".join(ca.identity.cert_pem() for ca in authorities))
    server = authorities[0].issue("server", dns=["localhost"], ips=["127.0.0.1"])
    client = authorities[0].issue("client")
    server_files = server.write(directory, "server")
    client_files = client.write(directory, "client")
    server_tls = TLSSettings(
        certificate=server_files.chain,
        private_key=server_files.key,
        ca_files=trusted,
        verify=REQUIRE,
    )
    client_tls = TLSSettings(
        certificate=client_files.chain, private_key=client_files.key, ca_files=trusted
    )
    return server_tls, client_tls


def _refusal(server_tls: TLSSettings, client_tls: TLSSettings) -> TLSHandshakeError:
    """The client's error when ``server_tls`` refuses it; the client trusts the server."""
    outcome = handshake(server_tls, dataclasses.replace(client_tls, ca_files=server_tls.ca_files))
    error = outcome.client_error
    assert error is not None and not outcome.exchanged, outcome
    assert error.stage in (HandshakeStage.PEER_REJECTED, HandshakeStage.CLOSED)
    return error


def test_a_client_certificate_from_another_ca_names_both(tmp_path: Path) -> None:
    hospital, _ = _site(tmp_path / "hospital", "Hospital CA")
    _, vendor = _site(tmp_path / "vendor", "Vendor CA")
    error = _refusal(hospital, vendor)
    assert error.alert == "unknown_ca"
    assert error.accepted_issuers == ("CN = Hospital CA, O = dicomtls test PKI",)
    assert error.our_issuer == "CN = Vendor CA, O = dicomtls test PKI"
    assert (
        "it takes client certificates issued by 'CN = Hospital CA, O = dicomtls test PKI'; "
        "ours is issued by 'CN = Vendor CA, O = dicomtls test PKI'"
    ) in str(error)
    assert error.to_dict()["accepted_issuers"] == ["CN = Hospital CA, O = dicomtls test PKI"]


def test_another_ca_of_the_same_name_is_told_apart(tmp_path: Path) -> None:
    """Two sites that each ran a PKI with the default name: the names match, the keys do not."""
    here, _ = _site(tmp_path / "here", "dicomtls Local CA")
    _, there = _site(tmp_path / "there", "dicomtls Local CA")
    error = _refusal(here, there)
    assert error.alert == "unknown_ca"
    assert "yet does not know ours: it trusts another CA of that name" in str(error)


def test_no_client_certificate_names_what_the_server_takes(tmp_path: Path) -> None:
    server, client = _site(tmp_path, "Hospital CA")
    anonymous = TLSSettings(ca_files=client.ca_files)
    error = _refusal(server, anonymous)
    assert error.accepted_issuers == ("CN = Hospital CA, O = dicomtls test PKI",)
    assert error.our_issuer is None
    assert str(error).count("Hospital CA") == 1


def test_a_server_naming_many_cas_is_shown_sixteen_and_escaped(tmp_path: Path) -> None:
    """The names are the server's to write: bounded, and shown escaped."""
    names = ["Hospital CA", "Evil\x1b[2J\nCA", *(f"Extra CA {i}" for i in range(30))]
    server, _ = _site(tmp_path / "hospital", *names)
    _, vendor = _site(tmp_path / "vendor", "Vendor CA")
    error = _refusal(server, vendor)
    assert len(error.accepted_issuers) == 16
    assert "(and others)" in str(error)
    assert not any(ch in str(error) for ch in "\x1b\n")
    assert "Evil" in error.accepted_issuers[1]


@pytest.mark.parametrize("stranger", ["Vendor CA", "Hospital CA"])
def test_our_server_names_no_cas_when_it_refuses_nothing_for_them(
    tmp_path: Path, stranger: str
) -> None:
    """A handshake that succeeds carries no such names, and a server side error never does."""
    server, client = _site(tmp_path / "a", "Hospital CA")
    outcome = handshake(server, client)
    assert outcome.ok, outcome
    _, other = _site(tmp_path / "b", stranger)
    refused = handshake(server, other)
    assert refused.server_error is not None
    assert refused.server_error.accepted_issuers == ()


@pytest.mark.parametrize("side", ["server", "client"])
def test_a_chain_from_a_namesake_of_a_trusted_ca_is_told_apart(tmp_path: Path, side: str) -> None:
    """OpenSSL finds no issuer, and "add the issuing CA to the CA file" sent the operator to
    a CA file that seems to hold it already."""
    here, _ = _site(tmp_path / "here", "dicomtls Local CA")
    there_server, there_client = _site(tmp_path / "there", "dicomtls Local CA")
    if side == "server":  # our node judging a client of the other site
        outcome = handshake(here, dataclasses.replace(there_client, ca_files=here.ca_files))
        error = outcome.server_error
    else:  # our client judging the other site's node
        mine = dataclasses.replace(there_client, ca_files=here.ca_files)
        outcome = handshake(there_server, mine)
        error = outcome.client_error
    assert error is not None and error.stage is HandshakeStage.VERIFY, outcome
    assert error.verify_error is not None
    expected = (
        "UNABLE_TO_GET_ISSUER_CERT_LOCALLY" if side == "server" else "SELF_SIGNED_CERT_IN_CHAIN"
    )
    assert error.verify_error.name == expected  # our client certificate goes without its root
    assert error.hint is not None
    assert error.hint.startswith(
        "we trust a CA named 'CN = dicomtls Local CA, O = dicomtls test PKI', but not the one "
        "that issued this certificate"
    )
