"""A ready test PKI on disk: a CA (with its key, to issue more) and a server and a client identity.

Layout (what ``dicomtls pki init`` writes)::

    ca.pem  ca.key            the root CA; keep ca.key private
    server-chain.pem  server.key
    client-chain.pem  client.key

``dicomtls serve`` creates the same on first run as ``STORE/pki``, except the CA key:
that goes beside the store, in ``STORE-ca/ca.key`` (:func:`store_ca_key_folder`), so a
copy of the store (a backup) cannot mint certificates the node trusts. Key files are
0600 and the folders made for them 0700, whatever the umask; certificates are 0644.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dicomtls.pki.authority import (
    CertificateAuthority,
    Credentials,
    KeySpec,
    _make_private_folder,
    _write_private,
)

__all__ = [
    "PKIFiles",
    "init_pki",
    "load_ca",
    "local_ca_name",
    "move_ca_key_out",
    "store_ca_key_folder",
]

_CA_KEY = "ca.key"


def store_ca_key_folder(store: Path) -> Path:
    """Where the first-run test PKI of ``store`` keeps its CA key: ``STORE-ca``, beside it."""
    absolute = Path(os.path.abspath(store))  # "." or "a/.." must not name a folder inside
    return absolute.with_name(absolute.name + "-ca")


@dataclass(frozen=True)
class PKIFiles:
    directory: Path
    key_directory: Path | None = None
    """Where ``ca.key`` is when not in ``directory`` (a store's first-run PKI)."""

    @classmethod
    def of_store(cls, store: Path) -> PKIFiles:
        """The first-run PKI of a node's store: ``STORE/pki``, its CA key in ``STORE-ca``."""
        return cls(store / "pki", store_ca_key_folder(store))

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The CA's key: in ``directory``, else for a store's ``pki`` folder in ``STORE-ca``."""
        if self.key_directory is not None:
            return self.key_directory / _CA_KEY
        inside = self.directory / _CA_KEY
        if not inside.exists() and self.directory.name == "pki":
            beside = store_ca_key_folder(self.directory.parent) / _CA_KEY
            if beside.exists():
                return beside
        return inside

    def chain(self, name: str) -> Path:
        return self.directory / f"{name}-chain.pem"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def exists(self) -> bool:
        """The files a node and its clients use are there (the CA key need not be)."""
        return all(p.exists() for p in (self.ca, self.chain("server"), self.key("server")))


def _local_names() -> tuple[list[str], list[str]]:
    dns = sorted({"localhost", socket.gethostname()})
    return dns, ["127.0.0.1", "::1"]


def local_ca_name(today: dt.date | None = None) -> str:
    """``dicomtls Local CA (HOST DATE)``: a test CA says where and when it was made.

    Two sites that each ran ``pki init`` (or a first ``serve``) would otherwise trust "the
    same" CA by name only, and every error naming it would read as if it were theirs. Only
    host name characters are kept, so that the name needs no quoting in any form.
    """
    host = "".join(
        ch for ch in socket.gethostname() if ch.isascii() and (ch.isalnum() or ch in ".-")
    )
    when = (today or dt.datetime.now(dt.UTC).date()).isoformat()
    return f"dicomtls Local CA ({host[:30] or 'unnamed-host'} {when})"


def init_pki(
    directory: Path, *, common_name: str | None = None, key_directory: Path | None = None
) -> PKIFiles:
    """Create a CA and a server and client identity (both with serverAuth + clientAuth).

    The CA is named by :func:`local_ca_name` unless ``common_name`` says otherwise. The CA
    key goes into ``key_directory`` when given (made 0700), else beside the CA.
    """
    files = PKIFiles(directory, key_directory)
    ca = CertificateAuthority.create(common_name or local_ca_name(), key=KeySpec.ec())
    ca.write_cert(files.ca)
    key = ca.identity.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _make_private_folder(files.ca_key.parent)
    _write_private(files.ca_key, key)
    dns, ips = _local_names()
    for name in ("server", "client"):
        ca.issue(name, dns=dns, ips=ips).write(directory, name)
    return files


def load_ca(directory: Path | PKIFiles) -> CertificateAuthority:
    """The CA of a PKI made by :func:`init_pki`, able to issue more certificates."""
    files = directory if isinstance(directory, PKIFiles) else PKIFiles(directory)
    cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
    key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    return CertificateAuthority(Credentials(cert, key), path_length=None)  # type: ignore[arg-type]


def move_ca_key_out(store: Path) -> tuple[Path, Path] | None:
    """Move a first-run CA key an older version left in ``STORE/pki`` to ``STORE-ca``.

    Returns (from, to) if it moved. Two different keys in both places are a ValueError:
    which one the certificates belong to is for a person to decide, and nothing is lost.
    """
    inside = store / "pki" / _CA_KEY
    if not inside.is_file():
        return None
    beside = store_ca_key_folder(store) / _CA_KEY
    if beside.exists():
        if beside.read_bytes() != inside.read_bytes():
            raise ValueError(
                f"two different CA keys, {inside} and {beside}: keep the one that signed "
                f"{inside.parent / 'ca.pem'} in {beside.parent}, and remove the other"
            )
        inside.unlink()  # a move an earlier start did not finish
        return inside, beside
    _make_private_folder(beside.parent)
    os.chmod(inside, 0o600)
    try:
        os.replace(inside, beside)
    except OSError as exc:
        if exc.errno != errno.EXDEV:  # the store is a mount of its own: copy, then remove
            raise
        _write_private(beside, inside.read_bytes())
        fd = os.open(beside, os.O_RDONLY)
        try:
            os.fsync(fd)  # on disk before the only other copy goes
        finally:
            os.close(fd)
        inside.unlink()
    return inside, beside
