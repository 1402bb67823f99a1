"""Our SCU against our SCP over mutual TLS on loopback: echo, store to disk, release, reject."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TypedDict, Unpack

import pydicom
import pytest

from dicomtls.dimse.part10 import read_header
from dicomtls.net.association import Association, AssociationError, associate, default_proposals
from dicomtls.net.scp import Services, serve_dicom
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.tls.flags import VerifyFlags
from dicomtls.ul.acse import AcceptorPolicy

from ..conftest import MatrixPKI
from ..node.test_storage import CT, _make_file

PEER_FAIL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT
EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
POLICY = AcceptorPolicy(
    "STORESCP", {"1.2.840.10008.1.1": [IMPLICIT], CT: [EXPLICIT, IMPLICIT]}, max_pdu_length=65536
)


class LinkOptions(TypedDict, total=False):
    """The association options a test may set on :func:`associate_ct`."""

    max_pdu_length: int
    max_operations: int


async def associate_ct(pki: MatrixPKI, port: int, **options: Unpack[LinkOptions]) -> Association:
    """Our client, with the matrix PKI's client certificate, proposing CT Image Storage to
    the SCP on ``port``."""
    return await associate(
        "127.0.0.1",
        port,
        pki.settings("client", PEER_FAIL),
        called_ae="STORESCP",
        proposals=default_proposals([CT]),
        **options,
    )


async def _echo_and_store(pki: MatrixPKI, tmp: Path, files: list[Path]) -> tuple[int, list[int]]:
    store = DurableStore(tmp / "store")
    server = await serve_dicom(
        "127.0.0.1",
        0,
        pki.settings("server", PEER_FAIL),
        POLICY,
        Services(store=DurableStoreHandler(store)),
    )
    async with (
        server,
        await associate_ct(pki, server.port, max_pdu_length=32768) as assoc,
    ):
        assert assoc.link.session is not None and assoc.link.session.protocol == "TLSv1.3"
        echo = await assoc.echo()
        statuses = [await assoc.store(f) for f in files]
    return echo, statuses


def test_echo_and_store_over_mutual_tls(matrix_pki: MatrixPKI, tmp_path: Path) -> None:
    files = []
    for i in range(3):
        path = tmp_path / f"in{i}.dcm"
        _make_file(path, pixels=200_000 * (i + 1))
        files.append(path)
    echo, statuses = asyncio.run(_echo_and_store(matrix_pki, tmp_path, files))
    assert echo == 0 and statuses == [0, 0, 0]
    store = DurableStore(tmp_path / "store")
    for source in files:
        sent = pydicom.dcmread(source)
        stored = store.path_for(sent.SOPInstanceUID)
        assert stored.exists()
        assert pydicom.dcmread(stored).PixelData == sent.PixelData
        dataset = source.read_bytes()[read_header(source).dataset_offset :]
        assert stored.read_bytes().endswith(dataset)  # byte-identical data set on disk
    assert list((tmp_path / "store" / ".incoming").iterdir()) == []


async def _wrong_called_ae(pki: MatrixPKI) -> str:
    server = await serve_dicom("127.0.0.1", 0, pki.settings("server", PEER_FAIL), POLICY)
    async with server:
        with pytest.raises(AssociationError) as caught:
            await associate(
                "127.0.0.1", server.port, pki.settings("client", PEER_FAIL), called_ae="NOBODY"
            )
    return str(caught.value)


def test_rejection_is_named(matrix_pki: MatrixPKI) -> None:
    message = asyncio.run(_wrong_called_ae(matrix_pki))
    assert "rejected the association" in message and "CALLED_AE_NOT_RECOGNIZED" in message


async def _tls_client_on_plain_port(pki: MatrixPKI, caplog: pytest.LogCaptureFixture) -> None:
    from dicomtls.net.link import connect
    from dicomtls.tls.errors import TLSHandshakeError

    server = await serve_dicom("127.0.0.1", 0, None, POLICY)
    async with server:
        with pytest.raises(TLSHandshakeError):
            await connect("127.0.0.1", server.port, pki.settings("client", PEER_FAIL))


def test_tls_client_on_plain_port_is_named_in_the_log(
    matrix_pki: MatrixPKI, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="dicomtls.net"):
        asyncio.run(_tls_client_on_plain_port(matrix_pki, caplog))
    lines = [r.getMessage() for r in caplog.records if "ClientHello" in r.getMessage()]
    assert len(lines) == 1
    assert "peer sent a TLS ClientHello to a non-TLS port" in lines[0]
    assert "127.0.0.1:" in lines[0]
