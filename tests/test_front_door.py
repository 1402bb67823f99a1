"""``import dicomtls`` is enough: the curated names, the same API blocking and in asyncio, and
the short programs the front door promises, run for real over mutual TLS on loopback."""

from __future__ import annotations

import asyncio
import errno
import inspect
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

import dicomtls
import dicomtls.aio

from .conftest import MatrixPKI
from .node.test_storage import CT, STUDY_UID, _make_file

#: The asyncio Association's plumbing for the SCP and the C-GET loop, not the user's API.
PLUMBING = {
    "cancel_requested",
    "close_link",
    "gate",
    "link",
    "max_dataset_in_memory",
    "next_message_id",
    "on_refused",
    "protocol_failure",
    "receive_message",
    "request_contexts",
    "response",
    "send_message",
    "store_header",
}


def test_the_front_door_names_everything_once_and_aio_the_same() -> None:
    assert len(set(dicomtls.__all__)) == len(dicomtls.__all__)
    assert "__version__" not in dicomtls.aio.__all__
    for name in dicomtls.aio.__all__:  # the front door's names: each must be in both
        blocking, asynchronous = getattr(dicomtls, name), getattr(dicomtls.aio, name)
        assert blocking is not None and asynchronous is not None
        if name not in {"associate", "serve_dicom", "Association", "DicomServer", "Peer"}:
            assert blocking is asynchronous, name  # not an I/O name: one object, two doors
    assert set(dir(dicomtls)) >= set(dicomtls.__all__)
    with pytest.raises(AttributeError):
        _ = dicomtls.NoSuchThing


def _parameters(function: Callable[..., object]) -> list[tuple[str, object, object]]:
    signature = inspect.signature(function)
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def _public(cls: type) -> dict[str, object]:
    return {name: member for name, member in inspect.getmembers(cls) if not name.startswith("_")}


@pytest.mark.parametrize("name", ["associate", "serve_dicom"])
def test_blocking_and_asyncio_functions_take_the_same_parameters(name: str) -> None:
    assert _parameters(getattr(dicomtls, name)) == _parameters(getattr(dicomtls.aio, name))


@pytest.mark.parametrize("name", ["Association", "DicomServer", "Peer"])
def test_blocking_and_asyncio_classes_offer_the_same_methods(name: str) -> None:
    blocking, asynchronous = getattr(dicomtls, name), getattr(dicomtls.aio, name)
    offered = _public(blocking)
    expected = {k: v for k, v in _public(asynchronous).items() if k not in PLUMBING}
    # attributes set in __init__ (negotiated, calling_ae, ...) are properties on the blocking side
    instance_attributes = {
        "negotiated",
        "calling_ae",
        "called_ae",
        "end_reason",
        "dimse_timeout",
        "max_find_memory",
    }
    if name == "Association":
        expected.update(dict.fromkeys(instance_attributes))
    if name == "DicomServer":
        expected.update(dict.fromkeys(["port", "limits", "active"]))
    assert sorted(offered) == sorted(expected)
    for method, member in expected.items():
        if inspect.isfunction(member):
            assert _parameters(getattr(blocking, method)) == _parameters(member), method


@pytest.mark.parametrize(
    ("module", "not_loaded"),
    [
        ("dicomtls", ("pydicom", "OpenSSL", "rich", "numpy")),
        # a client that stores files (the SCU, the blocking API) needs no data dictionary
        ("dicomtls.sync", ("pydicom", "numpy", "rich")),
        ("dicomtls.net.association", ("pydicom", "numpy", "rich")),
    ],
)
def test_importing_loads_nothing_heavy_it_does_not_need(
    module: str, not_loaded: tuple[str, ...]
) -> None:
    code = f"import sys, {module}; print(sorted(m for m in {not_loaded!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_mutual_tls_echo_with_a_verify_callback_in_four_lines(matrix_pki: MatrixPKI) -> None:
    server_tls = matrix_pki.settings(
        "server", dicomtls.VerifyFlags.PEER | dicomtls.VerifyFlags.FAIL_IF_NO_PEER_CERT
    )
    client = matrix_pki.files["client"]
    seen: list[str] = []
    with dicomtls.serve_dicom("127.0.0.1", 0, server_tls, "PACS") as server:
        # -- the four lines, with one import --
        def on_verify(
            ok: bool, cert: dicomtls.CertificateInfo, error: dicomtls.VerifyError
        ) -> bool:
            seen.append(cert.subject)
            return ok

        tls = dicomtls.TLSSettings(
            certificate=client.cert,
            private_key=client.key,
            ca_files=matrix_pki.ca_file,
            on_verify=on_verify,
        )
        with dicomtls.associate("127.0.0.1", server.port, tls, called_ae="PACS") as assoc:
            status = assoc.echo()
        # --
        assert assoc.end_reason == "released"
        assert assoc.ended and assoc.called_ae.strip() == "PACS" and assoc.session is not None
        with pytest.raises(AttributeError):  # the asyncio association's, read-only as it was
            assoc.peer = "elsewhere"  # type: ignore[assignment]
    assert status == dicomtls.Status.SUCCESS
    assert any("server" in subject for subject in seen) and len(seen) >= 2  # root ... leaf


def test_a_storage_scp_and_a_peer_with_one_import(matrix_pki: MatrixPKI, tmp_path: Path) -> None:
    mutual = dicomtls.VerifyFlags.PEER | dicomtls.VerifyFlags.FAIL_IF_NO_PEER_CERT
    files = [tmp_path / f"ct{i}.dcm" for i in range(3)]
    for path in files:
        _make_file(path, pixels=20_000)
    services = dicomtls.Services(store=dicomtls.DurableStoreHandler(tmp_path / "received"))
    with dicomtls.serve_dicom(
        "127.0.0.1", 0, matrix_pki.settings("server", mutual), "STORESCP", services
    ) as server:
        pacs = dicomtls.Peer(
            "127.0.0.1", server.port, matrix_pki.settings("client", mutual), called_ae="STORESCP"
        )
        assert pacs.echo() == 0
        results = pacs.store(files)
    assert [status for _, status in results] == [0, 0, 0]
    sent = {pydicom.dcmread(p).SOPInstanceUID for p in files}
    assert {p.stem for p in (tmp_path / "received").glob("*.dcm")} == sent


@pytest.mark.parametrize("title", ["RADIOLOGY-ARCHIVE-1", "PACS\\1", ""])
def test_a_server_with_a_title_no_peer_can_call_does_not_start(
    matrix_pki: MatrixPKI, title: str
) -> None:
    """It started, and every association failed when the answer was encoded."""
    server = matrix_pki.settings("server", dicomtls.VerifyFlags.PEER)
    with pytest.raises(dicomtls.DicomTLSError) as raised:
        dicomtls.serve_dicom("127.0.0.1", 0, server, title)
    assert str(raised.value) == (
        f"our AE title {title!r} is not an AE title "
        "(1 to 16 printable ASCII characters, no backslash)"
    )


def test_a_port_in_use_is_a_dicomtls_error_in_words(matrix_pki: MatrixPKI) -> None:
    """It was asyncio's OSError: '[Errno 98] error while attempting to bind on address
    ('127.0.0.1', PORT): address already in use', outside ``except DicomTLSError``."""
    server = matrix_pki.settings("server", dicomtls.VerifyFlags.PEER)
    with (
        dicomtls.serve_dicom("127.0.0.1", 0, server, "FIRST") as first,
        pytest.raises(dicomtls.DicomTLSError) as raised,
    ):
        dicomtls.serve_dicom("127.0.0.1", first.port, server, "SECOND")
    assert str(raised.value) == (
        f"cannot listen on 127.0.0.1:{first.port}: address already in use. "
        "Hint: stop what listens there, or choose another port"
    )
    assert isinstance(raised.value, OSError) and raised.value.errno == errno.EADDRINUSE


def test_a_query_keyword_that_is_none_is_a_dicomtls_error_and_nothing_else(
    matrix_pki: MatrixPKI,
) -> None:
    """A KeyError outside the root, after two pydicom warnings on stderr; said before connecting
    (nothing listens on the port)."""
    peer = dicomtls.Peer("127.0.0.1", 1, matrix_pki.settings("client", dicomtls.VerifyFlags.PEER))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(dicomtls.DicomTLSError) as raised:
            peer.find({"QueryRetrieveLevel": "STUDY", "PatientNme": "Doe*"})
    assert str(raised.value) == "'PatientNme' is not a DICOM keyword"
    assert isinstance(raised.value, KeyError)


def test_a_peers_find_and_get_propose_their_own_contexts(
    matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    """Against a real node: store, then find and get with nothing but a Peer."""
    from dicomtls.node.node import NodeConfig, start_node

    mutual = dicomtls.VerifyFlags.PEER | dicomtls.VerifyFlags.FAIL_IF_NO_PEER_CERT
    files = [tmp_path / f"ct{i}.dcm" for i in range(2)]
    for path in files:
        _make_file(path, pixels=20_000)

    async def run() -> tuple[list[pydicom.Dataset], int]:
        node = await start_node(
            NodeConfig(
                store=tmp_path / "node",
                host="127.0.0.1",
                port=0,
                ae_title="NODE",
                tls=matrix_pki.settings("server", mutual),
            )
        )
        try:
            pacs = dicomtls.aio.Peer(
                "127.0.0.1", node.port, matrix_pki.settings("client", mutual), called_ae="NODE"
            )
            await pacs.store(files)
            found = await pacs.find(
                {
                    "QueryRetrieveLevel": "STUDY",
                    "StudyInstanceUID": STUDY_UID,
                    "NumberOfStudyRelatedInstances": "",
                }
            )
            got = await pacs.get(
                {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": STUDY_UID}, tmp_path / "got"
            )
            return found, got.completed
        finally:
            await node.close()

    found, completed = asyncio.run(run())
    assert [int(m.NumberOfStudyRelatedInstances) for m in found] == [2]
    assert completed == 2 and len(list((tmp_path / "got").glob("*.dcm"))) == 2
    assert CT
