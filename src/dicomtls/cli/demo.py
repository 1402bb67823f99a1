"""``dicomtls demo``: the main job end to end on loopback, success and an explained failure.

A fresh test PKI; a node (durable store + SQLite index) under mutual TLS; an SCU
that echoes, stores a few generated CT objects and queries them back, with the
negotiated cipher details; then a client whose certificate lacks the TLS client
purpose, and what the verify callback saw and how to fix it.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from rich.console import Console
from rich.table import Table

from dicomtls.cli.logsetup import handshake_failures_said_here
from dicomtls.cli.render import make_console, session_table, shown
from dicomtls.net.association import AssociationError, associate, proposals_for
from dicomtls.net.link import LinkEvents
from dicomtls.net.qr_scu import QueryModel
from dicomtls.node.node import NodeConfig, start_node
from dicomtls.pki import BrokenKind, init_pki, load_ca
from dicomtls.pki.bundle import PKIFiles
from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.errors import TLSHandshakeError
from dicomtls.tls.settings import TLSSettings
from dicomtls.tls.verify_error import VerifyError
from dicomtls.ul.acse import Proposal

__all__ = ["make_ct", "run_demo"]

CT = "1.2.840.10008.5.1.4.1.1.2"


def _series_of(study_uid: str) -> str:
    """The one series of a demonstration study (pydicom's prefix: with prefix=None,
    generate_uid ignores the entropy and every object got a series of its own)."""
    return generate_uid(entropy_srcs=[study_uid])


def make_ct(path: Path, patient: str, study_uid: str, number: int) -> None:
    """A small but complete CT object (64x64, 16 bit) for demonstrations."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = UID(CT), generate_uid()
    ds.PatientName, ds.PatientID = patient, "DEMO-" + patient.split("^")[0].upper()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, _series_of(study_uid)
    ds.StudyDate, ds.Modality, ds.InstanceNumber = "20261124", "CT", number
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.SamplesPerPixel = 16, 16, 15, 1
    ds.PixelRepresentation, ds.PhotometricInterpretation = 0, "MONOCHROME2"
    ds.PixelData = bytes((i * number) % 256 for i in range(64 * 64 * 2))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID(CT)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)


def _settings(
    pki: PKIFiles,
    name: str,
    on_verify: Callable[[bool, CertificateInfo, VerifyError], bool] | None = None,
) -> TLSSettings:
    return TLSSettings(
        certificate=pki.chain(name), private_key=pki.key(name), ca_files=pki.ca, on_verify=on_verify
    )


class _ServerSide:
    """What the node's verify callback and handshake events saw, for the story's second part."""

    def __init__(self) -> None:
        self.callback_lines: list[str] = []
        self.failures: list[TLSHandshakeError] = []

    def on_verify(self, ok: bool, cert: CertificateInfo, error: VerifyError) -> bool:
        self.callback_lines.append(f"Received client certificate (depth {cert.depth}):\n{cert}")
        if not error.ok:
            self.callback_lines.append(f"Error {error.name}: {error.message}\nHint: {error.hint}")
        return ok

    def on_ready(self, peer: str, error: TLSHandshakeError | None) -> None:
        if error is not None:
            self.failures.append(error)


async def _demo(console: Console, directory: Path) -> bool:
    # The CA key away from the CA file the node trusts, as a node's should be.
    pki = init_pki(
        directory / "pki", common_name="dicomtls Demo CA", key_directory=directory / "ca"
    )
    load_ca(pki).issue_broken(BrokenKind.NO_PURPOSE, "Test Client").write(
        pki.directory, "bad-client"
    )
    study = generate_uid()
    files = [directory / f"ct{number}.dcm" for number in range(1, 4)]
    for number, path in enumerate(files, 1):
        make_ct(path, "Doe^Jane", study, number)
    server = _ServerSide()
    config = NodeConfig(
        store=directory / "store",
        host="127.0.0.1",
        port=0,
        tls=_settings(pki, "server", on_verify=server.on_verify),
    )
    node = await start_node(config, events=LinkEvents(on_secure_link_ready=server.on_ready))
    try:
        console.rule("[bold]1. A node with a fresh PKI; echo, store and query over mutual TLS")
        expected = await _mutual_tls(console, node.port, pki, files, study)
        server.callback_lines.clear()
        console.rule("[bold]2. A client certificate without the TLS client purpose")
        expected &= await _client_without_purpose(console, node.port, pki, server)
    finally:
        await node.close()
    return expected


async def _mutual_tls(
    console: Console, port: int, pki: PKIFiles, files: list[Path], study: str
) -> bool:
    """Echo, store ``files`` and find them again; True if every answer was as expected."""
    proposals = [
        *proposals_for(files),
        Proposal(QueryModel.STUDY_ROOT.find_uid, (ExplicitVRLittleEndian,)),
    ]
    async with await associate(
        "127.0.0.1",
        port,
        _settings(pki, "client"),
        called_ae="DICOMTLS",
        calling_ae="DEMO-SCU",
        proposals=proposals,
    ) as assoc:
        assert assoc.link.session is not None
        echo = await assoc.echo()
        stored = [await assoc.store(f) for f in files]
        query = Dataset()
        query.QueryRetrieveLevel, query.StudyInstanceUID = "IMAGE", study
        query.SeriesInstanceUID = _series_of(study)  # an image query names its series
        query.SOPInstanceUID = query.InstanceNumber = ""
        found = [m async for m in assoc.find(query)]
        console.print(
            f"C-ECHO: 0x{echo:04X}; C-STORE of {len(files)} objects: "
            f"{', '.join(f'0x{s:04X}' for s in stored)}"
        )
        table = Table(title=f"C-FIND found {len(found)} image(s) in study {study}")
        table.add_column("InstanceNumber")
        table.add_column("SOPInstanceUID")
        for match in sorted(found, key=lambda m: int(m.InstanceNumber or 0)):
            table.add_row(str(match.InstanceNumber), str(match.SOPInstanceUID))
        console.print(table)
        console.print(session_table(assoc.link.session))
    return echo == 0 and stored == [0, 0, 0] and len(found) == 3


async def _client_without_purpose(
    console: Console, port: int, pki: PKIFiles, server: _ServerSide
) -> bool:
    """The refused handshake from both sides; True if the node refused it for its purpose."""
    try:
        async with await associate(
            "127.0.0.1", port, _settings(pki, "bad-client"), called_ae="DICOMTLS"
        ) as assoc:
            await assoc.echo()
    except (TLSHandshakeError, AssociationError) as error:
        console.print(f"[red]client side:[/red] {shown(error)}", soft_wrap=True)
    console.print("[bold]The server's verify callback saw:[/bold]")
    # Whole lines (the terminal folds them): a fingerprint or a log line stays one line.
    console.print("\n".join(server.callback_lines), markup=False, highlight=False, soft_wrap=True)
    failure = server.failures[0] if server.failures else None
    if failure is None:
        return False
    console.print(f"[red]server log line:[/red] {shown(failure)}", highlight=False, soft_wrap=True)
    return failure.verify_error is not None and failure.verify_error.name == "INVALID_PURPOSE"


def run_demo(console: Console | None = None, *, as_json: bool = False) -> int:
    """Run the demo; 0 when everything happened as expected. ``as_json``: the story untold,
    only the outcome, ``{"ok": true}``."""
    console = console or make_console()
    console.quiet = as_json
    # The failed handshake is the demo's subject: shown from both sides, not logged as well.
    with (
        tempfile.TemporaryDirectory(prefix="dicomtls-demo-") as tmp,
        handshake_failures_said_here("client", "server"),
    ):
        ok = asyncio.run(_demo(console, Path(tmp)))
    console.rule()
    console.print(
        "[green]demo: all went as expected[/green]" if ok else "[red]demo: unexpected result[/red]"
    )
    if as_json:
        print(json.dumps({"ok": ok}))
    return 0 if ok else 1
