"""Record real DICOM sessions on loopback and turn them into fuzzing seeds.

Plain TCP (no TLS), so the recorded bytes are the PDUs themselves. A small recording proxy
sits between each client and server:

- DCMTK ``echoscu``, ``storescu``, ``findscu`` (and a rejected and an aborted ``echoscu``)
  against our node (``dicomtls serve --no-tls``);
- pynetdicom's SCU against our node: C-ECHO, C-STORE and C-FIND, with role selection,
  asynchronous operations window, user identity and extended negotiation sub-items;
- our SCU (``dicomtls echo`` / ``dicomtls store``) against DCMTK's ``storescp``.

For each session it writes, under ``fuzz/corpus/``:

- ``pdu/``          each direction's whole stream (``*.stream``) and every PDU (``*.pdu``);
- ``upper_layer/``  the requestor's stream, which is what an acceptor reads;
- ``acse/``         every A-ASSOCIATE-RQ;
- ``dimse/``        every reassembled command set (``*.command``) and each direction's
                    P-DATA-TF PDUs (``*.pdata``).

Usage: ``.venv/bin/python fuzz/capture_seeds.py [--out fuzz/corpus]`` (needs DCMTK on PATH and
pynetdicom in the venv). The C-STORE object is an 8x8 CT image, so the corpus stays small.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dicomtls.ul import PDataTF, PDUType, decode_pdu  # noqa: E402

PYTHON = Path(sys.executable)
DICOMTLS = PYTHON.parent / "dicomtls"
NODE_AE = "DICOMTLS"
TIMEOUT = 60.0
FIND_KEYS = ("-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-k", "PatientName=Fuzz*")


@dataclass
class Session:
    """One TCP connection as the proxy saw it."""

    name: str
    to_server: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class RecordingProxy:
    """Forward 127.0.0.1:<port> to an upstream port, recording both directions per connection."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.sessions: list[Session] = []
        self.label = "session"
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        taken = sum(s.name.startswith(self.label) for s in self.sessions)
        session = Session(f"{self.label}-{taken}" if taken else self.label)
        self.sessions.append(session)
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream)

        async def pump(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bytearray
        ) -> None:
            try:
                while data := await src.read(65536):
                    record += data
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                if dst.can_write_eof():
                    with contextlib.suppress(OSError):
                        dst.write_eof()

        await asyncio.gather(
            pump(client_r, server_w, session.to_server),
            pump(server_r, client_w, session.to_client),
        )
        for writer in (client_w, server_w):
            writer.close()
        session.done.set()


async def _wait_port(port: int) -> None:
    """Until something accepts on the port (DCMTK's storescp says nothing when ready)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise TimeoutError(f"nothing listens on port {port}") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run(*argv: str | Path, ok: tuple[int, ...] = (0,)) -> None:
    proc = await asyncio.create_subprocess_exec(
        *map(str, argv), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    if proc.returncode not in ok:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}:\n{out.decode(errors='replace')}")


async def _session(
    proxy: RecordingProxy, label: str, client: Callable[[int], Awaitable[None]]
) -> None:
    proxy.label = label
    before = len(proxy.sessions)
    await client(proxy.port)
    for session in proxy.sessions[before:]:
        await asyncio.wait_for(session.done.wait(), TIMEOUT)
    print(f"  {label}: {len(proxy.sessions) - before} connection(s)")


# --- the object we store ------------------------------------------------------------------


def tiny_ct(path: Path) -> None:
    """An 8x8 CT image in Explicit VR Little Endian: real enough for storescu and findscu."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.2")
    meta.MediaStorageSOPInstanceUID = generate_uid(prefix="1.2.826.0.1.3680043.10.1432.9.")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Fuzz^Seed"
    ds.PatientID = "SEED1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1432.9.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1432.9.2"
    ds.StudyDate = "20240101"
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(128))
    ds.save_as(path, enforce_file_format=True)


# --- clients ------------------------------------------------------------------------------


def _pynetdicom_session(port: int, ct: Path) -> None:
    """pynetdicom's SCU with every negotiation sub-item it can send, then echo, store, find."""
    from pydicom import dcmread
    from pydicom.dataset import Dataset
    from pynetdicom import AE, build_role
    from pynetdicom.pdu_primitives import (
        AsynchronousOperationsWindowNegotiation,
        SOPClassCommonExtendedNegotiation,
        SOPClassExtendedNegotiation,
        UserIdentityNegotiation,
    )
    from pynetdicom.sop_class import (
        CTImageStorage,
        StudyRootQueryRetrieveInformationModelFind,
        Verification,
    )

    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 1
    window.maximum_number_operations_performed = 1
    identity = UserIdentityNegotiation()
    identity.user_identity_type = 2
    identity.primary_field = b"fuzz"
    identity.secondary_field = b"seed"
    extended = SOPClassExtendedNegotiation()
    extended.sop_class_uid = StudyRootQueryRetrieveInformationModelFind
    extended.service_class_application_information = b"\x01\x01"
    common = SOPClassCommonExtendedNegotiation()
    common.sop_class_uid = CTImageStorage
    common.service_class_uid = "1.2.840.10008.4.2"
    common.related_general_sop_class_identification = ["1.2.840.10008.5.1.4.1.1.2.1"]
    negotiation: list[Any] = [
        window,
        identity,
        extended,
        common,
        build_role(CTImageStorage, scu_role=True),
    ]
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE, ext_neg=negotiation)
    if not assoc.is_established:
        raise RuntimeError("pynetdicom could not associate with our node")
    assert assoc.send_c_echo().Status == 0
    assert assoc.send_c_store(dcmread(ct)).Status == 0
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    query.PatientName = "Fuzz*"
    responses = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    assert responses and responses[-1][0].Status == 0
    assoc.release()


async def capture(out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="dicomtls-seeds-"))
    ct = work / "ct.dcm"
    tiny_ct(ct)
    sessions: list[Session] = []
    node_port = _free_port()
    node = await asyncio.create_subprocess_exec(
        str(DICOMTLS),
        "serve",
        "--no-tls",
        "--host",
        "127.0.0.1",
        "--port",
        str(node_port),
        "--store",
        str(work / "store"),
        "--fsync",
        "never",
        "--ae-title",
        NODE_AE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    storescp = None
    try:
        assert node.stderr is not None  # it says where it listens on stderr
        while b"listening on" not in (line := await asyncio.wait_for(node.stderr.readline(), 60)):
            if not line:
                raise RuntimeError("dicomtls serve exited before listening")
        proxy = RecordingProxy(node_port)
        await proxy.start()
        print(f"our node on {node_port}, proxy on {proxy.port}")
        aec = ("-aet", "DCMTK-SCU", "-aec", NODE_AE, "127.0.0.1")
        await _session(proxy, "dcmtk-echoscu", lambda p: _run("echoscu", *aec, str(p)))
        await _session(
            proxy,
            "dcmtk-echoscu-rejected",
            lambda p: _run("echoscu", "-aec", "NOBODY", "127.0.0.1", str(p), ok=(0, 1)),
        )
        await _session(
            proxy, "dcmtk-echoscu-abort", lambda p: _run("echoscu", "--abort", *aec, str(p))
        )
        await _session(proxy, "dcmtk-storescu", lambda p: _run("storescu", *aec, str(p), ct))
        await _session(
            proxy,
            "dcmtk-findscu",
            lambda p: _run("findscu", "-S", *aec, str(p), *FIND_KEYS),
        )
        await _session(
            proxy,
            "pynetdicom-scu",
            lambda p: asyncio.to_thread(_pynetdicom_session, p, ct),
        )
        sessions += proxy.sessions
        await proxy.close()

        scp_port = _free_port()
        storescp = await asyncio.create_subprocess_exec(
            "storescp",
            "-aet",
            "STORESCP",
            "--ignore",
            str(scp_port),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await _wait_port(scp_port)
        proxy = RecordingProxy(scp_port)
        await proxy.start()
        ours = ("--no-tls", "--called-ae", "STORESCP")
        await _session(
            proxy,
            "ours-echo-dcmtk-storescp",
            lambda p: _run(DICOMTLS, "echo", "127.0.0.1", str(p), *ours),
        )
        await _session(
            proxy,
            "ours-store-dcmtk-storescp",
            lambda p: _run(DICOMTLS, "store", "127.0.0.1", str(p), str(ct), *ours),
        )
        # The readiness probe of _wait_port was not a DICOM session.
        sessions += [s for s in proxy.sessions if s.to_server]
        await proxy.close()
    finally:
        for proc in (node, storescp):
            if proc is not None and proc.returncode is None:
                proc.terminate()
                await proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    write_corpus(sessions, out)


# --- writing the corpus -------------------------------------------------------------------

_SHORT = {
    PDUType.ASSOCIATE_RQ: "rq",
    PDUType.ASSOCIATE_AC: "ac",
    PDUType.ASSOCIATE_RJ: "rj",
    PDUType.P_DATA_TF: "pdata",
    PDUType.RELEASE_RQ: "release-rq",
    PDUType.RELEASE_RP: "release-rp",
    PDUType.ABORT: "abort",
}


def split_pdus(stream: bytes) -> list[bytes]:
    """The PDUs of a recorded stream, as bytes (framed by their length fields)."""
    frames = []
    pos = 0
    while pos + 6 <= len(stream):
        end = pos + 6 + int.from_bytes(stream[pos + 2 : pos + 6], "big")
        frames.append(stream[pos:end])
        pos = end
    if pos != len(stream):
        raise ValueError(f"{len(stream) - pos} stray bytes at the end of a recorded stream")
    return frames


def write_corpus(sessions: list[Session], out: Path) -> None:
    dirs = {name: out / name for name in ("pdu", "upper_layer", "acse", "dimse")}
    for directory in dirs.values():
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.iterdir():
            old.unlink()
    for session in sessions:
        for direction, stream in (
            ("to-acceptor", session.to_server),
            ("to-requestor", session.to_client),
        ):
            if not stream:
                continue
            data = bytes(stream)
            stem = f"{session.name}.{direction}"
            (dirs["pdu"] / f"{stem}.stream").write_bytes(data)
            if direction == "to-acceptor":
                (dirs["upper_layer"] / f"{stem}.stream").write_bytes(data)
            frames = split_pdus(data)
            pdata = b"".join(f for f in frames if f[0] == PDUType.P_DATA_TF)
            if pdata:
                (dirs["dimse"] / f"{stem}.pdata").write_bytes(pdata)
            for i, frame in enumerate(frames):
                kind = _SHORT[PDUType(frame[0])]
                (dirs["pdu"] / f"{stem}.{i:02d}-{kind}.pdu").write_bytes(frame)
                if frame[0] == PDUType.ASSOCIATE_RQ:
                    (dirs["acse"] / f"{stem}.{i:02d}-rq.pdu").write_bytes(frame)
            # Each command set, joined from its command fragments (PS3.8 E.2).
            command = bytearray()
            commands = 0
            for pdu in map(decode_pdu, frames):
                for pdv in pdu.pdvs if isinstance(pdu, PDataTF) else ():
                    if pdv.is_command:
                        command += pdv.data
                        if pdv.is_last:
                            name = f"{stem}.{commands:02d}.command"
                            (dirs["dimse"] / name).write_bytes(bytes(command))
                            command.clear()
                            commands += 1
    total = sum(f.stat().st_size for d in dirs.values() for f in d.iterdir())
    count = sum(1 for d in dirs.values() for _ in d.iterdir())
    print(f"{len(sessions)} sessions -> {count} seed files, {total} bytes under {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "fuzz" / "corpus")
    args = parser.parse_args()
    for tool in ("echoscu", "storescu", "findscu", "storescp"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: install DCMTK (apt-get install dcmtk)")
    asyncio.run(capture(args.out))


if __name__ == "__main__":
    main()
