"""Is a trusted CA's private key within reach? Then whoever can read it can mint trusted peers.

A node should hold CA certificates, never CA keys: anyone who can read the node's files
(a backup, a compromised service account) could otherwise issue client certificates the
node accepts. :func:`readable_ca_keys` looks where such a key is usually left, beside the
CA file, and says which trusted CAs it found keys for. Only the named folders are read,
and in them only ``*.key`` and ``*.pem`` files of key size, so it is cheap at start-up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

__all__ = ["readable_ca_keys"]

_SUFFIXES = (".key", ".pem")
_MAX_SIZE = 1 << 20  # a key file, or a bundle holding one; larger files are something else
_PEM_KEY = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S
)


def _public(key: object) -> bytes | None:
    public = getattr(key, "public_key", None)
    if public is None:
        return None
    try:
        return bytes(
            public().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def _keys_in(path: Path, data: bytes) -> Iterator[PrivateKeyTypes]:
    """The unencrypted private keys in a file's bytes (PEM blocks, or one DER key)."""
    named_key = path.suffix == ".key"
    if b"PRIVATE KEY" not in data and not named_key:
        return
    blocks = [m.group(0) for m in _PEM_KEY.finditer(data)]
    loaders = [(serialization.load_pem_private_key, b) for b in blocks]
    if not blocks and named_key and b"-----BEGIN" not in data:
        loaders = [(serialization.load_der_private_key, data)]
    for load, raw in loaders:
        try:
            yield load(raw, None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue  # encrypted (we cannot read it either), or not a key


def _candidates(folder: Path) -> Iterator[tuple[Path, bytes]]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in sorted(entries, key=lambda e: e.name):
        if not entry.name.endswith(_SUFFIXES):
            continue
        try:
            if not entry.is_file() or entry.stat().st_size > _MAX_SIZE:
                continue
            with open(entry.path, "rb") as handle:
                data = handle.read(_MAX_SIZE)
        except OSError:
            continue  # unreadable to us: that is what we want
        yield Path(entry.path), data


def readable_ca_keys(
    cas: Iterable[x509.Certificate], folders: Iterable[Path]
) -> list[tuple[x509.Certificate, Path]]:
    """Each trusted CA whose private key this process can read in ``folders``, and where."""
    by_public: dict[bytes, x509.Certificate] = {}
    for ca in cas:
        public = _public(ca)
        if public is not None:
            by_public.setdefault(public, ca)
    found: list[tuple[x509.Certificate, Path]] = []
    for folder in _distinct(folders):
        for path, data in _candidates(folder):
            for key in _keys_in(path, data):
                trusted = by_public.get(_public(key) or b"")
                if trusted is not None:
                    found.append((trusted, path))
    return found


def _distinct(folders: Iterable[Path]) -> list[Path]:
    """Each folder once, however it was named."""
    return list(dict.fromkeys(Path(os.path.abspath(folder)) for folder in folders))
