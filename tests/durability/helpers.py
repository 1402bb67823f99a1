"""What the durability tests share: a real ``dicomtls serve`` process, objects, and the store's state."""

from __future__ import annotations

import contextlib
import random
import resource
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomtls.dimse.part10 import read_header
from dicomtls.net.association import Association, associate, default_proposals
from dicomtls.net.qr_scu import QueryModel
from dicomtls.node.storage import DurableStore
from dicomtls.pki import PKIFiles
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.acse import Proposal

from ..cli.test_node_cli import ENV, EXE, _free_port
from ..node.test_storage import CT

AE_TITLE = "DICOMTLS"
SUCCESS = 0x0000


def is_out_of_resources(status: int) -> bool:
    """0xA7xx: Refused, Out of Resources (PS3.4 Annex B.2.3)."""
    return status & 0xFF00 == 0xA700


class Serve:
    """``dicomtls serve`` in a subprocess; its output is read all along (a full pipe would stall it)."""

    def __init__(
        self, cwd: Path, *args: str, timeout: float = 60, open_files: tuple[int, int] | None = None
    ) -> None:
        """``open_files``: the (soft, hard) descriptor limit the node starts with."""
        self.port = _free_port()

        def limit() -> None:
            if open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, open_files)

        self.proc = subprocess.Popen(
            [EXE, "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=ENV,
            preexec_fn=limit,
        )
        self._lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.wait_for("listening on", timeout)
        except BaseException:
            self.kill()
            raise

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def lines_with(self, *texts: str) -> list[str]:
        with self._changed:
            return [line for line in self._lines if all(t in line for t in texts)]

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """The first output line containing ``text``, waiting for it up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self._lines:
                    if text in line:
                        return line
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "exited" if self._eof else f"said nothing of it in {timeout:g} s"
                    raise AssertionError(
                        f"waiting for {text!r}: the node {why}:\n{''.join(self._lines)}"
                    )
                self._changed.wait(remaining)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed."""
        if self.alive():
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)

    def stop(self) -> str:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        return self.output


@contextlib.contextmanager
def serving(cwd: Path, *args: str, open_files: tuple[int, int] | None = None) -> Iterator[Serve]:
    node = Serve(cwd, *args, open_files=open_files)
    try:
        yield node
    finally:
        node.stop()


def client_tls(store: Path) -> TLSSettings:
    """The client identity the node created in its store on first run."""
    pki = PKIFiles(store / "pki")
    return TLSSettings(
        certificate=pki.chain("client"), private_key=pki.key("client"), ca_files=pki.ca
    )


PROPOSALS = [
    *default_proposals([CT]),
    Proposal(QueryModel.STUDY_ROOT.find_uid, (ExplicitVRLittleEndian,)),
]


async def connect(node: Serve, store: Path) -> Association:
    return await associate(
        "127.0.0.1", node.port, client_tls(store), called_ae=AE_TITLE, proposals=PROPOSALS
    )


@dataclass(frozen=True)
class SentObject:
    path: Path
    uid: str


def series_uid(study_uid: str) -> str:
    """The one series of each study ``make_object`` makes."""
    return generate_uid(entropy_srcs=[study_uid])


def make_object(path: Path, pixels: int, study_uid: str, seed: int) -> SentObject:
    """Like ``tests/node/test_storage._make_file`` with distinct random pixels, fast for MBs."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CT, generate_uid()
    ds.PatientName, ds.PatientID = "Durable^Dora", "DUR1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid(study_uid)
    ds.Modality = "CT"
    ds.BitsAllocated, ds.Rows, ds.Columns, ds.SamplesPerPixel = 8, pixels // 1000, 1000, 1
    ds.PixelData = random.Random(seed).randbytes(pixels // 1000 * 1000)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CT
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return SentObject(path, str(ds.SOPInstanceUID))


def dataset_bytes(path: Path) -> bytes:
    """The data set as encoded, after the file meta information."""
    return path.read_bytes()[read_header(path).dataset_offset :]


def on_disk(store: Path) -> dict[str, Path]:
    """SOP instance UID -> file, for every committed object under ``objects/``."""
    return {p.stem: p for p in DurableStore(store).stored_files()}


def indexed(store: Path, cwd: Path) -> dict[str, Path]:
    """SOP instance UID -> file, as the node's SQLite index has it (read beside the node, WAL).

    The index keeps paths as the node was given them: relative to the node's ``cwd``.
    """
    with contextlib.closing(sqlite3.connect(store / "index.sqlite")) as db:
        rows = db.execute("SELECT sop_instance_uid, path FROM instances").fetchall()
    return {uid: cwd / path for uid, path in rows}


def leftovers(store: Path) -> list[str]:
    """What is in ``.incoming/``: partial objects, and committed ones not yet indexed
    (``.part`` too, a second name of the stored file)."""
    return sorted(p.name for p in (store / ".incoming").iterdir())


def partial_objects(store: Path) -> list[str]:
    """Objects being received: started, not yet committed (a running node may commit or
    drop one between the listing and its stat: then it is not partial any more)."""
    found = []
    for path in (store / ".incoming").glob("*.dcm.*.part"):
        try:
            facts = path.stat()
        except FileNotFoundError:
            continue
        if facts.st_nlink == 1 and facts.st_size > 0:
            found.append(path.name)
    return sorted(found)


def assert_intact(store: Path, sent: SentObject) -> None:
    """Stored where the store says, readable by pydicom, the data set byte for byte as sent."""
    path = DurableStore(store).path_for(sent.uid)
    assert path.is_file(), f"{sent.uid} is not on disk"
    back = pydicom.dcmread(path)
    assert back.SOPInstanceUID == sent.uid
    assert back.PixelData == pydicom.dcmread(sent.path).PixelData
    assert dataset_bytes(path) == dataset_bytes(sent.path), f"{sent.uid} differs from what was sent"
