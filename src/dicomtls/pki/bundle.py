"""A ready test PKI on disk: a CA (with its key, to issue more) and a server and a client identity.

Layout (what ``dicomtls pki init`` writes and ``dicomtls serve`` creates on first run)::

    ca.pem  ca.key            the root CA; keep ca.key private
    server-chain.pem  server.key
    client-chain.pem  client.key
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dicomtls.pki.authority import CertificateAuthority, Identity, KeySpec, _write_private

__all__ = ["PKIFiles", "init_pki", "load_ca"]


@dataclass(frozen=True)
class PKIFiles:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    def chain(self, name: str) -> Path:
        return self.directory / f"{name}-chain.pem"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def exists(self) -> bool:
        return all(
            p.exists() for p in (self.ca, self.ca_key, self.chain("server"), self.key("server"))
        )


def _local_names() -> tuple[list[str], list[str]]:
    dns = sorted({"localhost", socket.gethostname()})
    return dns, ["127.0.0.1", "::1"]


def init_pki(directory: Path, *, common_name: str = "dicomtls Local CA") -> PKIFiles:
    """Create a CA and a server and client identity (both with serverAuth + clientAuth)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = PKIFiles(directory)
    ca = CertificateAuthority.create(common_name, key=KeySpec.ec())
    ca.write_cert(files.ca)
    key = ca.identity.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(files.ca_key, key)
    dns, ips = _local_names()
    for name in ("server", "client"):
        ca.issue(name, dns=dns, ips=ips).write(directory, name)
    return files


def load_ca(directory: Path) -> CertificateAuthority:
    """The CA of a PKI made by :func:`init_pki`, able to issue more certificates."""
    files = PKIFiles(directory)
    cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
    key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    return CertificateAuthority(Identity(cert, key), path_length=None)  # type: ignore[arg-type]
