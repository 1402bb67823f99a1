"""``dicomtls get`` into a folder that already holds objects, against a node that lies.

``--out`` is the user's folder: it may hold an earlier retrieval (from this node or another).
Each object is named by the SOP Instance UID the node sends, a name the node chooses, so
a node may send an object under the UID of one already there. It replaces that file only
if it is the same object again (a retrieval run twice): the same patient, study, series and
SOP class, as the node's own store judges a re-sent UID. Another object under that UID is
refused with 0124H and the file there kept.
"""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from dicomtls.dimse.messages import c_get_rsp, c_store_rq
from dicomtls.dimse.status import Status
from dicomtls.ul.pdu import AssociateRQ

from ..conftest import MatrixPKI
from ..node.test_storage import CT, _make_file
from .dimse import EXPLICIT, message_pdus
from .scp import SCPLink, status_of
from .test_cli_hostile_node import STUDY, _classes_in_study, answering_find, dicomtls_get


def _receiving_context(link: SCPLink, sop_class: str) -> int:
    """The ID of the context our A-ASSOCIATE-RQ offered for receiving ``sop_class`` in
    Explicit VR Little Endian."""
    request = link.received[0]
    assert isinstance(request, AssociateRQ)
    for context in request.presentation_contexts:
        if context.abstract_syntax == sop_class and EXPLICIT in context.transfer_syntaxes:
            return context.id
    raise AssertionError(f"no context offered for {sop_class}")


def pushing(objects: list[tuple[str, bytes]], answers: list[int]) -> Callable[[SCPLink], None]:
    """A script: answer the C-GET with a C-STORE of each (SOP instance UID, data set) in
    ``objects``, keep our status for each in ``answers``, then end it with Success."""

    def script(link: SCPLink) -> None:
        get = link.next_command()
        assert get is not None
        link.next_pdu()  # its identifier
        context = _receiving_context(link, CT)
        for message_id, (uid, dataset) in enumerate(objects, start=1):
            link.send(message_pdus(context, c_store_rq(message_id, CT, uid), dataset))
            answer = link.next_command()
            assert answer is not None
            answers.append(status_of(answer))
        final = c_get_rsp(1, STUDY.get_uid, Status.SUCCESS, (0, len(objects), 0, 0))
        link.send(message_pdus(get.pdvs[0].context_id, final))
        link.release()

    return script


def _data_set(path: Path) -> bytes:
    """The data set of a Part 10 file, as a node sends it (no preamble, no meta group)."""
    data = path.read_bytes()
    meta_end = data.index(b"DICM") + 4
    group_length = int.from_bytes(data[meta_end + 8 : meta_end + 12], "little")
    return data[meta_end + 12 + group_length :]


def _as_patient(path: Path, patient_id: str, to: Path) -> bytes:
    """The object at ``path`` with another PatientID, written to ``to``; its data set."""
    dataset = pydicom.dcmread(path)
    dataset.PatientID = patient_id
    dataset.save_as(to, enforce_file_format=True)
    return _data_set(to)


def _get(
    pki: MatrixPKI, scp_context: ssl.SSLContext, out: Path, script: Callable[..., None]
) -> str:
    """Run ``dicomtls get`` into ``out`` against a node that pushes with ``script``."""
    find = answering_find(_classes_in_study(CT))
    _, said, err, _ = dicomtls_get(pki, scp_context, out, find, script)
    return said + err


@pytest.fixture
def earlier(tmp_path: Path) -> tuple[Path, str]:
    """A folder holding an object of patient P1 from an earlier retrieval, and its UID."""
    out = tmp_path / "got"
    out.mkdir()
    made = tmp_path / "made.dcm"
    uid = str(_make_file(made, pixels=1000).SOPInstanceUID)
    shutil.copyfile(made, out / f"{uid}.dcm")
    return out, uid


def test_another_object_under_the_uid_of_a_file_there_is_refused_and_the_file_kept(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, earlier: tuple[Path, str], tmp_path: Path
) -> None:
    out, uid = earlier
    before = (out / f"{uid}.dcm").read_bytes()
    forged = _as_patient(out / f"{uid}.dcm", "EVIL", tmp_path / "forged.dcm")
    answers: list[int] = []
    said = _get(matrix_pki, scp_context, out, pushing([(uid, forged)], answers))
    assert answers == [Status.NOT_AUTHORIZED], said
    assert (out / f"{uid}.dcm").read_bytes() == before
    lines = [line for line in said.splitlines() if "refused" in line and uid in line]
    assert len(lines) == 1 and "PatientID" in lines[0], said


def test_a_second_object_under_one_uid_in_one_get_does_not_replace_the_first(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, tmp_path: Path
) -> None:
    made = tmp_path / "made.dcm"
    uid = str(_make_file(made, pixels=1000).SOPInstanceUID)
    first = _data_set(made)
    forged = _as_patient(made, "EVIL", tmp_path / "forged.dcm")
    answers: list[int] = []
    out = tmp_path / "got"
    said = _get(matrix_pki, scp_context, out, pushing([(uid, first), (uid, forged)], answers))
    assert answers == [Status.SUCCESS, Status.NOT_AUTHORIZED], said
    assert pydicom.dcmread(out / f"{uid}.dcm").PatientID == "P1"


def test_the_same_object_again_replaces_the_file_there(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, earlier: tuple[Path, str]
) -> None:
    """The control: a retrieval run twice into one folder gets the same objects again."""
    out, uid = earlier
    inode = (out / f"{uid}.dcm").stat().st_ino
    answers: list[int] = []
    said = _get(
        matrix_pki, scp_context, out, pushing([(uid, _data_set(out / f"{uid}.dcm"))], answers)
    )
    assert answers == [Status.SUCCESS], said
    assert (out / f"{uid}.dcm").stat().st_ino != inode  # replaced by the copy received
    assert pydicom.dcmread(out / f"{uid}.dcm").PatientID == "P1"


def test_a_file_there_that_is_not_dicom_is_not_replaced(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, earlier: tuple[Path, str]
) -> None:
    """A file under the name that is no DICOM object (the user's own) is no copy of it."""
    out, uid = earlier
    again = _data_set(out / f"{uid}.dcm")
    (out / f"{uid}.dcm").write_bytes(b"the user's notes")
    answers: list[int] = []
    said = _get(matrix_pki, scp_context, out, pushing([(uid, again)], answers))
    assert answers == [Status.NOT_AUTHORIZED], said
    assert (out / f"{uid}.dcm").read_bytes() == b"the user's notes"
