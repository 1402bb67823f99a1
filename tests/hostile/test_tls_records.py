"""The TLS record layer under a peer with a valid certificate, against a real ``dicomtls serve``.

Some records a peer sends ask for an answer: a TLS 1.3 KeyUpdate with ``update_requested``
(RFC 8446 4.6.3) makes the node send a KeyUpdate of its own, at once, from the read that
met it. A peer that asks for hundreds of thousands and reads nothing
the node sends would have the node queue those answers without end (as many bytes as the
peer sends; a P-DATA-TF now and then keeps the idle timer from ending it); past a bound of
unread output the node ends the link instead.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

from dicomtls.dimse.messages import c_store_rq
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul import PDUReader
from dicomtls.ul.acse import Proposal, build_request
from dicomtls.ul.pdu import AssociateAC

from ..conftest import MatrixPKI
from ..node.test_storage import CT, _make_file
from .conftest import AE, LiveNode, echo_now, peer_name
from .dimse import EXPLICIT, message_pdus
from .peers import tcp
from .raw_openssl import RawTLS13Client

#: Key updates asked for (27 bytes each): some 11 MB sent, as much again for the node to
#: answer with.
KEY_UPDATES = 400_000
#: A P-DATA-TF of 100 bytes of data set, not the last: a PDU completes now and then.
_FRAGMENT = struct.pack(">BBIIBB", 0x04, 0, 106, 102, 1, 0x00) + bytes(100)


def _associated(node: LiveNode, pki: MatrixPKI) -> tuple[RawTLS13Client, str]:
    """A TLS 1.3 peer associated for CT storage, whose socket holds little of what the node
    sends (so what the node cannot send stays in the node)."""
    client = pki.files["client"]
    sock = tcp(node.port, receive_buffer=4096)
    peer = RawTLS13Client(sock, client.cert, client.key)
    assert peer.write(build_request("RAW", AE, [Proposal(CT, (EXPLICIT,))]).encode())
    reader = PDUReader()
    while (pdu := reader.next_pdu()) is None:
        reader.feed(peer.read())
    assert isinstance(pdu, AssociateAC), pdu
    return peer, peer_name(sock)


def test_a_peer_asking_for_key_updates_and_reading_nothing_is_cut_off(
    tls_node: LiveNode, matrix_pki: MatrixPKI, tmp_path: Path, client_tls: TLSSettings
) -> None:
    node = tls_node
    peer, name = _associated(node, matrix_pki)
    ds = _make_file(tmp_path / "ct.dcm", pixels=1000)
    assert peer.write(message_pdus(1, c_store_rq(1, CT, ds.SOPInstanceUID)))
    before = node.rss_kib()
    sent = 0
    try:
        while sent < KEY_UPDATES and peer.ask_key_update():
            sent += 1
            if sent % 1000 == 0 and not peer.write(_FRAGMENT):  # the idle timer never expires
                break
        line = node.wait_for(name)
        grown = node.rss_kib() - before
    finally:
        peer.close()
    assert sent < KEY_UPDATES, "the node took every key update and byte"
    assert "reads nothing" in line and "key update" in line, line
    assert grown < 8 * 1024, grown
    started = time.perf_counter()
    assert echo_now(node.port, client_tls) == 0
    assert time.perf_counter() - started < 1.0
