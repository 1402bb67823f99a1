"""The PS3.15 profiles and the cipher table, checked against OpenSSL and Python's ssl module."""

from __future__ import annotations

import ssl

import pytest
from OpenSSL import SSL

from dicomtls.tls.ciphers import (
    CIPHER_SUITES,
    UnknownCipherSuite,
    cipher_from_openssl,
    lookup_cipher,
)
from dicomtls.tls.profiles import DEFAULT_PROFILE, PROFILES, TLSVersion, get_profile


@pytest.mark.parametrize("name", list(PROFILES))
def test_openssl_offers_exactly_the_profiles_suites(name: str) -> None:
    profile = PROFILES[name]
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_cipher_list(profile.openssl_cipher_string().encode())
    ctx.set_tls13_ciphersuites(profile.openssl_tls13_ciphersuites().encode())
    offered = SSL.Connection(ctx).get_cipher_list()
    expected = [
        lookup_cipher(n).openssl_name for n in (*profile.tls13_suites, *profile.tls12_suites)
    ]
    assert offered == expected


def test_profile_facts() -> None:
    b12 = get_profile(DEFAULT_PROFILE)
    assert (b12.annex, b12.retired) == ("B.12", False)
    assert b12.versions == (TLSVersion.TLSv1_2, TLSVersion.TLSv1_3)
    assert all(s.forward_secret and s.aead for s in b12.suites())
    assert get_profile("bcp195-rfc8996-modified").annex == "B.13"
    for name in ("bcp195", "bcp195-nd", "bcp195-ex", "aes"):
        assert PROFILES[name].retired
    assert TLSVersion.TLSv1 in get_profile("bcp195").versions
    assert get_profile("bcp195-ex").versions == (TLSVersion.TLSv1_2,)
    assert get_profile("aes").tls12_suites == ("TLS_RSA_WITH_AES_128_CBC_SHA",)


def test_forbidden_reasons() -> None:
    b12 = get_profile("bcp195-rfc8996")
    rsa_cbc = lookup_cipher("AES128-SHA")
    assert not b12.allows(rsa_cbc, TLSVersion.TLSv1_2)
    assert "not one of the suites B.12 allows" in (
        b12.forbidden_reason(rsa_cbc, TLSVersion.TLSv1_2) or ""
    )
    assert "TLSv1.1 is not allowed" in (b12.forbidden_reason(rsa_cbc, TLSVersion.TLSv1_1) or "")
    assert b12.allows(lookup_cipher("TLS_AES_128_GCM_SHA256"), TLSVersion.TLSv1_3)


def test_unknown_profile_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="choose one of: bcp195-rfc8996"):
        get_profile("strong")


def test_cipher_table_matches_pythons_ssl() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    known = {c["name"]: c for c in ctx.get_ciphers()}
    compared = 0
    for suite in CIPHER_SUITES:
        theirs = known.get(suite.openssl_name)
        if theirs is None:
            continue
        compared += 1
        assert theirs["id"] & 0xFFFF == suite.code, suite.iana_name
        assert theirs["aead"] == suite.aead, suite.iana_name
        assert theirs["alg_bits"] == suite.encryption_bits or suite.encryption.startswith("3DES")
    assert compared >= 30


def test_lookup_by_either_name_and_suggestions() -> None:
    assert (
        lookup_cipher("tls_ecdhe_rsa_with_aes_128_gcm_sha256").openssl_name
        == "ECDHE-RSA-AES128-GCM-SHA256"
    )
    assert lookup_cipher("ECDHE-RSA-AES128-GCM-SHA256").code == 0xC02F
    with pytest.raises(UnknownCipherSuite, match="did you mean"):
        lookup_cipher("ECDHE-RSA-AES128-GCM-SHA255")
    assert cipher_from_openssl("TLS_AES_256_GCM_SHA384", "TLSv1.3") is not None
    assert cipher_from_openssl("TLS_AES_256_GCM_SHA384", "TLSv1.2") is None
