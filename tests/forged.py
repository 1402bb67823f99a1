"""Certificates cryptography will not build: DER edited by hand and signed again.

cryptography refuses to write what RFC 5280 forbids (a negative serial, version 4), yet
OpenSSL reads such certificates, so a hostile peer can send them. These helpers take a
certificate cryptography built, change its TBSCertificate's bytes and sign it again
with ECDSA-SHA256.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["resigned", "tlv", "with_replaced", "with_serial", "with_version"]

_ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")


def tlv(tag: int, content: bytes) -> bytes:
    """One DER element: ``tag``, the definite length, ``content``."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


def _body(cert: x509.Certificate) -> tuple[bytes, int]:
    """The TBSCertificate's content and where its fields start (after its header)."""
    tbs = cert.tbs_certificate_bytes
    header = 2 + (tbs[1] & 0x7F if tbs[1] & 0x80 else 0)
    return tbs[header:], header


def resigned(tbs_content: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The DER certificate of a TBSCertificate with this content, signed by ``key``."""
    tbs = tlv(0x30, tbs_content)
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return tlv(0x30, tbs + _ECDSA_SHA256 + tlv(0x03, b"\x00" + signature))


def with_version(cert: x509.Certificate, version: int, key: ec.EllipticCurvePrivateKey) -> bytes:
    """``cert`` with the [0] version field's value ``version`` (2 is v3, 3 an unknown v4)."""
    body, _ = _body(cert)
    assert body[:5] == bytes.fromhex("a003020102"), "a v3 certificate starts with [0] 2"
    return resigned(body[:4] + bytes([version]) + body[5:], key)


def with_serial(cert: x509.Certificate, serial: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """``cert`` with the serial's INTEGER content replaced by ``serial``."""
    body, _ = _body(cert)
    at = 5  # after the version [0] 2
    assert body[at] == 0x02 and body[at + 1] < 0x80, "a short serial follows the version"
    end = at + 2 + body[at + 1]
    return resigned(body[:at] + tlv(0x02, serial) + body[end:], key)


def with_replaced(
    cert: x509.Certificate, old: bytes, new: bytes, key: ec.EllipticCurvePrivateKey
) -> bytes:
    """``cert`` with the one run of ``old`` in its TBSCertificate replaced by ``new`` of
    the same length (an OID, a tag: lengths around it stay right)."""
    body, _ = _body(cert)
    assert len(old) == len(new) and body.count(old) == 1, "one run, the same length"
    return resigned(body.replace(old, new), key)
