"""Queries and retrievals against a real ``dicomtls serve`` holding two patients, over mutual TLS.

Issue 13, finding 11, answered by PS3.4: List of UID Matching finds every listed study
(C.2.2.2.2); a list in any other key, a level the model does not have, a query or a
retrieval without a single value in the unique key of each level above its own
(C.4.1.2.1, C.4.2.2.1, C.4.3.2.1): 0xA900 Identifier does not match SOP Class, and not one
identifier or object of either patient. An identifier whose element length runs past its
end (0xFFFFFFF0), sent as raw PDUs: 0xC001 Unable to process. Each refused peer gets one
log line naming it and the key; well-formed requests get none.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from dicomtls.dimse.command import (
    CommandField,
    Tag,
    command_field,
    decode_command,
    encode_command,
    number,
)
from dicomtls.dimse.datasets import decode_dataset, encode_dataset
from dicomtls.dimse.messages import c_find_rq
from dicomtls.dimse.status import Category, Status, status_category
from dicomtls.net.association import Association, associate, default_proposals
from dicomtls.net.qr_scu import QueryModel, RetrieveResult
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.acse import Proposal, build_request
from dicomtls.ul.pdu import PDV, AssociateAC, PDataTF, ReleaseRP, ReleaseRQ

from ..conftest import MatrixPKI
from .conftest import AE, PATIENT, LiveNode, _timeouts, _tls_args, echo_now, start
from .peers import EXPLICIT, IMPLICIT, DicomPeer

# Query keys break their VR's rules on purpose (a "*" for a UID): pydicom says so.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom.valuerep")
PATIENT_ROOT, STUDY_ROOT = QueryModel.PATIENT_ROOT, QueryModel.STUDY_ROOT
CT = UID("1.2.840.10008.5.1.4.1.1.2")
GETTER = "QR-GETTER"  # a configured destination: the default policy grants it C-GET
FAILURE = Status.DATASET_DOES_NOT_MATCH_SOP_CLASS  # 0xA900


@dataclass(frozen=True)
class Patient:
    patient_id: str
    name: str
    study: str
    series: str
    instances: tuple[str, ...]


A = Patient("PAT-A", "Alpha^Ann", generate_uid(), generate_uid(), (generate_uid(), generate_uid()))
B = Patient("PAT-B", "Beta^Bob", generate_uid(), generate_uid(), (generate_uid(), generate_uid()))


@dataclass(frozen=True)
class Site:
    node: LiveNode
    viewer: LiveNode
    """The C-MOVE destination, a second real node."""
    served: set[str] = field(default_factory=set)
    """Peers whose requests were answered, not refused: once the node has stopped, checked to
    have no line at all (a refused peer is moved to the node's hostile peers, one line each)."""


def _make(path: Path, patient: Patient, uid: str) -> Path:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CT, uid
    ds.PatientName, ds.PatientID = patient.name, patient.patient_id
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = patient.study, patient.series, "CT"
    ds.StudyDate = "20260101"
    ds.BitsAllocated, ds.Rows, ds.Columns, ds.SamplesPerPixel = 8, 8, 8, 1
    ds.PixelData = bytes(64)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CT
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
    ds.save_as(path, enforce_file_format=True)
    return path


async def _store_both(port: int, tls: TLSSettings, folder: Path) -> list[int]:
    folder.mkdir()
    files = [_make(folder / f"{uid}.dcm", p, uid) for p in (A, B) for uid in p.instances]
    async with await associate(
        "127.0.0.1", port, tls, called_ae=AE, calling_ae="LOADER", proposals=default_proposals([CT])
    ) as assoc:
        return [await assoc.store(path) for path in files]


@pytest.fixture(scope="module")
def site(
    matrix_pki: MatrixPKI, client_tls: TLSSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """Patients A and B stored in one node; a second node as its C-MOVE destination."""
    tmp = tmp_path_factory.mktemp("query-node")
    (tmp / "viewer").mkdir()
    tls = _tls_args(matrix_pki)
    viewer = LiveNode(
        tmp / "viewer", "--ae-title", "VIEWER", "--store", str(tmp / "viewer" / "store"), *tls
    )
    try:
        destinations = [
            "--move-destination",
            f"VIEWER=127.0.0.1:{viewer.port}",
            "--move-destination",
            f"{GETTER}=127.0.0.1:9",
        ]
        node = start(tmp, *tls, *_timeouts(PATIENT, PATIENT, PATIENT), *destinations)
        site = Site(node, viewer)
        try:
            assert asyncio.run(_store_both(node.port, client_tls, tmp / "sent")) == [0, 0, 0, 0]
            yield site
        finally:
            node.stop()
        node.check_one_line_each()  # one line per refused peer, no traceback
        assert {peer: node.naming(peer) for peer in site.served if node.naming(peer)} == {}
    finally:
        output = viewer.stop()
    assert "Traceback" not in output and " ERROR " not in output, output


def _identifier(level: str | None, **keys: object) -> Dataset:
    ds = Dataset()
    if level is not None:
        ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def _proposals(model: QueryModel) -> list[Proposal]:
    return [
        Proposal(model.find_uid, (EXPLICIT,)),
        Proposal(model.move_uid, (EXPLICIT,)),
        Proposal(model.get_uid, (EXPLICIT,)),
        Proposal(CT, (EXPLICIT,), scu_role=False, scp_role=True),  # C-GET's sub-operations
    ]


async def _associate(site: Site, tls: TLSSettings, model: QueryModel) -> Association:
    return await associate(
        "127.0.0.1",
        site.node.port,
        tls,
        called_ae=AE,
        calling_ae=GETTER,
        proposals=_proposals(model),
        dimse_timeout=30,
    )


async def _find(
    assoc: Association, identifier: Dataset, model: QueryModel
) -> tuple[list[Dataset], int]:
    """C-FIND with our association: (the matches, the final status)."""
    context = assoc.negotiated.context_for(model.find_uid)
    assert context is not None
    message_id = assoc.next_message_id()
    data = encode_dataset(identifier, context.transfer_syntax)
    await assoc.send_message(context.id, c_find_rq(message_id, model.find_uid), [data])
    matches: list[Dataset] = []
    while True:
        response = await assoc.response(CommandField.C_FIND_RSP, message_id)
        status = number(response.command, Tag.Status)
        if status_category(status) is not Category.PENDING:
            assert response.dataset is None  # a failure carries no identifier (C.4.1.3.1)
            return matches, status
        assert response.dataset is not None
        matches.append(decode_dataset(response.dataset, context.transfer_syntax))


def find(
    site: Site, tls: TLSSettings, identifier: Dataset, model: QueryModel = STUDY_ROOT
) -> tuple[list[Dataset], int, str]:
    """One association, one C-FIND: (matches, final status, how the node names us)."""

    async def run() -> tuple[list[Dataset], int, str]:
        async with await _associate(site, tls, model) as assoc:
            matches, status = await _find(assoc, identifier, model)
            site.served.add(assoc.link.local)
            return matches, status, assoc.link.local

    return asyncio.run(run())


def _refused(site: Site, name: str, *said: str) -> str:
    """The one line the node logged for peer ``name``; it names the key that was wrong."""
    site.served.discard(name)
    line = site.node.wait_for(name)
    assert "0xA900" in line and all(text in line for text in said), line
    return line


def _patient_ids(matches: list[Dataset]) -> set[str]:
    return {str(m.get("PatientID", "")) for m in matches}


# -- List of UID Matching -------------------------------------------------------------------


def test_a_list_of_study_uids_finds_each_study(site: Site, client_tls: TLSSettings) -> None:
    query = _identifier("STUDY", StudyInstanceUID=[A.study, B.study], PatientID="")
    matches, status, _ = find(site, client_tls, query)
    assert status == Status.SUCCESS
    assert sorted(str(m.StudyInstanceUID) for m in matches) == sorted([A.study, B.study])
    assert _patient_ids(matches) == {A.patient_id, B.patient_id}
    one, status, _ = find(
        site, client_tls, _identifier("STUDY", StudyInstanceUID=[A.study, "9.9.9"], PatientID="")
    )
    assert status == Status.SUCCESS and _patient_ids(one) == {A.patient_id}


def test_lists_in_the_uid_keys_of_series_and_instances(site: Site, client_tls: TLSSettings) -> None:
    query = _identifier(
        "IMAGE",
        StudyInstanceUID=B.study,
        SeriesInstanceUID=B.series,
        SOPInstanceUID=[B.instances[1], A.instances[0], B.instances[0]],
    )
    matches, status, _ = find(site, client_tls, query)
    assert status == Status.SUCCESS
    assert sorted(str(m.SOPInstanceUID) for m in matches) == sorted(B.instances)
    series, status, _ = find(
        site,
        client_tls,
        _identifier("SERIES", StudyInstanceUID=A.study, SeriesInstanceUID=[A.series, B.series]),
    )
    assert status == Status.SUCCESS and [str(s.SeriesInstanceUID) for s in series] == [A.series]


def test_a_multi_valued_patient_name_is_no_list(site: Site, client_tls: TLSSettings) -> None:
    query = _identifier("STUDY", PatientName=[A.name, B.name], StudyInstanceUID="")
    matches, status, name = find(site, client_tls, query)
    assert (matches, status) == ([], FAILURE)
    _refused(site, name, "PatientName with 2 values")


# -- the unique keys of the levels above ----------------------------------------------------

MISSING_ABOVE = {
    "Study Root IMAGE, no keys above": (STUDY_ROOT, "IMAGE", {}, "StudyInstanceUID"),
    "Study Root IMAGE, no series": (
        STUDY_ROOT,
        "IMAGE",
        {"StudyInstanceUID": "A"},
        "SeriesInstanceUID",
    ),
    "Study Root SERIES, no study": (
        STUDY_ROOT,
        "SERIES",
        {"SeriesInstanceUID": ""},
        "StudyInstanceUID",
    ),
    "Patient Root STUDY, no patient": (
        PATIENT_ROOT,
        "STUDY",
        {"StudyInstanceUID": ""},
        "PatientID",
    ),
    "Patient Root IMAGE, no patient": (
        PATIENT_ROOT,
        "IMAGE",
        {"StudyInstanceUID": "A", "SeriesInstanceUID": "A"},
        "PatientID",
    ),
}


def _keys(keys: dict[str, str]) -> dict[str, str]:
    """ "A" stands for patient A's UID of that key."""
    ours = {"StudyInstanceUID": A.study, "SeriesInstanceUID": A.series}
    return {k: ours[k] if v == "A" else v for k, v in keys.items()}


@pytest.mark.parametrize("case", list(MISSING_ABOVE))
def test_a_query_without_the_unique_keys_above_is_refused(
    site: Site, client_tls: TLSSettings, case: str
) -> None:
    """Before: every instance of every patient. Baseline C-FIND (PS3.4 C.4.1.2.1) needs them."""
    model, level, keys, missing = MISSING_ABOVE[case]
    query = _identifier(level, SOPInstanceUID="", PatientName="", **_keys(keys))
    matches, status, name = find(site, client_tls, query, model)
    assert (matches, status) == ([], FAILURE)
    _refused(site, name, f"{level} level without {missing}", "C.4.1.2.1")


def test_the_same_query_with_the_keys_above_finds_one_patients_instances(
    site: Site, client_tls: TLSSettings
) -> None:
    query = _identifier(
        "IMAGE",
        PatientID=A.patient_id,
        StudyInstanceUID=A.study,
        SeriesInstanceUID=A.series,
        SOPInstanceUID="",
    )
    matches, status, _ = find(site, client_tls, query, PATIENT_ROOT)
    assert status == Status.SUCCESS
    assert sorted(str(m.SOPInstanceUID) for m in matches) == sorted(A.instances)
    assert _patient_ids(matches) == {A.patient_id}


def test_a_wild_card_in_a_unique_key_above_is_refused(site: Site, client_tls: TLSSettings) -> None:
    query = _identifier("STUDY", PatientID="PAT-*", StudyInstanceUID="")
    matches, status, name = find(site, client_tls, query, PATIENT_ROOT)
    assert (matches, status) == ([], FAILURE)
    _refused(site, name, "PatientID 'PAT-*'")


def test_one_answer_per_series(site: Site, client_tls: TLSSettings) -> None:
    series, status, _ = find(
        site,
        client_tls,
        _identifier("SERIES", StudyInstanceUID=A.study, SeriesInstanceUID="", Modality=""),
    )
    assert status == Status.SUCCESS
    assert [(str(s.SeriesInstanceUID), s.Modality) for s in series] == [(A.series, "CT")]


# -- the level ------------------------------------------------------------------------------

BAD_LEVELS = {
    "BOGUS": (STUDY_ROOT, "BOGUS", "QueryRetrieveLevel 'BOGUS'"),
    "missing": (STUDY_ROOT, None, "no QueryRetrieveLevel"),
    "PATIENT in Study Root": (STUDY_ROOT, "PATIENT", "none of the Study Root levels"),
}


@pytest.mark.parametrize("case", list(BAD_LEVELS))
def test_a_level_the_model_does_not_have_is_refused(
    site: Site, client_tls: TLSSettings, case: str
) -> None:
    """Before: Success and no matches, which says "nothing stored" when nothing was looked for."""
    model, level, said = BAD_LEVELS[case]
    matches, status, name = find(site, client_tls, _identifier(level, PatientID=""), model)
    assert (matches, status) == ([], FAILURE)
    _refused(site, name, said)


# -- C-MOVE and C-GET -----------------------------------------------------------------------


def _viewer_objects(site: Site) -> set[str]:
    assert site.viewer.store is not None
    return {p.stem for p in (site.viewer.store / "objects").rglob("*.dcm")}


def retrieve(
    site: Site,
    tls: TLSSettings,
    identifier: Dataset,
    how: str,
    into: Path,
    model: QueryModel = STUDY_ROOT,
) -> tuple[RetrieveResult, str]:
    """One association, one C-MOVE to VIEWER or C-GET into ``into``: (result, our name)."""

    async def run() -> tuple[RetrieveResult, str]:
        async with await _associate(site, tls, model) as assoc:
            if how == "move":
                result = await assoc.move(identifier, "VIEWER", model)
            else:
                result = await assoc.get(identifier, DurableStoreHandler(DurableStore(into)), model)
            site.served.add(assoc.link.local)
            return result, assoc.link.local

    return asyncio.run(run())


RETRIEVALS_WITHOUT_KEYS = {
    "IMAGE level, SOP Instance UID only": (
        STUDY_ROOT,
        "IMAGE",
        {"SOPInstanceUID": "B0"},
        "IMAGE level without StudyInstanceUID",
    ),
    "STUDY level, no Study Instance UID": (
        STUDY_ROOT,
        "STUDY",
        {"PatientID": "PAT-B"},
        "STUDY level with no value in StudyInstanceUID",
    ),
    "STUDY level, every study": (
        STUDY_ROOT,
        "STUDY",
        {"StudyInstanceUID": "*"},
        "'*' in StudyInstanceUID",
    ),
    "Patient Root SERIES, no patient": (
        PATIENT_ROOT,
        "SERIES",
        {"StudyInstanceUID": "B", "SeriesInstanceUID": "B"},
        "without PatientID",
    ),
}


def _b_keys(keys: dict[str, str]) -> dict[str, str]:
    ours = {
        "StudyInstanceUID": B.study,
        "SeriesInstanceUID": B.series,
        "SOPInstanceUID": B.instances[0],
    }
    return {k: ours[k] if v in ("B", "B0") else v for k, v in keys.items()}


@pytest.mark.parametrize("how", ["move", "get"])
@pytest.mark.parametrize("case", list(RETRIEVALS_WITHOUT_KEYS))
def test_a_retrieval_without_its_unique_keys_is_refused(
    site: Site, client_tls: TLSSettings, tmp_path: Path, how: str, case: str
) -> None:
    """PS3.4 C.4.2.2.1, C.4.3.2.1: nothing is sent, to the destination or to us."""
    model, level, keys, said = RETRIEVALS_WITHOUT_KEYS[case]
    before = _viewer_objects(site)
    result, name = retrieve(
        site, client_tls, _identifier(level, **_b_keys(keys)), how, tmp_path / "got", model
    )
    assert (result.status, result.completed, result.stored) == (FAILURE, 0, [])
    assert not list((tmp_path / "got").rglob("*.dcm")) and _viewer_objects(site) == before
    _refused(site, name, f"C-{how.upper()}", said)


def test_a_retrieval_by_a_list_of_uids_sends_only_what_it_names(
    site: Site, client_tls: TLSSettings, tmp_path: Path
) -> None:
    got, _ = retrieve(
        site,
        client_tls,
        _identifier(
            "IMAGE",
            StudyInstanceUID=A.study,
            SeriesInstanceUID=A.series,
            SOPInstanceUID=[A.instances[1], B.instances[0]],
        ),
        "get",
        tmp_path / "got",
    )
    assert (got.status, got.completed, got.stored) == (Status.SUCCESS, 1, [A.instances[1]])
    moved, _ = retrieve(
        site, client_tls, _identifier("STUDY", StudyInstanceUID=[A.study]), "move", tmp_path
    )
    assert (moved.status, moved.completed) == (Status.SUCCESS, 2)
    assert set(A.instances) <= _viewer_objects(site) and not set(B.instances) & _viewer_objects(
        site
    )


# -- an identifier that lies about an element's length (raw PDUs) ---------------------------


def _implicit(tag: int, value: bytes, length: int | None = None) -> bytes:
    length = len(value) if length is None else length
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, length) + value


def _explicit(tag: int, vr: bytes, value: bytes, length: int | None = None) -> bytes:
    """Explicit VR little endian: a 2-byte length, or for UN (and the other long VRs) 4."""
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr
    length = len(value) if length is None else length
    if vr == b"UN":
        return head + b"\x00\x00" + struct.pack("<I", length) + value
    return head + struct.pack("<H", length) + value


LIE = 0xFFFFFFF0  # an element "of 4 GiB", with a few bytes behind it
LYING_LENGTHS = {
    "implicit VR": (
        IMPLICIT,
        _implicit(0x00080052, b"STUDY ") + _implicit(0x00100010, b"Alpha^Ann ", LIE),
    ),
    "explicit VR, UN": (
        EXPLICIT,
        _explicit(0x00080052, b"CS", b"STUDY ") + _explicit(0x00100020, b"UN", b"PAT-A ", LIE),
    ),
}


def _pdata(data: bytes, command: bool) -> bytes:
    return PDataTF((PDV(1, (1 if command else 0) | 2, data),)).encode()


@pytest.mark.parametrize("case", list(LYING_LENGTHS))
def test_an_identifier_with_an_element_length_of_0xfffffff0(
    site: Site, matrix_pki: MatrixPKI, client_tls: TLSSettings, case: str
) -> None:
    """Before: 0x0000 (Success). Now: the scan refuses it, 0xC001 Unable to process."""
    syntax, identifier = LYING_LENGTHS[case]
    client = matrix_pki.files["client"]
    peer = DicomPeer.tls(site.node.port, client.cert, client.key, matrix_pki.ca_file)
    try:
        peer.send(build_request("RAW", AE, [Proposal(STUDY_ROOT.find_uid, (syntax,))]).encode())
        assert isinstance(peer.next_pdu(), AssociateAC)
        command = encode_command(c_find_rq(1, STUDY_ROOT.find_uid))
        peer.send(_pdata(command, command=True) + _pdata(identifier, command=False))
        answer = peer.next_pdu()
        assert isinstance(answer, PDataTF) and len(answer.pdvs) == 1, answer
        response = decode_command(bytes(answer.pdvs[0].data))
        assert command_field(response) is CommandField.C_FIND_RSP
        assert response[Tag.Status] == Status.UNABLE_TO_PROCESS
        peer.send(ReleaseRQ().encode())
        assert isinstance(peer.next_pdu(), ReleaseRP)
    finally:
        peer.close()
    line = site.node.wait_for(peer.name)
    assert "0xC001" in line and "unreadable identifier" in line
    assert echo_now(site.node.port, client_tls) == 0
