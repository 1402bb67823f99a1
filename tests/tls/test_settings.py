"""Settings are validated at construction: every mistake is a clear SettingsError there."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from dicomtls.tls.errors import SettingsError
from dicomtls.tls.flags import Side, VerifyFlags
from dicomtls.tls.settings import DEFAULT_VERIFY, TLSSettings

from ..conftest import MatrixPKI, TLSOptions


def test_defaults_are_secure(matrix_pki: MatrixPKI) -> None:
    settings = TLSSettings(ca_files=matrix_pki.ca_file)
    assert settings.verify == DEFAULT_VERIFY == VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT
    assert settings.security_profile.name == "bcp195-rfc8996"
    assert not settings.security_profile.retired
    assert settings.check_hostname is False
    assert settings.handshake_timeout == 30.0


def test_settings_are_immutable(matrix_pki: MatrixPKI) -> None:
    settings = TLSSettings(ca_files=matrix_pki.ca_file)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.verify = VerifyFlags.NONE  # type: ignore[misc]


@pytest.mark.parametrize("value", [VerifyFlags.CLIENT_ONCE, VerifyFlags.FAIL_IF_NO_PEER_CERT, 0x06])
def test_illegal_flag_combinations_raise(matrix_pki: MatrixPKI, value: int) -> None:
    with pytest.raises(SettingsError, match="must be combined with PEER"):
        TLSSettings(ca_files=matrix_pki.ca_file, verify=value)  # type: ignore[arg-type]


def test_verification_without_any_trusted_ca_is_refused() -> None:
    with pytest.raises(SettingsError, match="no CA is trusted"):
        TLSSettings()


def test_wrong_password_is_named(matrix_pki: MatrixPKI, tmp_path: Path) -> None:
    ident = matrix_pki.identities["client"]
    key = tmp_path / "client.key"
    key.write_bytes(ident.private_key_pem(password=b"right"))
    cert = matrix_pki.files["client"].cert
    with pytest.raises(SettingsError, match=f"wrong password for private key {key}"):
        TLSSettings(certificate=cert, private_key=key, password="wrong", verify=VerifyFlags.NONE)
    with pytest.raises(SettingsError, match="is encrypted: give a password"):
        TLSSettings(certificate=cert, private_key=key, verify=VerifyFlags.NONE)
    settings = TLSSettings(
        certificate=cert, private_key=key, password="right", verify=VerifyFlags.NONE
    )
    assert settings.identity is not None


def test_password_callback_is_asked_with_the_key_path(
    matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    ident = matrix_pki.identities["client"]
    key = tmp_path / "client.key"
    key.write_bytes(ident.private_key_pem(password=b"s3cret"))
    asked: list[Path] = []

    def on_password(path: Path) -> str:
        asked.append(path)
        return "s3cret"

    settings = TLSSettings(
        certificate=matrix_pki.files["client"].cert,
        private_key=key,
        on_private_key_password=on_password,
        verify=VerifyFlags.NONE,
    )
    assert asked == [key]
    assert settings.identity is not None
    assert settings.identity.certificate == ident.certificate


def test_password_callback_not_asked_for_a_plain_key(matrix_pki: MatrixPKI) -> None:
    asked: list[Path] = []

    def password(path: Path) -> str:
        asked.append(path)
        return "x"

    TLSSettings(
        certificate=matrix_pki.files["client"].cert,
        private_key=matrix_pki.files["client"].key,
        on_private_key_password=password,
        verify=VerifyFlags.NONE,
    )
    assert asked == []


def test_key_that_does_not_match_the_certificate(matrix_pki: MatrixPKI) -> None:
    with pytest.raises(SettingsError, match="does not match the certificate"):
        TLSSettings(
            certificate=matrix_pki.files["client"].cert,
            private_key=matrix_pki.files["server"].key,
            verify=VerifyFlags.NONE,
        )


def test_der_and_pkcs12_identities(matrix_pki: MatrixPKI, tmp_path: Path) -> None:
    ident = matrix_pki.identities["client"]
    der_cert, der_key = tmp_path / "c.der", tmp_path / "k.der"
    der_cert.write_bytes(ident.certificate.public_bytes(serialization.Encoding.DER))
    der_key.write_bytes(
        ident.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    der = TLSSettings(certificate=der_cert, private_key=der_key, verify=VerifyFlags.NONE)
    assert der.identity is not None and der.identity.certificate == ident.certificate

    p12 = tmp_path / "client.p12"
    p12.write_bytes(ident.pkcs12(password=b"pw"))
    bundle = TLSSettings(certificate=p12, password=b"pw", verify=VerifyFlags.NONE)
    assert bundle.identity is not None and bundle.identity.certificate == ident.certificate
    assert len(bundle.identity.intermediates) == len(ident.chain) - 1
    with pytest.raises(SettingsError, match="wrong password for PKCS#12"):
        TLSSettings(certificate=p12, password=b"nope", verify=VerifyFlags.NONE)


def test_missing_and_unreadable_files_are_named(tmp_path: Path, matrix_pki: MatrixPKI) -> None:
    with pytest.raises(SettingsError, match=r"CA file not found: .*missing\.pem"):
        TLSSettings(ca_files=tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(SettingsError, match=r"junk\.pem"):
        TLSSettings(ca_files=junk)
    with pytest.raises(SettingsError, match=r"CRL file .*junk\.pem"):
        TLSSettings(ca_files=matrix_pki.ca_file, crl_files=junk)
    with pytest.raises(SettingsError, match="certificate file not found"):
        TLSSettings(certificate=tmp_path / "nope.pem", verify=VerifyFlags.NONE)


def test_a_file_of_another_kind_is_said_in_words(tmp_path: Path, matrix_pki: MatrixPKI) -> None:
    """The parser's own words ("ParseError { kind: UnexpectedTag ...", "MalformedFraming")
    tell a person nothing; what the file holds instead does."""
    client = matrix_pki.files["client"]
    text = tmp_path / "notes.txt"
    text.write_text("not a certificate")
    cut = tmp_path / "cut.pem"
    cut.write_bytes(matrix_pki.ca_file.read_bytes()[:200])
    mistakes = [
        (
            {"ca_files": client.key},
            f"CA file {client.key} holds no readable certificate: "
            "it holds a private key, not a certificate",
        ),
        (
            {"ca_files": text},
            f"CA file {text} holds no readable certificate: "
            "it is not PEM, and not a certificate in DER either",
        ),
        (
            {"ca_files": cut},
            f"CA file {cut} holds no readable certificate: its PEM certificate is damaged",
        ),
        (
            {"ca_files": matrix_pki.ca_file, "crl_files": matrix_pki.ca_file},
            f"CRL file {matrix_pki.ca_file} is not a readable CRL: it holds a certificate, not a CRL",
        ),
        (
            {"certificate": client.cert, "private_key": client.cert, "verify": VerifyFlags.NONE},
            f"{client.cert} does not contain a readable private key: "
            "it holds a certificate, not a private key",
        ),
    ]
    for given, said in mistakes:
        with pytest.raises(SettingsError) as raised:
            TLSSettings(**given)  # type: ignore[arg-type]
        assert str(raised.value) == said


def test_ca_directory_of_ordinary_pem_files(matrix_pki: MatrixPKI, tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_bytes(matrix_pki.ca_file.read_bytes())
    (tmp_path / "README").write_text("not read")
    settings = TLSSettings(ca_directory=tmp_path)
    assert len(settings.trust.ca_certificates) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SettingsError, match="holds no certificate files"):
        TLSSettings(ca_directory=empty)
    with pytest.raises(SettingsError, match="CA directory not found"):
        TLSSettings(ca_directory=tmp_path / "README")


def test_profiles_and_cipher_overrides(matrix_pki: MatrixPKI) -> None:
    with pytest.raises(SettingsError, match="bcp195-rfc8996"):
        TLSSettings(ca_files=matrix_pki.ca_file, profile="tls-please")
    with pytest.warns(UserWarning, match="retired"):
        TLSSettings(ca_files=matrix_pki.ca_file, profile="bcp195")
    with pytest.raises(SettingsError):
        TLSSettings(ca_files=matrix_pki.ca_file, ciphers=["TLS_FAKE_WITH_NOTHING"])
    override = TLSSettings(
        ca_files=matrix_pki.ca_file,
        ciphers=["ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_AES_256_GCM_SHA384"],
    )
    assert override.cipher_override is not None
    assert [s.iana_name for s in override.cipher_override] == [
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
    ]


def test_server_context_needs_an_identity(matrix_pki: MatrixPKI) -> None:
    settings = TLSSettings(ca_files=matrix_pki.ca_file)
    assert settings.context(Side.CLIENT) is settings.context(Side.CLIENT)  # built once
    with pytest.raises(SettingsError, match="server needs a certificate"):
        settings.context(Side.SERVER)


def test_hostname_check_needs_verification() -> None:
    with pytest.raises(SettingsError, match="check_hostname=True needs verify flag PEER"):
        TLSSettings(verify=VerifyFlags.NONE, check_hostname=True)


def test_numbers_are_checked(matrix_pki: MatrixPKI) -> None:
    with pytest.raises(SettingsError, match="verify_depth"):
        TLSSettings(ca_files=matrix_pki.ca_file, verify_depth=-1)
    with pytest.raises(SettingsError, match="handshake_timeout"):
        TLSSettings(ca_files=matrix_pki.ca_file, handshake_timeout=0)


def test_tls13_only_cipher_override_builds_and_negotiates(matrix_pki: MatrixPKI) -> None:
    """Only TLS 1.3 suites: OpenSSL rejects an empty TLS 1.2 list, and must not crash us."""
    from .loopback import handshake

    only13: TLSOptions = {"ciphers": ["TLS_AES_256_GCM_SHA384"]}
    server = matrix_pki.settings("server", VerifyFlags.PEER, **only13)
    client = matrix_pki.settings("client", VerifyFlags.PEER, **only13)
    outcome = handshake(server, client)
    assert outcome.ok, (outcome.server_error, outcome.client_error)
    assert outcome.client_session is not None
    assert outcome.client_session.protocol == "TLSv1.3"
    assert outcome.client_session.cipher_iana == "TLS_AES_256_GCM_SHA384"
