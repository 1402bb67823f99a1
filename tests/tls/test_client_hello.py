"""A client our server shares no version or suite with: the server says what it offered.

Real Python ``ssl`` clients (OpenSSL) configured as old devices are, against our server on
loopback; and the reader against hostile bytes, since every one of them is the client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomtls.net.link import LinkEvents, SecureLink, serve
from dicomtls.tls.client_hello import read_client_hello
from dicomtls.tls.errors import TLSHandshakeError
from dicomtls.tls.flags import VerifyFlags

from ..conftest import MatrixPKI


async def _refusal(pki: MatrixPKI, client: ssl.SSLContext) -> TLSHandshakeError:
    """Our server's handshake error for a client using ``client``."""
    failed: asyncio.Future[TLSHandshakeError] = asyncio.get_running_loop().create_future()

    def on_ready(peer: str, error: TLSHandshakeError | None) -> None:
        if error is not None and not failed.done():
            failed.set_result(error)

    async def handler(link: SecureLink) -> None:
        raise AssertionError("the handshake succeeded")

    events = LinkEvents(on_secure_link_ready=on_ready)
    server = await serve(
        handler,
        "127.0.0.1",
        0,
        pki.settings("server", VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT),
        events=events,
    )
    async with server:
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            _, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=client)
            writer.close()
        return await asyncio.wait_for(failed, 20)


def _old_device(ciphers: str, *, versions: tuple[ssl.TLSVersion, ssl.TLSVersion]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():  # Python deprecates the old versions devices still use
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version, ctx.maximum_version = versions
    ctx.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    return ctx


TLS12 = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)


def test_a_client_offering_rsa_key_exchange_only(matrix_pki: MatrixPKI) -> None:
    """Many a modality of the 2010s: TLS 1.2, RSA key exchange, CBC."""
    client = _old_device("AES128-SHA:AES256-SHA", versions=TLS12)
    error = asyncio.run(_refusal(matrix_pki, client))
    assert error.reason.startswith("no shared cipher; the client offered TLSv1.2 with ")
    assert "TLS_RSA_WITH_AES_128_CBC_SHA" in error.reason
    assert error.hint is not None
    assert error.hint.startswith("the profiles bcp195 (B.9, retired), aes (B.3, retired) accept it")
    assert "--profile bcp195" in error.hint
    assert error.hint.endswith("those suites need an RSA certificate, and ours is EC")


def test_the_readme_shows_the_line_the_node_logs(matrix_pki: MatrixPKI) -> None:
    """README, "Why does my TLS connection fail?": the old device's line as the node logs it."""
    from ..test_readme import block

    client = _old_device("AES128-SHA:AES256-SHA", versions=TLS12)
    logged = "WARNING dicomtls.net: " + str(asyncio.run(_refusal(matrix_pki, client)))
    shown = block("Why does my TLS connection fail?", 2).text.strip()
    assert re.sub(r"with 127\.0\.0\.1:\d+", "with 10.0.4.17:50826", logged) == shown


def test_a_client_offering_dhe_only_is_pointed_at_the_non_downgrading_profile(
    matrix_pki: MatrixPKI,
) -> None:
    client = _old_device("DHE-RSA-AES128-GCM-SHA256", versions=TLS12)
    error = asyncio.run(_refusal(matrix_pki, client))
    assert "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256" in error.reason
    assert error.hint is not None and "bcp195-nd (B.10, retired)" in error.hint


def test_a_client_offering_nothing_any_profile_takes(matrix_pki: MatrixPKI) -> None:
    client = _old_device("AES128-SHA256", versions=TLS12)
    error = asyncio.run(_refusal(matrix_pki, client))
    assert "TLS_RSA_WITH_AES_128_CBC_SHA256" in error.reason or "0x003C" in error.reason
    assert error.hint is not None and error.hint.startswith("no DICOM TLS profile accepts")


def test_a_client_of_tls_1_0_only(matrix_pki: MatrixPKI) -> None:
    """As far as this machine's OpenSSL lets a client offer TLS 1.0."""
    tls10 = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1)
    try:
        client = _old_device("AES128-SHA", versions=tls10)
    except (ValueError, ssl.SSLError) as exc:
        pytest.fail(f"this OpenSSL will not make a TLS 1.0 client: {exc}")
    error = asyncio.run(_refusal(matrix_pki, client))
    assert "the client offered TLSv1 with TLS_RSA_WITH_AES_128_CBC_SHA" in error.reason
    assert error.hint is not None and "aes (B.3, retired)" in error.hint


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_the_reader_never_fails_on_hostile_bytes(data: bytes) -> None:
    hello = read_client_hello(b"\x16\x03\x01" + len(data).to_bytes(2, "big") + data)
    if hello is not None:
        hello.describe()
        hello.profiles_that_accept()


def test_a_hello_cut_short_or_of_another_record_type_is_none() -> None:
    assert read_client_hello(b"") is None
    assert read_client_hello(b"\x16\x03\x01\x00\x05\x01\x00\x00\x40") is None  # body cut short
    assert read_client_hello(b"\x17\x03\x03\x00\x01\x00") is None  # application data


def test_grease_and_signals_are_not_shown_as_suites() -> None:
    body = (
        b"\x03\x03"
        + bytes(32)
        + b"\x00"
        + b"\x00\x06\x0a\x0a\x00\xff\x13\x01"  # GREASE, the renegotiation SCSV, TLS_AES_128_GCM
        + b"\x01\x00"
        + b"\x00\x0b\x00\x2b\x00\x07\x06\x1a\x1a\x03\x04\x03\x03"  # supported_versions
    )
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    hello = read_client_hello(b"\x16\x03\x01" + len(message).to_bytes(2, "big") + message)
    assert hello is not None
    assert hello.describe() == "the client offered TLSv1.3, TLSv1.2 with TLS_AES_128_GCM_SHA256"
