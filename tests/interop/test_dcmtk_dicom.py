"""DICOM over the secure link against DCMTK: echoscu and storescu to our SCP, our SCU to storescp."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pydicom
import pytest

from dicomtls.net.association import associate, default_proposals
from dicomtls.net.qr_scu import RetrieveResult
from dicomtls.net.scp import Services, serve_dicom
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.ul.acse import AcceptorPolicy

from ..node.test_storage import CT, _make_file
from .conftest import RsaPKI, run_tool, storescp

pytestmark = pytest.mark.interop

EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
POLICY = AcceptorPolicy(
    "DICOMTLS", {"1.2.840.10008.1.1": [IMPLICIT, EXPLICIT], CT: [EXPLICIT, IMPLICIT]}
)


def _files(directory: Path, count: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"ct{i}.dcm"
        _make_file(path, pixels=100_000 + 50_000 * i)
        paths.append(path)
    return paths


async def _dcmtk_to_us(pki: RsaPKI, tmp: Path, files: list[Path]) -> tuple[int, str, int, str]:
    store = DurableStore(tmp / "store")
    server = await serve_dicom(
        "127.0.0.1", 0, pki.ours("scp"), POLICY, Services(store=DurableStoreHandler(store))
    )
    async with server:
        echo_code, echo_out = await run_tool(
            "echoscu",
            "-v",
            *pki.dcmtk_args("scu"),
            "-aec",
            "DICOMTLS",
            "127.0.0.1",
            str(server.port),
        )
        store_code, store_out = await run_tool(
            "storescu",
            "-v",
            *pki.dcmtk_args("scu"),
            "-aec",
            "DICOMTLS",
            "127.0.0.1",
            str(server.port),
            *map(str, files),
        )
    return echo_code, echo_out, store_code, store_out


def test_echoscu_and_storescu_to_our_scp(rsa_pki: RsaPKI, tmp_path: Path) -> None:
    files = _files(tmp_path / "in", 3)
    echo_code, echo_out, store_code, store_out = asyncio.run(_dcmtk_to_us(rsa_pki, tmp_path, files))
    assert echo_code == 0, echo_out
    assert "Received Echo Response (Success)" in echo_out
    assert store_code == 0, store_out
    assert store_out.count("Received Store Response (Success)") == 3
    store = DurableStore(tmp_path / "store")
    for path in files:
        sent = pydicom.dcmread(path)
        stored = pydicom.dcmread(store.path_for(sent.SOPInstanceUID))
        assert stored.PixelData == sent.PixelData
        title = stored.file_meta.SourceApplicationEntityTitle
        assert title is not None and title.strip() == "STORESCU"


def test_our_scu_tostorescp(rsa_pki: RsaPKI, tmp_path: Path) -> None:
    files = _files(tmp_path / "in", 3)
    received = tmp_path / "received"
    received.mkdir()

    async def run() -> tuple[int, list[int], int, list[tuple[Path, int | Exception]]]:
        async with storescp(rsa_pki, received, "--require-peer-cert") as port:
            assoc = await associate(
                "127.0.0.1",
                port,
                rsa_pki.ours("scu"),
                called_ae="STORESCP",
                proposals=default_proposals([CT]),
            )
            async with assoc:
                echo, stored = await assoc.echo(), [await assoc.store(f) for f in files[:2]]
            # asking storescp for an asynchronous operations window, which it does not grant
            windowed = await associate(
                "127.0.0.1",
                port,
                rsa_pki.ours("scu"),
                called_ae="STORESCP",
                proposals=default_proposals([CT]),
                max_operations=16,
            )
            async with windowed:
                rest = [r async for r in windowed.store_many(files[2:])]
            return echo, stored, windowed.negotiated.max_operations, rest

    echo, statuses, window, rest = asyncio.run(run())
    assert echo == 0 and statuses == [0, 0]
    assert window == 1 and rest == [(files[2], 0)]
    got = sorted(received.glob("*"))
    assert len(got) == 3
    sent_pixels = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f).PixelData for f in files}
    for path in got:
        ds = pydicom.dcmread(path)
        assert sent_pixels[ds.SOPInstanceUID] == ds.PixelData


async def _dcmtk_qr_to_us(pki: RsaPKI, tmp: Path, files: list[Path]) -> dict[str, tuple[int, str]]:
    """findscu over TLS; movescu and getscu over plain TCP (Debian's 3.6.7 builds have no TLS)."""
    from ..net.test_query_retrieve import ARCHIVE_POLICY, VIEWER_POLICY, Archive

    archive = Archive(files)
    viewer_store = DurableStore(tmp / "viewer")
    keys = ["-k", "QueryRetrieveLevel=IMAGE", "-k", "PatientID=P1", "-k", "SOPInstanceUID"]
    out: dict[str, tuple[int, str]] = {}
    get_dir = tmp / "got"
    get_dir.mkdir()
    viewer = await serve_dicom(
        "127.0.0.1", 0, None, VIEWER_POLICY, Services(store=DurableStoreHandler(viewer_store))
    )
    services = Services(
        find=archive.find,
        retrieve=archive.retrieve,
        move_destinations={"VIEWER": ("127.0.0.1", viewer.port)},
    )
    async with viewer:
        async with await serve_dicom(
            "127.0.0.1", 0, pki.ours("scp"), ARCHIVE_POLICY, services
        ) as tls_server:
            out["find"] = await run_tool(
                "findscu",
                "-v",
                *pki.dcmtk_args("scu"),
                "-S",
                "-aec",
                "ARCHIVE",
                *keys,
                "127.0.0.1",
                str(tls_server.port),
            )
        async with await serve_dicom("127.0.0.1", 0, None, ARCHIVE_POLICY, services) as plain:
            plain_args = ["-S", "-aec", "ARCHIVE", *keys, "127.0.0.1", str(plain.port)]
            out["move"] = await run_tool("movescu", "-v", "-aem", "VIEWER", *plain_args)
            out["get"] = await run_tool("getscu", "-v", "-od", str(get_dir), *plain_args)
    return out


def test_findscu_movescu_getscu_to_our_scp(rsa_pki: RsaPKI, tmp_path: Path) -> None:
    files = _files(tmp_path / "in", 2)
    out = asyncio.run(_dcmtk_qr_to_us(rsa_pki, tmp_path, files))
    code, text = out["find"]
    assert code == 0, text
    assert text.count("(Pending)") == 2 and "(Success)" in text
    code, text = out["move"]
    assert code == 0, text
    assert "Received Final Move Response (Success)" in text, text
    code, text = out["get"]
    assert code == 0, text
    uids = {pydicom.dcmread(f).SOPInstanceUID for f in files}
    viewer = DurableStore(tmp_path / "viewer")
    assert all(viewer.path_for(uid).exists() for uid in uids)
    got = {pydicom.dcmread(p).SOPInstanceUID for p in (tmp_path / "got").iterdir()}
    assert got == uids


def _dcmqrscp_config(tmp: Path, port: int, viewer_port: int) -> Path:
    database = tmp / "qrdb"
    database.mkdir()
    config = tmp / "dcmqrscp.cfg"
    config.write_text(f"""NetworkTCPPort = {port}
MaxPDUSize = 16384
MaxAssociations = 16
HostTable BEGIN
viewer = (VIEWER, 127.0.0.1, {viewer_port})
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
ARCHIVE {database} RW (100, 1024mb) ANY
AETable END
""")
    return config


def test_our_scu_against_dcmqrscp(tmp_path: Path) -> None:
    """Store, find, move and get against DCMTK's archive (plain TCP: its 3.6.7 build has no TLS)."""
    from pydicom.dataset import Dataset

    from dicomtls.net.qr_scu import QueryModel
    from dicomtls.ul.acse import Proposal

    from ..net.test_query_retrieve import VIEWER_POLICY
    from ..node.test_storage import STUDY_UID
    from .conftest import dcmtk_listener

    def _query() -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel, ds.StudyInstanceUID, ds.PatientID = "STUDY", STUDY_UID, ""
        return ds

    files = _files(tmp_path / "in", 2)
    uids = sorted(pydicom.dcmread(f).SOPInstanceUID for f in files)
    qr = QueryModel.STUDY_ROOT

    async def run() -> dict[str, object]:
        viewer_store = DurableStore(tmp_path / "viewer")
        async with await serve_dicom(
            "127.0.0.1", 0, None, VIEWER_POLICY, Services(store=DurableStoreHandler(viewer_store))
        ) as viewer:

            def argv(port: int) -> list[str]:
                return ["dcmqrscp", "-c", str(_dcmqrscp_config(tmp_path, port, viewer.port))]

            with dcmtk_listener(argv, tmp_path / "dcmqrscp.log") as port:
                proposals = [
                    *default_proposals([CT]),
                    Proposal(qr.find_uid, (EXPLICIT, IMPLICIT)),
                    Proposal(qr.move_uid, (EXPLICIT, IMPLICIT)),
                    Proposal(qr.get_uid, (EXPLICIT, IMPLICIT)),
                ]
                out: dict[str, object] = {}
                async with await associate(
                    "127.0.0.1", port, None, called_ae="ARCHIVE", proposals=proposals
                ) as assoc:
                    out["stored"] = [await assoc.store(f) for f in files]
                    out["found"] = [m.StudyInstanceUID async for m in assoc.find(_query(), qr)]
                    out["move"] = await assoc.move(_query(), "VIEWER", qr)
                get_proposals = [
                    Proposal(qr.get_uid, (EXPLICIT, IMPLICIT)),
                    Proposal(CT, (EXPLICIT, IMPLICIT), scu_role=False, scp_role=True),
                ]
                async with await associate(
                    "127.0.0.1", port, None, called_ae="ARCHIVE", proposals=get_proposals
                ) as assoc:
                    out["get"] = await assoc.get(
                        _query(), DurableStoreHandler(DurableStore(tmp_path / "got")), qr
                    )
            out["viewer"] = viewer_store
            return out

    out = asyncio.run(run())
    assert out["stored"] == [0, 0]
    assert out["found"] == [STUDY_UID]
    move, get = out["move"], out["get"]
    assert isinstance(move, RetrieveResult) and isinstance(get, RetrieveResult)
    assert move.ok and move.completed == 2
    assert get.ok and sorted(get.stored) == uids
    viewer = out["viewer"]
    assert isinstance(viewer, DurableStore) and all(viewer.path_for(u).exists() for u in uids)
