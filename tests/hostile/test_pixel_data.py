"""Pixel Data a peer shapes by hand in a C-STORE, against a real ``dicomtls serve``.

Encapsulated pixel data (fragments as items of an undefined-length Pixel Data, ended by a
sequence delimiter) belongs to the compressed transfer syntaxes alone: in a native one
(Implicit or Explicit VR Little Endian, Explicit VR Big Endian, Deflated) Pixel Data has a
defined length (PS3.5 A.4, 8.2). An object in Explicit VR Little Endian whose pixel data
is encapsulated anyway is no object any reader of that syntax can decode, and the node
would hand it on to every C-GET and C-MOVE; it is refused at the door, C000H, nothing
stored. Broken encapsulation in a compressed syntax (a fragment running past the end, an
element among the fragments, no sequence delimiter) is refused the same way.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from dicomtls.dimse.messages import c_store_rq
from dicomtls.dimse.status import Status
from dicomtls.ul.acse import Proposal

from ..conftest import MatrixPKI
from ..node.test_storage import CT, _make_file
from .conftest import LiveNode
from .dimse import EXPLICIT
from .test_bounds import _dataset, _talk

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
_PIXEL_DATA = b"\xe0\x7f\x10\x00"


def _item(length: int, value: bytes = b"") -> bytes:
    return struct.pack("<HHI", 0xFFFE, 0xE000, length) + value


_SEQUENCE_END = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
_ENCAPSULATED = _PIXEL_DATA + b"OB\x00\x00" + struct.pack("<I", 0xFFFFFFFF)
#: An empty offset table and one fragment of four bytes, ended as it should be.
_FRAGMENTS = _item(0) + _item(4, b"\xff\xd8\xff\xd9") + _SEQUENCE_END

BROKEN = {
    "past-the-end": _ENCAPSULATED + _item(0) + _item(1 << 20, b"\xff\xd8"),
    "element-among-fragments": _ENCAPSULATED + _item(0) + b"\x08\x00\x18\x00UI\x02\x001\x00",
    "no-sequence-delimiter": _ENCAPSULATED + _item(0) + _item(4, b"\xff\xd8\xff\xd9"),
}


def _with_pixel_data(tmp_path: Path, pixel_data: bytes) -> tuple[str, bytes]:
    """A CT object's data set with its Pixel Data element replaced by ``pixel_data``."""
    ds = _make_file(tmp_path / "ct.dcm", pixels=1000)
    body = _dataset(tmp_path / "ct.dcm")
    return str(ds.SOPInstanceUID), body[: body.index(_PIXEL_DATA)] + pixel_data


def _store(node: LiveNode, pki: MatrixPKI, syntax: str, uid: str, dataset: bytes) -> int:
    talk = _talk(node, pki, [Proposal(CT, (syntax,))])
    talk.send(1, c_store_rq(1, CT, uid), dataset)
    statuses = [answer.status for answer in talk.until_final()]
    talk.peer.close()
    assert len(statuses) == 1, statuses
    return statuses[0]


def _stored(node: LiveNode, uid: str) -> list[Path]:
    assert node.store is not None
    return list(node.store.joinpath("objects").rglob(f"{uid}.dcm"))


def test_encapsulated_pixel_data_in_a_native_syntax_is_refused(
    tls_node: LiveNode, matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    uid, dataset = _with_pixel_data(tmp_path, _ENCAPSULATED + _FRAGMENTS)
    assert _store(tls_node, matrix_pki, EXPLICIT, uid, dataset) == Status.CANNOT_UNDERSTAND
    line = tls_node.wait_for(uid)
    assert "(7FE0,0010)" in line and "undefined length" in line and "native" in line, line
    assert _stored(tls_node, uid) == []


def test_encapsulated_pixel_data_in_a_compressed_syntax_is_stored(
    tls_node: LiveNode, matrix_pki: MatrixPKI, tmp_path: Path
) -> None:
    """The control: the same fragments in JPEG Baseline are what that syntax asks for."""
    uid, dataset = _with_pixel_data(tmp_path, _ENCAPSULATED + _FRAGMENTS)
    assert _store(tls_node, matrix_pki, JPEG_BASELINE, uid, dataset) == Status.SUCCESS
    assert len(_stored(tls_node, uid)) == 1


@pytest.mark.parametrize("how", sorted(BROKEN))
def test_broken_encapsulation_is_refused(
    tls_node: LiveNode, matrix_pki: MatrixPKI, tmp_path: Path, how: str
) -> None:
    uid, dataset = _with_pixel_data(tmp_path, BROKEN[how])
    assert _store(tls_node, matrix_pki, JPEG_BASELINE, uid, dataset) == Status.CANNOT_UNDERSTAND
    tls_node.wait_for(uid)
    assert _stored(tls_node, uid) == []
