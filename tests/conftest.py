"""A test PKI for the handshake tests: one root, one intermediate, good and broken leaves."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict, Unpack

import pytest

from dicomtls.pki import BrokenKind, CertificateAuthority, Credentials, KeySpec
from dicomtls.tls.flags import VerifyFlags
from dicomtls.tls.settings import TLSSettings
from dicomtls.tls.trust import CRLScope

from .audit.rsyslog import audit_pki, rsyslog  # noqa: F401  (a real rsyslogd, for every suite)

BROKEN_KINDS = (
    "expired",
    "not-yet-valid",
    "no-purpose",
    "self-signed",
    "untrusted",
    "weak-key",
    "sha1",
    "wrong-hostname",
    "revoked",
    "long-chain",
)


class TLSOptions(TypedDict, total=False):
    """The TLSSettings options a test may add to MatrixPKI.settings; absent ones keep their default."""

    ciphers: Iterable[str] | None
    crl_scope: CRLScope | Literal["leaf", "chain"]
    handshake_timeout: float


@dataclass
class Files:
    cert: Path
    key: Path


@dataclass
class MatrixPKI:
    directory: Path
    ca_file: Path
    crl_file: Path
    root: CertificateAuthority
    intermediate: CertificateAuthority
    identities: dict[str, Credentials]
    files: dict[str, Files]

    def settings(
        self,
        name: str | None,
        verify: VerifyFlags,
        *,
        on_verify: Callable[..., bool] | None = None,
        check_hostname: bool = False,
        verify_depth: int = 3,
        **extra: Unpack[TLSOptions],
    ) -> TLSSettings:
        """Settings presenting identity ``name`` (None: no certificate), trusting our root."""
        kind = name or ""
        # Peers presenting a weak key or SHA-1 signature can only load it at a low security level.
        relaxed = kind in ("weak-key", "sha1")
        ident = self.files.get(name) if name else None
        return TLSSettings(
            certificate=None if ident is None else ident.cert,
            private_key=None if ident is None else ident.key,
            ca_files=self.ca_file,
            crl_files=self.crl_file,
            verify=verify,
            on_verify=on_verify,
            check_hostname=check_hostname,
            verify_depth=verify_depth,
            profile="bcp195" if relaxed else "bcp195-rfc8996",
            **extra,
        )


@pytest.fixture(scope="session")
def matrix_pki(tmp_path_factory: pytest.TempPathFactory) -> MatrixPKI:
    directory = tmp_path_factory.mktemp("pki")
    root = CertificateAuthority.create("dicomtls Matrix Root CA", key=KeySpec.ec())
    inter = root.create_intermediate("dicomtls Matrix Intermediate CA")
    identities: dict[str, Credentials] = {
        "server": inter.issue("server", dns=["localhost"], ips=["127.0.0.1", "::1"]),
        "client": inter.issue("client", dns=["localhost"], ips=["127.0.0.1", "::1"]),
    }
    for kind in BROKEN_KINDS:
        identities[kind] = inter.issue_broken(BrokenKind(kind), kind)
    ca_file = directory / "ca.pem"
    root.write_cert(ca_file)
    crl_file = directory / "crl.pem"
    crl_file.write_bytes(inter.crl([identities["revoked"]]))
    files = {}
    for name, ident in identities.items():
        written = ident.write(directory, name=name)
        files[name] = Files(cert=written.chain, key=written.key)
    return MatrixPKI(directory, ca_file, crl_file, root, inter, identities, files)
