"""Recognising peers that do not speak TLS, from their first bytes."""

import pytest

from dicomtls.tls.flags import Side
from dicomtls.tls.sniff import describe_non_tls, looks_like_tls_client_hello

A_ASSOCIATE_RQ_HEAD = bytes([0x01, 0x00, 0x00, 0x00, 0x00, 0xCD, 0x00, 0x01])
A_ABORT = bytes([0x07, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x02, 0x00])


def test_tls_records_are_not_flagged() -> None:
    assert describe_non_tls(bytes([0x16, 0x03, 0x01, 0x02, 0x00]), Side.SERVER) is None
    assert describe_non_tls(bytes([0x15, 0x03, 0x03, 0x00, 0x02]), Side.CLIENT) is None
    assert looks_like_tls_client_hello(bytes([0x16, 0x03, 0x01, 0x02, 0x00]))
    assert not looks_like_tls_client_hello(A_ASSOCIATE_RQ_HEAD)


def test_plain_dicom_to_a_tls_port_is_named() -> None:
    found = describe_non_tls(A_ASSOCIATE_RQ_HEAD, Side.SERVER)
    assert found is not None and found.protocol == "dicom"
    assert found.reason == "peer sent a plain DICOM A-ASSOCIATE-RQ to a TLS port"


def test_plain_dicom_answer_to_our_hello_is_named() -> None:
    found = describe_non_tls(A_ABORT, Side.CLIENT)
    assert found is not None
    assert "answered our TLS ClientHello with a plain DICOM A-ABORT" in found.reason
    assert "2762" in found.hint


@pytest.mark.parametrize(
    ("head", "protocol"),
    [
        (b"GET / HTTP/1.1\r\n", "http"),
        (b"HTTP/1.1 400 Bad", "http"),
        (b"\x80\x2e\x01\x03\x01", "sslv2"),
        (b"SSH-2.0-OpenSSH", "unknown"),
    ],
)
def test_other_protocols(head: bytes, protocol: str) -> None:
    found = describe_non_tls(head, Side.SERVER)
    assert found is not None and found.protocol == protocol
