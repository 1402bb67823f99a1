"""Asynchronous operations (PS3.7 D.3.3.3) over mutual TLS: negotiated, used, and bounded.

Whether requests really overlap is shown, not timed: a store target that holds the first
object's commit until a later object has begun can only finish if the SCU sent that later
request before the first answer came.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import cast

import pydicom
import pytest
from pydicom.uid import UID

from dicomtls.dimse.command import CommandSet, Tag
from dicomtls.dimse.dataset_scan import ScannedDataset
from dicomtls.dimse.part10 import Part10Header, read_header
from dicomtls.dimse.status import Status
from dicomtls.net.association import Association, AssociationError, associate, default_proposals
from dicomtls.net.hooks import StoreJob, StoreTarget
from dicomtls.net.scp import Services, serve_dicom
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.tls.flags import VerifyFlags
from dicomtls.ul.acse import AcceptorPolicy

from ..conftest import MatrixPKI
from ..node.test_storage import CT, _make_file
from .test_association_loopback import associate_ct

PEER_FAIL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT
EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
MR = UID("1.2.840.10008.5.1.4.1.1.4")


def _policy(max_operations: int = 16) -> AcceptorPolicy:
    return AcceptorPolicy(
        "STORESCP",
        {"1.2.840.10008.1.1": [IMPLICIT], CT: [EXPLICIT, IMPLICIT]},
        max_operations=max_operations,
    )


class _Gated:
    """A store target over a real durable store whose commits wait for the test to say so;
    it records how many objects were in flight (begun, not committed) at each begin."""

    def __init__(self, store: DurableStore) -> None:
        self.inner = DurableStoreHandler(store)
        self.begun: list[str] = []
        self.committed = 0
        self.in_flight: list[int] = []
        self.begun_at_commit: dict[str, int] = {}
        self.gates: dict[str, asyncio.Event] = {}  # held object -> opens on its opener's event
        self.openers: dict[tuple[str, str], asyncio.Event] = {}  # (begun|committed, uid)

    def hold(self, held: str, until: str, uid: str) -> None:
        """Hold ``held``'s commit until object ``uid`` is ``until`` (begun or committed)."""
        self.gates[held] = self.openers[until, uid] = asyncio.Event()

    def _happened(self, what: str, uid: str) -> None:
        if (what, uid) in self.openers:
            self.openers[what, uid].set()

    @property
    def keep_tags(self) -> frozenset[int]:
        return self.inner.keep_tags

    def begin(self, association: Association, command: CommandSet, syntax: str) -> _GatedJob:
        uid = str(command[Tag.AffectedSOPInstanceUID])
        self.begun.append(uid)
        self._happened("begun", uid)
        self.in_flight.append(len(self.begun) - self.committed)
        return _GatedJob(self, uid, self.inner.begin(association, command, syntax))


class _GatedJob:
    def __init__(self, target: _Gated, uid: str, job: StoreJob) -> None:
        self.target, self.uid, self.job = target, uid, job

    def write(self, data: memoryview) -> Awaitable[None] | None:
        return self.job.write(data)

    async def commit(self, dataset: ScannedDataset) -> int:
        gate = self.target.gates.get(self.uid)
        if gate is not None:
            await gate.wait()
        status = await self.job.commit(dataset)
        self.target.committed += 1
        self.target.begun_at_commit[self.uid] = len(self.target.begun)
        self.target._happened("committed", self.uid)
        return status

    def abort(self) -> None:
        self.job.abort()


def _files(tmp: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        paths.append(tmp / f"ct{i}.dcm")
        _make_file(paths[-1], pixels=30_000 + 1000 * i)
    return paths


async def _store_many(
    pki: MatrixPKI,
    target: StoreTarget,
    policy: AcceptorPolicy,
    files: list[Path] | list[Part10Header],
    window: int,
    *gates: tuple[str, str, str],
) -> tuple[int, list[tuple[Path, int | Exception]]]:
    server = await serve_dicom(
        "127.0.0.1", 0, pki.settings("server", PEER_FAIL), policy, Services(store=target)
    )
    for gate in gates:  # hold a commit until another object has begun or committed
        assert isinstance(target, _Gated)
        target.hold(*gate)
    async with (
        server,
        await associate_ct(pki, server.port, max_operations=window) as assoc,
    ):
        try:
            async with asyncio.timeout(30):  # a held commit that never opens: no overlap
                results = [result async for result in assoc.store_many(files)]
        except TimeoutError:
            raise AssertionError("requests did not overlap: a held commit never opened") from None
        return assoc.negotiated.max_operations, results


def _uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_requests_overlap_within_the_window_and_every_object_is_stored(
    matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    files = _files(tmp_path, 12)
    store = DurableStore(tmp_path / "store")
    target = _Gated(store)
    gate = (_uid(files[0]), "begun", _uid(files[5]))  # object 0 commits once object 5 began
    window, results = asyncio.run(_store_many(matrix_pki, target, _policy(), files, 8, gate))
    assert window == 8  # what we asked for: less than the SCP's 16
    assert sorted((str(p), s) for p, s in results) == sorted((str(f), 0) for f in files)
    assert target.begun_at_commit[gate[0]] >= 6  # the first commit waited for the sixth begin
    assert 6 <= max(target.in_flight) <= 8  # overlapping, within the window
    for source in files:
        sent = pydicom.dcmread(source)
        assert pydicom.dcmread(store.path_for(sent.SOPInstanceUID)).PixelData == sent.PixelData


def test_answers_in_another_order_reach_the_right_files(
    matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    files = _files(tmp_path, 3)
    target = _Gated(DurableStore(tmp_path / "store"))
    # 1, then 2, then 0: each held until the one before it committed, whatever the load
    # (commits run on threads of their own, so without the second gate 0 could pass 1).
    last = (_uid(files[0]), "committed", _uid(files[2]))
    middle = (_uid(files[2]), "committed", _uid(files[1]))
    _, results = asyncio.run(_store_many(matrix_pki, target, _policy(), files, 4, last, middle))
    assert [p for p, _ in results] == [files[1], files[2], files[0]]
    assert dict(results) == dict.fromkeys(files, Status.SUCCESS)


def test_the_scp_bounds_the_window_and_window_one_is_synchronous(
    matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    files = _files(tmp_path, 6)
    narrow = _Gated(DurableStore(tmp_path / "narrow"))
    gate = (_uid(files[0]), "begun", _uid(files[1]))  # two in flight at once, whatever the load
    window, results = asyncio.run(_store_many(matrix_pki, narrow, _policy(2), files, 0, gate))
    assert window == 2  # we offered unlimited (0); the SCP allows two
    assert all(s == 0 for _, s in results)
    assert max(narrow.in_flight) == 2
    sync = _Gated(DurableStore(tmp_path / "sync"))
    window, results = asyncio.run(_store_many(matrix_pki, sync, _policy(), files, 1))
    assert window == 1 and [p for p, _ in results] == files  # answered one by one, in order
    assert sync.in_flight == [1] * 6  # never a request ahead of an answer


def test_a_file_that_cannot_be_sent_fails_alone(matrix_pki: MatrixPKI, tmp_path: Path) -> None:
    files = _files(tmp_path, 3)
    mr = tmp_path / "mr.dcm"
    _make_file(mr, pixels=1000)
    ds = pydicom.dcmread(mr)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MR  # no context was proposed for MR
    ds.save_as(mr, enforce_file_format=True)
    text = tmp_path / "notes.txt"
    text.write_text("not DICOM")
    target = DurableStoreHandler(DurableStore(tmp_path / "store"))
    _, results = asyncio.run(
        _store_many(matrix_pki, target, _policy(), [files[0], mr, text, *files[1:]], 16)
    )
    outcome = dict(results)
    assert [outcome[f] for f in files] == [0, 0, 0]
    assert isinstance(outcome[mr], AssociationError)
    assert "no accepted presentation context for SOP class" in str(outcome[mr])
    assert "not a DICOM Part 10 file" in str(outcome[text])


def test_a_window_asked_of_a_peer_that_ignores_it_stays_synchronous(
    matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    """No window in the answer means one (PS3.7 D.3.3.3), whatever we asked for."""
    from pynetdicom import AE
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.sop_class import CTImageStorage, Verification

    from ..interop.test_pynetdicom import _context

    files = _files(tmp_path, 4)
    received: list[str | None] = []
    ae = AE(ae_title="STORESCP")
    ae.add_supported_context(Verification)
    ae.add_supported_context(CTImageStorage, [EXPLICIT, IMPLICIT])
    from pynetdicom import evt

    def on_store(event: evt.Event) -> int:
        request = cast(C_STORE, event.request)  # what an EVT_C_STORE carries
        received.append(request.AffectedSOPInstanceUID)
        return 0

    import ssl

    server = ae.start_server(
        ("127.0.0.1", 0),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
        ssl_context=_context(matrix_pki, ssl.Purpose.CLIENT_AUTH, "server"),
    )
    assert server is not None  # block=False: the server runs in its own thread
    try:

        async def run() -> tuple[int, list[tuple[Path, int | Exception]]]:
            async with await associate(
                "127.0.0.1",
                server.server_address[1],
                matrix_pki.settings("client", PEER_FAIL),
                called_ae="STORESCP",
                proposals=default_proposals([CT]),
                max_operations=16,
            ) as assoc:
                return assoc.negotiated.max_operations, [r async for r in assoc.store_many(files)]

        window, results = asyncio.run(run())
    finally:
        server.shutdown()
    assert window == 1
    assert [p for p, _ in results] == files and all(s == 0 for _, s in results)
    assert received == [_uid(f) for f in files]


@pytest.mark.parametrize(
    ("offered", "ours", "answered"), [(0, 16, 16), (5, 16, 5), (100, 16, 16), (3, 1, 1)]
)
def test_the_window_an_scp_answers(offered: int, ours: int, answered: int) -> None:
    from dicomtls.ul.acse import Negotiated, answer_request, build_request
    from dicomtls.ul.pdu import AssociateAC

    rq = build_request("SCU", "STORESCP", default_proposals([CT]), max_operations=offered)
    assert rq.user_information.async_ops_window is not None
    assert rq.user_information.async_ops_window.invoked == offered
    ac = answer_request(rq, _policy(ours))
    assert isinstance(ac, AssociateAC) and ac.user_information is not None
    window = ac.user_information.async_ops_window
    assert window is not None and (window.invoked, window.performed) == (answered, 1)
    for we_requested in (True, False):
        assert (
            Negotiated.from_exchange(rq, ac, we_requested=we_requested).max_operations == answered
        )
    plain = build_request("SCU", "STORESCP", default_proposals([CT]))
    assert plain.user_information.async_ops_window is None  # synchronous: not even offered
    plain_ac = answer_request(plain, _policy(ours))
    assert isinstance(plain_ac, AssociateAC) and plain_ac.user_information.async_ops_window is None


def test_files_given_as_their_headers_are_sent_from_them(
    matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    """`dicomtls store` reads each header once, to propose contexts, and sends from it."""
    files = _files(tmp_path, 4)
    headers = [read_header(f) for f in files]
    store = DurableStore(tmp_path / "store")
    _, results = asyncio.run(
        _store_many(matrix_pki, DurableStoreHandler(store), _policy(), headers, 4)
    )
    assert dict(results) == dict.fromkeys(files, Status.SUCCESS)  # answered by path
    for source in files:
        sent = pydicom.dcmread(source)
        assert pydicom.dcmread(store.path_for(sent.SOPInstanceUID)).PixelData == sent.PixelData
