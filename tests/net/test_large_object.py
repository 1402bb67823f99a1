"""A 256 MB object over mutual TLS between two processes: bytes on disk equal bytes sent,
and neither side's peak memory grows with the object (streaming, not loading)."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from dicomtls.dimse.part10 import read_header
from dicomtls.node.storage import DurableStore
from dicomtls.pki import CertificateAuthority

SIZE = 256 << 20
CT = UID("1.2.840.10008.5.1.4.1.1.2")
REPO = Path(__file__).resolve().parents[2]


def _write_big_file(path: Path, size: int) -> str:
    """A valid Part 10 CT object whose pixel data is streamed to disk, never held in memory."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CT, generate_uid()
    ds.PatientName, ds.PatientID = "Big^Object", "BIG1"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = 16384, size // 16384, 8, 1
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = (
        CT,
        ds.SOPInstanceUID,
    )
    ds.save_as(path, enforce_file_format=True)
    block = bytes(range(256)) * 4096  # 1 MiB
    with path.open("ab") as handle:
        handle.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, size))
        for _ in range(size // len(block)):
            handle.write(block)
    return str(ds.SOPInstanceUID)


def _rss(output: str, key: str = "maxrss_kib") -> int:
    """A ``key=N`` line of a peer's output, in KiB."""
    return next(int(line.split("=")[1]) for line in output.splitlines() if line.startswith(key))


def test_256_mb_streams_with_bounded_memory(tmp_path: Path) -> None:
    root = CertificateAuthority.create("Big Root")
    pki = tmp_path / "pki"
    root.write_cert(pki / "ca.pem")
    for name in ("server", "client"):
        root.issue(name, ips=["127.0.0.1"]).write(pki, name)
    source = tmp_path / "big.dcm"
    uid = _write_big_file(source, SIZE)

    peer = [sys.executable, "-m", "tests.net.peers"]
    server = subprocess.Popen(
        [*peer, "serve", str(pki), str(tmp_path / "store")],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdin is not None
        server_baseline = server.stdout.readline()
        port = int(server.stdout.readline().strip().split("=")[1])
        sender = subprocess.run(
            [*peer, "send", str(pki), str(port), str(source)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert sender.returncode == 0, sender.stderr
        assert "status=0" in sender.stdout
        server.stdin.close()
        server_out = server.stdout.read()
        assert server.wait(timeout=60) == 0
    finally:
        server.kill()

    stored = DurableStore(tmp_path / "store").path_for(uid)
    offset = read_header(source).dataset_offset
    sent_digest = hashlib.sha256()
    with source.open("rb") as handle:
        handle.seek(offset)
        while chunk := handle.read(1 << 22):
            sent_digest.update(chunk)
    got_digest = hashlib.sha256()
    with stored.open("rb") as handle:
        handle.seek(read_header(stored).dataset_offset)
        while chunk := handle.read(1 << 22):
            got_digest.update(chunk)
    assert got_digest.hexdigest() == sent_digest.hexdigest()

    # What the transfer adds to each process, above what its imports already take (pydicom
    # alone is 25-50 MiB depending on whether numpy is installed): bounded, not 256 MiB.
    scu_mib, scp_mib = _rss(sender.stdout) / 1024, _rss(server_out) / 1024
    scu_grew = scu_mib - _rss(sender.stdout, "baseline_kib") / 1024
    scp_grew = scp_mib - _rss(server_baseline, "baseline_kib") / 1024
    print(
        f"peak RSS: SCU {scu_mib:.0f} MiB (+{scu_grew:.0f} in transfer), "
        f"SCP {scp_mib:.0f} MiB (+{scp_grew:.0f}) for a {SIZE >> 20} MiB object"
    )
    assert scu_grew < 48 and scp_grew < 48
