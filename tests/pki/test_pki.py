"""The test PKI, proven with ``openssl verify`` rather than by reading back what we wrote."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import pkcs12

from dicomtls.pki import BrokenKind, CertificateAuthority, KeySpec, init_pki, load_ca

#: A root and the intermediate it signed.
CAs = tuple[CertificateAuthority, CertificateAuthority]


@pytest.fixture(scope="module")
def cas() -> CAs:
    root = CertificateAuthority.create("PKI Test Root")
    return root, root.create_intermediate("PKI Test Intermediate")


def _verify(tmp: Path, root: CertificateAuthority, chain: bytes, *args: str) -> tuple[int, str]:
    (tmp / "root.pem").write_bytes(root.cert_pem())
    (tmp / "chain.pem").write_bytes(chain)
    certs = chain.split(b"-----END CERTIFICATE-----")
    (tmp / "leaf.pem").write_bytes(certs[0] + b"-----END CERTIFICATE-----\n")
    untrusted = b"-----END CERTIFICATE-----".join(certs[1:]).strip()
    cmd = ["openssl", "verify", "-CAfile", str(tmp / "root.pem"), *args]
    if untrusted:
        (tmp / "untrusted.pem").write_bytes(untrusted + b"\n")
        cmd += ["-untrusted", str(tmp / "untrusted.pem")]
    done = subprocess.run([*cmd, str(tmp / "leaf.pem")], capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def test_node_certificate_verifies_for_both_purposes(cas: CAs, tmp_path: Path) -> None:
    root, inter = cas
    node = inter.issue("node", dns=["localhost"], ips=["127.0.0.1"])
    for purpose in ("sslserver", "sslclient"):
        code, out = _verify(tmp_path, root, node.cert_chain_pem(), "-purpose", purpose)
        assert code == 0, out


@pytest.mark.parametrize(
    ("kind", "args", "message"),
    [
        ("expired", (), "certificate has expired"),
        ("not-yet-valid", (), "certificate is not yet valid"),
        ("no-purpose", ("-purpose", "sslclient"), "error 26 at 0 depth"),
        ("server-only", ("-purpose", "sslclient"), "error 26 at 0 depth"),
        ("client-only", ("-purpose", "sslserver"), "error 26 at 0 depth"),
        ("self-signed", (), "self-signed certificate"),
        ("untrusted", (), "unable to get local issuer certificate"),
        ("weak-key", ("-auth_level", "2"), "EE certificate key too weak"),
        ("sha1", ("-auth_level", "2"), "CA signature digest algorithm too weak"),
        ("long-chain", ("-verify_depth", "2"), "certificate chain too long"),
    ],
)
def test_broken_kinds_fail_as_described(
    cas: CAs, tmp_path: Path, kind: str, args: tuple[str, ...], message: str
) -> None:
    root, inter = cas
    broken = inter.issue_broken(BrokenKind(kind), kind)
    code, out = _verify(tmp_path, root, broken.cert_chain_pem(), *args)
    assert code != 0
    assert message in out
    assert BrokenKind(kind).description


def test_every_broken_kind_says_which_verify_error_it_causes() -> None:
    """``dicomtls certs --broken`` lists each kind with the OpenSSL code it provokes."""
    for kind in BrokenKind:
        assert kind.description.endswith(")"), kind
        assert "(" in kind.description, kind


def test_revoked_certificate_on_the_crl(cas: CAs, tmp_path: Path) -> None:
    root, inter = cas
    revoked = inter.issue_broken("revoked", "revoked")
    crl = tmp_path / "crl.pem"
    crl.write_bytes(inter.crl([revoked]))
    code, out = _verify(
        tmp_path, root, revoked.cert_chain_pem(), "-crl_check", "-CRLfile", str(crl)
    )
    assert code != 0 and "certificate revoked" in out
    fine = inter.issue("fine")
    code, out = _verify(tmp_path, root, fine.cert_chain_pem(), "-crl_check", "-CRLfile", str(crl))
    assert code == 0, out


def test_wrong_hostname_fails_a_hostname_check(cas: CAs, tmp_path: Path) -> None:
    root, inter = cas
    wrong = inter.issue_broken("wrong-hostname", "wrong")
    code, out = _verify(tmp_path, root, wrong.cert_chain_pem(), "-verify_hostname", "localhost")
    assert code != 0 and "hostname mismatch" in out.lower()


def test_key_files(cas: CAs, tmp_path: Path) -> None:
    _, inter = cas
    ident = inter.issue("keys")
    files = ident.write(tmp_path, "keys", password=b"pw")
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=b"pw")
    assert key.public_key() == ident.private_key.public_key()
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(files.key.read_bytes(), password=b"wrong")
    assert b"BEGIN EC PRIVATE KEY" in ident.private_key_pem_traditional()
    bundle = pkcs12.load_pkcs12(ident.pkcs12(b"p12"), b"p12")
    assert bundle.cert is not None and bundle.cert.certificate == ident.certificate
    assert [c.certificate for c in bundle.additional_certs] == list(ident.intermediates)


def test_rsa_and_unknown_kinds(cas: CAs) -> None:
    _, inter = cas
    rsa = inter.issue("rsa", key=KeySpec.rsa(2048))
    key = rsa.certificate.public_key()
    assert isinstance(key, RSAPublicKey) and key.key_size == 2048
    with pytest.raises(ValueError, match="choose one of: expired"):
        inter.issue_broken("melted", "x")


def _usage(cert: x509.Certificate) -> tuple[bool | None, set[str]]:
    """A certificate's basicConstraints CA flag and the keyUsage bits it sets."""
    ca = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ca.critical and usage.critical
    bits = ("digital_signature", "key_encipherment", "key_cert_sign", "crl_sign")
    return ca.value.ca, {b for b in bits if getattr(usage.value, b)}


def test_cas_sign_certificates_and_leaves_sign_handshakes(cas: CAs) -> None:
    root, inter = cas
    sign = {"digital_signature"}
    assert _usage(root.certificate) == (True, sign | {"key_cert_sign", "crl_sign"})
    assert _usage(inter.certificate) == (True, sign | {"key_cert_sign", "crl_sign"})
    assert _usage(inter.issue("ec").certificate) == (False, sign)
    # An RSA leaf may also carry TLS 1.2 RSA key exchange.
    rsa_leaf = inter.issue("rsa", key=KeySpec.rsa(2048)).certificate
    assert _usage(rsa_leaf) == (False, sign | {"key_encipherment"})


def test_a_local_ca_is_named_after_its_host_and_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sites' test CAs must not share a name; host name characters only, so no form of
    the name needs quoting."""
    import datetime as dt
    import socket

    from dicomtls.pki.bundle import local_ca_name

    day = dt.date(2026, 12, 3)
    monkeypatch.setattr(socket, "gethostname", lambda: "ct-scanner.radiology")
    assert local_ca_name(day) == "dicomtls Local CA (ct-scanner.radiology 2026-12-03)"
    monkeypatch.setattr(socket, "gethostname", lambda: 'CT "1", <room#2>\n')
    assert local_ca_name(day) == "dicomtls Local CA (CT1room2 2026-12-03)"
    monkeypatch.setattr(socket, "gethostname", lambda: "")
    assert local_ca_name(day) == "dicomtls Local CA (unnamed-host 2026-12-03)"
    files = init_pki(tmp_path)
    assert (
        load_ca(files.directory)
        .certificate.subject.rfc4514_string()
        .startswith("O=dicomtls test PKI,CN=dicomtls Local CA (unnamed-host ")
    )
