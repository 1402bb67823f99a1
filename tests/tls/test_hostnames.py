"""Host name checks (RFC 6125 6.4): ours, in the engine and in doctor, agree with OpenSSL's.

One server certificate from our test CA names ``*.org``, ``*.example.org`` and
``pacs.example.net``; each host below is checked twice over real TLS in memory and on
loopback: by our engine (its client dialling that name) and by Python's ``ssl`` (OpenSSL's
``X509_check_host``, the reference). A wildcard over a single label (``*.org``) must name
nothing: a certificate carrying one would otherwise pass for every host of a top-level
domain.
"""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from dicomtls.tls.engine import TLSEngine
from dicomtls.tls.errors import TLSHandshakeError
from dicomtls.tls.flags import Side, VerifyFlags
from dicomtls.tls.hostnames import dns_name_matches
from dicomtls.tls.settings import TLSSettings

from ..conftest import Files, MatrixPKI
from .loopback import handshake_in_memory

HOSTS = {  # host -> whether the certificate names it
    "pacs.example.org": True,
    "PACS.Example.ORG": True,
    "example.org": False,
    "a.pacs.example.org": False,
    "pacs.org": False,  # only *.org could name it, and that names nothing
    "org": False,
    "pacs.example.net": True,
    "x.pacs.example.net": False,
}
NAMES = ["*.org", "*.example.org", "pacs.example.net"]


@pytest.fixture(scope="module")
def wildcard(matrix_pki: MatrixPKI, tmp_path_factory: pytest.TempPathFactory) -> Files:
    issued = matrix_pki.intermediate.issue("wildcards", dns=NAMES)
    written = issued.write(tmp_path_factory.mktemp("wildcard"), name="wildcards")
    return Files(cert=written.chain, key=written.key)


def _settings(pki: MatrixPKI, files: Files | None) -> TLSSettings:
    return TLSSettings(
        certificate=None if files is None else files.cert,
        private_key=None if files is None else files.key,
        ca_files=pki.ca_file,
        verify=VerifyFlags.PEER,
        check_hostname=files is None,  # the client checks the name
    )


def _ours(pki: MatrixPKI, files: Files, host: str) -> bool:
    """Our engine, as a client dialling ``host``, against the certificate: accepted?"""
    client = TLSEngine(_settings(pki, None), Side.CLIENT, host, server_hostname=host)
    server = TLSEngine(_settings(pki, files), Side.SERVER, "client")
    try:
        handshake_in_memory(client, server)
    except TLSHandshakeError as exc:
        assert exc.verify_error is not None and exc.verify_error.name == "HOSTNAME_MISMATCH"
        assert exc.reason.endswith(  # what we dialled beside what the certificate names
            f"; we connected to '{host}', the certificate names {', '.join(NAMES)}"
        )
        return False
    return True


def _openssl(pki: MatrixPKI, files: Files, host: str) -> bool:
    """Python's ssl (OpenSSL's own host check) dialling ``host`` on loopback: accepted?"""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(files.cert, files.key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        raw, _ = listener.accept()
        try:
            with server_context.wrap_socket(raw, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass  # the client refused us

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_context = ssl.create_default_context(cafile=pki.ca_file)
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=20) as raw,
            client_context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except ssl.SSLCertVerificationError as exc:
        assert exc.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
        return False
    finally:
        thread.join(20)
        listener.close()


@pytest.mark.parametrize("host", list(HOSTS))
def test_our_host_check_agrees_with_openssl(
    matrix_pki: MatrixPKI, wildcard: Files, host: str
) -> None:
    expected = HOSTS[host]
    assert _openssl(matrix_pki, wildcard, host) is expected  # the reference, as we read it
    assert _ours(matrix_pki, wildcard, host) is expected
    assert any(dns_name_matches(name, host) for name in NAMES) is expected  # doctor's rule


def test_a_wildcard_names_one_whole_label_only() -> None:
    assert not dns_name_matches("*", "org")
    assert not dns_name_matches("*.", "org")
    assert not dns_name_matches("pacs*.example.org", "pacs1.example.org")  # partial: no
    assert not dns_name_matches("*.*.example.org", "a.b.example.org")
    assert not dns_name_matches("", "")
    assert dns_name_matches("*.example.org.", "pacs.example.org")
    # an absolute name as curl and browsers take it (OpenSSL's X509_check_host does not)
    assert dns_name_matches("*.example.org", "pacs.example.org.")


def test_a_mismatch_lists_eight_names_at_most_escaped(
    matrix_pki: MatrixPKI, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The names are the peer's to write: a certificate with 40 of them, one forging a line."""
    names = ["forged\x1b[2Jname.example", *(f"n{i}.example" for i in range(39))]
    issued = matrix_pki.intermediate.issue("many-names", dns=names)
    written = issued.write(tmp_path_factory.mktemp("many"), name="many")
    client = TLSEngine(_settings(matrix_pki, None), Side.CLIENT, "x", server_hostname="pacs.test")
    server = TLSEngine(
        _settings(matrix_pki, Files(cert=written.chain, key=written.key)), Side.SERVER, "c"
    )
    with pytest.raises(TLSHandshakeError) as refused:
        handshake_in_memory(client, server)
    assert refused.value.reason.endswith(
        "the certificate names forged\\x1b[2Jname.example, n0.example, n1.example, n2.example, "
        "n3.example, n4.example, n5.example, n6.example and 32 more"
    )
