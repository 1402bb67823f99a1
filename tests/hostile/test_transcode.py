"""A stored object a peer asks back in another transfer syntax, against a real ``dicomtls serve``.

The node converts a native object to the native syntax a C-GET requestor accepted by
reading it whole with pydicom and writing it again. That costs time in proportion to the
object's elements, and an object's elements are a peer's choice: one that stored an
object of 60,000 sequence items (1.6 MB) and asks for it in Implicit VR Little Endian made
the node convert it on the event loop, where every other association waited for it. It
now converts on a worker thread; and an object of more elements than
:data:`~dicomtls.dimse.transcode.MAX_CONVERTED_ELEMENTS` is not converted at all: pydicom
would hold some 450 bytes per element (200 MB for the 4 MB object), so it goes out only in
its own syntax, and the C-GET sub-operation fails with the reason.
"""

from __future__ import annotations

import struct
import threading
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from dicomtls.dimse.command import CommandField, Tag, number
from dicomtls.dimse.messages import c_get_rq, c_store_rq, c_store_rsp
from dicomtls.dimse.status import Status
from dicomtls.net.qr_scu import QueryModel
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.acse import Proposal

from ..conftest import MatrixPKI
from ..node.test_storage import CT, _make_file
from .conftest import LiveNode, echo_now
from .dimse import EXPLICIT, Answer, identifier
from .peers import IMPLICIT
from .test_bounds import _dataset, _talk

GET = QueryModel.STUDY_ROOT.get_uid
#: Items of a sequence the object carries: some 1.6 MB, walked by the node's scan on arrival
#: in a second, and taking pydicom seconds to build.
ITEMS = 60_000


def _many_items(tmp_path: Path, study: str, items: int = ITEMS) -> tuple[str, bytes]:
    """A CT object of study ``study`` carrying a sequence of ``items`` small items."""
    path = tmp_path / "ct.dcm"
    _make_file(path, pixels=1000)
    dataset = pydicom.dcmread(path)
    dataset.StudyInstanceUID = study
    dataset.save_as(path, enforce_file_format=True)
    item = (
        struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        + struct.pack("<HH2sH", 0x0008, 0x0100, b"SH", 2)
        + b"AB"
        + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    )
    sequence = (
        struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF)
        + item * items
        + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    )
    body = _dataset(path)
    at = body.index(b"\x10\x00\x10\x00")  # before PatientName: tags stay in ascending order
    return str(dataset.SOPInstanceUID), body[:at] + sequence + body[at:]


def test_converting_a_stored_object_holds_up_no_other_association(
    tls_node: LiveNode, matrix_pki: MatrixPKI, tmp_path: Path, client_tls: TLSSettings
) -> None:
    node = tls_node
    study = generate_uid()
    uid, dataset = _many_items(tmp_path, study)
    store = _talk(node, matrix_pki, [Proposal(CT, (EXPLICIT,))])
    store.send(1, c_store_rq(1, CT, uid), dataset)
    assert [a.status for a in store.until_final()] == [Status.SUCCESS]
    store.peer.close()

    get = _talk(
        node,
        matrix_pki,
        [
            Proposal(GET, (EXPLICIT,)),  # 1
            Proposal(CT, (IMPLICIT,), scu_role=False, scp_role=True),  # 3: Implicit VR only
        ],
    )
    done = threading.Event()
    waits: list[float] = []

    def echoing() -> None:
        while not done.is_set():
            started = time.perf_counter()
            assert echo_now(node.port, client_tls) == 0
            waits.append(time.perf_counter() - started)

    echoes = threading.Thread(target=echoing)
    get.send(1, c_get_rq(1, GET), identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=study))
    echoes.start()
    try:
        pushed = get.next_message()
    finally:
        done.set()
        echoes.join()
    assert pushed is not None and pushed.context_id == 3
    assert number(pushed.command, Tag.CommandField) == CommandField.C_STORE_RQ
    get.send(3, c_store_rsp(number(pushed.command, Tag.MessageID), CT, uid, Status.SUCCESS))
    final = get.until_final()
    get.peer.close()
    assert final[-1].status == Status.SUCCESS
    # converted: SOP Class UID, the first element, with a 4-byte length and no VR
    assert pushed.dataset.startswith(struct.pack("<HHI", 0x0008, 0x0016, len(CT) + 1))
    assert waits and max(waits) < 1.0, waits


def _peak_from_now(node: LiveNode) -> int:
    """Start the node's peak RSS (VmHWM) afresh (Linux: ``clear_refs`` 5); its RSS now, KiB."""
    Path(f"/proc/{node.proc.pid}/clear_refs").write_text("5")
    return node.rss_kib()


def _peak_kib(node: LiveNode) -> int:
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _stored(node: LiveNode, pki: MatrixPKI, uid: str, dataset: bytes) -> None:
    talk = _talk(node, pki, [Proposal(CT, (EXPLICIT,))])
    talk.send(1, c_store_rq(1, CT, uid), dataset)
    assert [a.status for a in talk.until_final()] == [Status.SUCCESS]
    talk.peer.close()


def test_an_object_of_too_many_elements_is_not_converted(
    tls_node: LiveNode, matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    node = tls_node
    study = generate_uid()
    uid, dataset = _many_items(tmp_path, study, 150_000)  # 450,000 elements, 4 MB
    _stored(node, matrix_pki, uid, dataset)
    final, grown, line = _get_that_fails(node, matrix_pki, study, IMPLICIT)
    assert number(final.command, Tag.NumberOfFailedSuboperations) == 1
    assert "more than 200,000 elements" in line and uid in line, line
    assert grown < 64 * 1024, grown


def _get_that_fails(
    node: LiveNode, pki: MatrixPKI, study: str, syntax: str
) -> tuple[Answer, int, str]:
    """A C-GET of ``study`` by a peer that takes CT only in ``syntax``, which the node must
    convert to and refuses to: its one final response (A702H), the node's peak RSS growth
    meanwhile (KiB) and its line about the peer."""
    get = _talk(
        node,
        pki,
        [Proposal(GET, (EXPLICIT,)), Proposal(CT, (syntax,), scu_role=False, scp_role=True)],
    )
    before = _peak_from_now(node)
    get.send(1, c_get_rq(1, GET), identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=study))
    answers = get.until_final()
    grown = _peak_kib(node) - before
    line = node.wait_for(get.peer.name)
    get.peer.close()
    assert [number(a.command, Tag.CommandField) for a in answers] == [CommandField.C_GET_RSP]
    assert answers[-1].status == Status.OUT_OF_RESOURCES_SUBOPERATIONS, hex(answers[-1].status)
    return answers[-1], grown, line


RLE_LOSSLESS = "1.2.840.10008.1.2.5"


def _rle_bomb(tmp_path: Path, study: str, side: int, frames: int) -> tuple[str, bytes]:
    """An RLE Lossless CT object of ``frames`` black frames of ``side`` x ``side`` bytes:
    each 128 bytes of a frame is two bytes of RLE (PS3.5 G.3.1: replicate 0 128 times)."""
    path = tmp_path / "ct.dcm"
    _make_file(path, pixels=1000)
    dataset = pydicom.dcmread(path)
    dataset.StudyInstanceUID = study
    dataset.Rows = dataset.Columns = side
    dataset.NumberOfFrames = frames
    dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 8, 7, 0
    dataset.PhotometricInterpretation = "MONOCHROME2"
    segment = b"\x81\x00" * (side * side // 128)
    frame = struct.pack("<16I", 1, 64, *([0] * 14)) + segment
    dataset.PixelData = pydicom.encaps.encapsulate([frame] * frames)
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.RLELossless
    dataset.save_as(path, enforce_file_format=True)
    return str(dataset.SOPInstanceUID), _dataset(path)


def test_a_decompression_bomb_is_not_converted(
    tls_node: LiveNode, matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    """4 MB of RLE that decodes to 256 MiB, asked for in Explicit VR Little Endian only:
    converting it took the node's peak RSS up 771 MiB and 24 s; past 128 MiB of decoded
    pixel data (:data:`~dicomtls.dimse.transcode.MAX_DECODED_BYTES`) it is not converted."""
    node = tls_node
    study = generate_uid()
    uid, dataset = _rle_bomb(tmp_path, study, 8192, 4)  # 4 MB stored, 256 MiB decoded
    talk = _talk(node, matrix_pki, [Proposal(CT, (RLE_LOSSLESS,))])
    talk.send(1, c_store_rq(1, CT, uid), dataset)
    assert [a.status for a in talk.until_final()] == [Status.SUCCESS]
    talk.peer.close()
    _, grown, line = _get_that_fails(node, matrix_pki, study, EXPLICIT)
    assert "would decode to 268,435,456 bytes of pixel data" in line and uid in line, line
    assert grown < 64 * 1024, grown
