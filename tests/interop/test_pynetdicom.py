"""Interop with pynetdicom (PyPI), over TLS with the standard library's ssl, both directions."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, Verification

from dicomtls.dimse.status import AnsweredStatus
from dicomtls.net.association import associate, default_proposals
from dicomtls.net.scp import Services, serve_dicom
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.tls.flags import VerifyFlags
from dicomtls.ul.acse import AcceptorPolicy

from ..cli.test_node_cli import ENV, EXE
from ..conftest import MatrixPKI
from ..node.test_storage import CT, _make_file

pytestmark = pytest.mark.interop

PEER_FAIL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT
EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
POLICY = AcceptorPolicy(
    "DICOMTLS", {"1.2.840.10008.1.1": [IMPLICIT, EXPLICIT], CT: [EXPLICIT, IMPLICIT]}
)


def _context(pki: MatrixPKI, purpose: ssl.Purpose, name: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose, cafile=str(pki.ca_file))
    ctx.load_cert_chain(str(pki.files[name].cert), str(pki.files[name].key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = False
    return ctx


def test_pynetdicom_scu_to_our_scp(matrix_pki: MatrixPKI, tmp_path: Path) -> None:
    files = []
    for i in range(2):
        files.append(tmp_path / f"ct{i}.dcm")
        _make_file(files[-1], pixels=120_000)
    store = DurableStore(tmp_path / "store")
    results: dict[str, object] = {}

    def pynetdicom_client(port: int) -> None:
        ae = AE(ae_title="PYNETDICOM")
        ae.add_requested_context(Verification)
        ae.add_requested_context(CTImageStorage, [EXPLICIT, IMPLICIT])
        assoc = ae.associate(
            "127.0.0.1",
            port,
            ae_title="DICOMTLS",
            # no hostname check: ssl takes None, though pynetdicom's annotation says str
            tls_args=(_context(matrix_pki, ssl.Purpose.SERVER_AUTH, "client"), None),  # type: ignore[arg-type]
        )
        results["established"] = assoc.is_established
        if assoc.is_established:
            results["echo"] = assoc.send_c_echo().Status
            results["store"] = [assoc.send_c_store(pydicom.dcmread(f)).Status for f in files]
            assoc.release()

    async def run() -> None:
        server = await serve_dicom(
            "127.0.0.1",
            0,
            matrix_pki.settings("server", PEER_FAIL),
            POLICY,
            Services(store=DurableStoreHandler(store)),
        )
        async with server:
            await asyncio.get_running_loop().run_in_executor(None, pynetdicom_client, server.port)

    asyncio.run(run())
    assert results["established"] is True
    assert results["echo"] == 0 and results["store"] == [0, 0]
    for f in files:
        sent = pydicom.dcmread(f)
        assert pydicom.dcmread(store.path_for(sent.SOPInstanceUID)).PixelData == sent.PixelData


def _storage_scp(pki: MatrixPKI, on_store: Callable[[evt.Event], object]) -> Any:
    """A pynetdicom storage SCP (and Verification) over TLS, serving from its own thread."""
    ae = AE(ae_title="PYNETSCP")
    ae.add_supported_context(Verification)
    ae.add_supported_context(CTImageStorage, [EXPLICIT, IMPLICIT])
    server = ae.start_server(
        ("127.0.0.1", 0),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
        ssl_context=_context(pki, ssl.Purpose.CLIENT_AUTH, "server"),
    )
    assert server is not None  # block=False: it serves from its own thread
    return server


def test_our_scu_to_pynetdicom_scp(matrix_pki: MatrixPKI, tmp_path: Path) -> None:
    path = tmp_path / "ct.dcm"
    _make_file(path, pixels=150_000)
    received: list[pydicom.Dataset] = []

    def on_store(event: evt.Event) -> int:
        received.append(event.dataset)
        return 0x0000

    server = _storage_scp(matrix_pki, on_store)
    port = server.server_address[1]
    try:

        async def run() -> tuple[int, int, str]:
            assoc = await associate(
                "127.0.0.1",
                port,
                matrix_pki.settings("client", PEER_FAIL),
                called_ae="PYNETSCP",
                proposals=default_proposals([CT]),
            )
            async with assoc:
                protocol = assoc.link.session.protocol if assoc.link.session else "?"
                return await assoc.echo(), await assoc.store(path), protocol

        echo, stored, protocol = asyncio.run(run())
    finally:
        server.shutdown()
    assert (echo, stored) == (0, 0)
    assert protocol.startswith("TLSv1.")
    assert len(received) == 1 and received[0].PixelData == pydicom.dcmread(path).PixelData


def test_a_pynetdicom_scp_s_error_comment_reaches_our_scu(
    matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    """A failure with the SCP's reason in Error Comment (0000,0902): the status alone, 0xA700,
    does not say the disk is full; `dicomtls store` shows the reason beside it."""
    path = tmp_path / "ct.dcm"
    _make_file(path, pixels=1_000)

    def on_store(event: evt.Event) -> pydicom.Dataset:
        status = pydicom.Dataset()
        status.Status = 0xA700
        status.ErrorComment = "disk full on /archive"
        return status

    server = _storage_scp(matrix_pki, on_store)
    port = server.server_address[1]
    try:

        async def run() -> int:
            settings = matrix_pki.settings("client", PEER_FAIL)
            proposals = default_proposals([CT])
            async with await associate(
                "127.0.0.1", port, settings, called_ae="PYNETSCP", proposals=proposals
            ) as assoc:
                return await assoc.store(path)

        stored = asyncio.run(run())
        files = matrix_pki.files["client"]
        tls = ["--ca", str(matrix_pki.ca_file), "--tls-cert", str(files.cert)]
        said = subprocess.run(
            [
                EXE,
                "store",
                "127.0.0.1",
                str(port),
                str(path),
                "--called-ae",
                "PYNETSCP",
                *tls,
                "--tls-key",
                str(files.key),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=ENV,
        )
    finally:
        server.shutdown()
    assert stored == 0xA700 and isinstance(stored, AnsweredStatus)
    assert stored.comment == "disk full on /archive"
    assert said.returncode == 1
    assert "0xA700 out of resources (failure): the node says 'disk full on /archive'" in said.stdout
