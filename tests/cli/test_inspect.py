"""What ``dicomtls inspect`` warns of, certificate by certificate."""

from __future__ import annotations

import pytest

from dicomtls.cli.certs import _warnings
from dicomtls.pki import BrokenKind
from dicomtls.pki.authority import CertificateAuthority
from dicomtls.tls.certinfo import CertificateInfo


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("Inspect Test CA")


def _warned(ca: CertificateAuthority, kind: BrokenKind | None) -> list[str]:
    issued = ca.issue("node") if kind is None else ca.issue_broken(kind, "node")
    return _warnings(CertificateInfo.from_certificate(issued.certificate))


def test_a_node_certificate_from_the_test_pki_has_nothing_to_warn_of(
    ca: CertificateAuthority,
) -> None:
    assert _warned(ca, None) == []


def test_a_ca_needs_no_tls_purpose(ca: CertificateAuthority) -> None:
    assert _warnings(CertificateInfo.from_certificate(ca.certificate)) == []


@pytest.mark.parametrize(
    ("kind", "warning"),
    [
        (BrokenKind.EXPIRED, "expired"),
        (BrokenKind.WEAK_KEY, "RSA 1024 bits: too small for the BCP 195 profiles"),
        (BrokenKind.SHA1, "signed with sha1: too weak for the BCP 195 profiles"),
        (BrokenKind.SERVER_ONLY, "no TLS client purpose (clientAuth): cannot act as SCU"),
        (BrokenKind.CLIENT_ONLY, "no TLS server purpose (serverAuth): cannot act as SCP"),
    ],
)
def test_each_weakness_is_one_warning(
    ca: CertificateAuthority, kind: BrokenKind, warning: str
) -> None:
    assert _warned(ca, kind) == [warning]


def test_a_certificate_for_neither_side_gets_both_purpose_warnings(
    ca: CertificateAuthority,
) -> None:
    assert _warned(ca, BrokenKind.NO_PURPOSE) == [
        "no TLS client purpose (clientAuth): cannot act as SCU",
        "no TLS server purpose (serverAuth): cannot act as SCP",
    ]
