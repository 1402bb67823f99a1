"""Where CA keys live: outside a node's store, 0600 whatever the umask, and noticed when in reach."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from dicomtls.pki import CertificateAuthority, KeySpec, PKIFiles, init_pki, load_ca
from dicomtls.pki.bundle import move_ca_key_out, store_ca_key_folder
from dicomtls.pki.exposure import readable_ca_keys

from ..node.test_file_modes import modes_under, umask


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o000], ids=lambda m: f"umask{m:03o}")
def test_a_store_pki_keeps_its_ca_key_beside_the_store(tmp_path: Path, mask: int) -> None:
    store = tmp_path / "dicom-store"
    with umask(mask):
        files = init_pki(store / "pki", key_directory=store_ca_key_folder(store))
    assert files.ca_key == tmp_path / "dicom-store-ca" / "ca.key"
    assert not (store / "pki" / "ca.key").exists()
    assert not any(
        b"PRIVATE KEY" in p.read_bytes() and p.name.startswith("ca")
        for p in store.rglob("*")
        if p.is_file()
    )
    modes = modes_under(tmp_path)
    keys = {n: m for n, m in modes.items() if n.endswith(".key")}
    certs = {n: m for n, m in modes.items() if n.endswith(".pem")}
    folders = {n: m for n, m in modes.items() if n != "." and (tmp_path / n).is_dir()}
    assert set(keys) == {
        "dicom-store-ca/ca.key",
        "dicom-store/pki/server.key",
        "dicom-store/pki/client.key",
    }
    assert set(keys.values()) == {0o600}
    assert set(certs.values()) == {0o644}  # public, but never writable by others
    assert folders == {"dicom-store": 0o700, "dicom-store/pki": 0o700, "dicom-store-ca": 0o700}
    # ``pki issue DIR`` finds the key from the PKI folder alone, as a person names it
    assert PKIFiles(store / "pki").ca_key == files.ca_key
    issued = load_ca(store / "pki").issue("modality")
    assert issued.certificate.issuer == load_ca(files).certificate.subject


def test_store_ca_key_folder_is_never_inside_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    assert store_ca_key_folder(Path("dicom-store")) == tmp_path / "dicom-store-ca"
    assert store_ca_key_folder(Path(".")) == tmp_path.with_name(tmp_path.name + "-ca")
    assert store_ca_key_folder(Path("a/..")) == tmp_path.with_name(tmp_path.name + "-ca")
    assert store_ca_key_folder(tmp_path / "s/") == tmp_path / "s-ca"


def test_an_older_first_run_ca_key_is_moved_out_once(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with umask(0o000):
        files = init_pki(store / "pki")  # as older versions made it: ca.key inside
    inside = store / "pki" / "ca.key"
    key = inside.read_bytes()
    assert move_ca_key_out(store) == (inside, tmp_path / "store-ca" / "ca.key")
    assert not inside.exists()
    beside = tmp_path / "store-ca" / "ca.key"
    assert beside.read_bytes() == key and _mode(beside) == 0o600
    assert _mode(beside.parent) == 0o700
    assert move_ca_key_out(store) is None  # nothing left to move
    assert PKIFiles(files.directory).ca_key == beside


def test_a_move_that_did_not_finish_and_two_different_keys(tmp_path: Path) -> None:
    store = tmp_path / "store"
    init_pki(store / "pki")
    inside = store / "pki" / "ca.key"
    beside = tmp_path / "store-ca" / "ca.key"
    beside.parent.mkdir()
    beside.write_bytes(inside.read_bytes())  # copied, the original not yet removed
    assert move_ca_key_out(store) == (inside, beside)
    assert not inside.exists() and beside.exists()

    other = CertificateAuthority.create("Other").identity.private_key_pem()
    inside.write_bytes(other)
    with pytest.raises(ValueError, match="two different CA keys") as refused:
        move_ca_key_out(store)
    assert "\n" not in str(refused.value)
    assert inside.read_bytes() == other and beside.exists()  # nothing lost


def test_readable_ca_keys_beside_the_ca_file(tmp_path: Path) -> None:
    root = CertificateAuthority.create("Readable Root")
    other = CertificateAuthority.create("Other Root", key=KeySpec.rsa(2048))
    ca_file = tmp_path / "cas" / "ca.pem"
    root.write_cert(ca_file)
    folder = ca_file.parent
    leaf = root.issue("node")
    leaf.write(folder, "node")  # a leaf key beside the CA: not the CA's
    (folder / "other.key").write_bytes(other.identity.private_key_pem())  # some other CA's
    (folder / "locked.key").write_bytes(root.identity.private_key_pem(password=b"secret"))
    (folder / "notes.txt").write_bytes(root.identity.private_key_pem())  # not a key file name
    assert readable_ca_keys([root.certificate], [folder]) == []

    (folder / "root-bundle.pem").write_bytes(
        root.cert_pem() + root.identity.private_key_pem_traditional()
    )
    (folder / "root.key").write_bytes(root.identity.private_key_der())
    found = readable_ca_keys([root.certificate, other.certificate], [folder, folder / "."])
    assert found == [
        (other.certificate, folder / "other.key"),  # trusted too, now
        (root.certificate, folder / "root-bundle.pem"),
        (root.certificate, folder / "root.key"),
    ]
    assert readable_ca_keys([root.certificate], [tmp_path / "missing"]) == []


def test_only_the_named_folders_are_read(tmp_path: Path) -> None:
    root = CertificateAuthority.create("Elsewhere Root")
    (tmp_path / "deeper").mkdir()
    key = root.identity.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "deeper" / "ca.key").write_bytes(key)
    assert readable_ca_keys([root.certificate], [tmp_path]) == []
    assert len(readable_ca_keys([root.certificate], [tmp_path / "deeper"])) == 1
