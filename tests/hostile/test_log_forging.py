"""Issue 13, finding 5: a peer's text cannot forge a log line or drive the reader's terminal.

A real ``dicomtls serve --explain`` under mutual TLS, whose own certificate is the hostile
one a client sees. Raw peers put ``\\n2026-01-01 00:00:00 WARNING dicomtls.net: FORGED\\x1b[2J``
where the wire lets them: in the calling AE title (its first 16 bytes), in a C-STORE's
Affected SOP Instance UID that the node refuses, and in the subject of a client
certificate, trusted or not, that also holds rich markup and a right-to-left override.
The node, and the ``echo -v``, ``find`` and ``doctor`` commands talking to it, must show
each value escaped: no output line starts with the forged text, no ESC byte anywhere.
"""

from __future__ import annotations

import contextlib
import ssl
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicomtls.dimse.command import Tag, decode_command, encode_command, number
from dicomtls.dimse.messages import c_find_rq, c_find_rsp, c_store_rq
from dicomtls.dimse.part10 import iter_blocks, read_header
from dicomtls.dimse.status import Status
from dicomtls.pki import CertificateAuthority, KeySpec
from dicomtls.ul.acse import Proposal, build_request
from dicomtls.ul.pdu import PDV, Abort, AssociateAC, AssociateRJ, PDataTF

from ..cli.test_node_cli import run
from ..conftest import MatrixPKI
from ..node.test_storage import CT, _make_file
from .conftest import AE, LiveNode, peer_name, start
from .dimse import Conversation, message_pdus
from .peers import EXPLICIT, VERIFICATION, DicomPeer, read_to_eof, tcp
from .scp import HostileSCP, SCPLink

FORGED_LINE = "2026-01-01 00:00:00 WARNING dicomtls.net: FORGED"
FORGED = f"\n{FORGED_LINE}\x1b[2J"
ESCAPED = f"\\n{FORGED_LINE}\\x1b[2J"
#: 59 characters: a common name holds at most 64.
HOSTILE_CN = f"[red]{FORGED}\u202e"
#: The subject as OpenSSL's one-line form writes it (issue 18 item 7): control characters
#: as \\XX, the override as its UTF-8 bytes.
HOSTILE_NAME = f"CN = [red]\\0A{FORGED_LINE}\\1B[2J\\E2\\80\\AE"
HOSTILE_SUBJECT = f"{HOSTILE_NAME}, O = dicomtls test PKI"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


@dataclass
class Files:
    chain: Path
    key: Path


@dataclass
class HostilePKI:
    ca: Path
    crl: Path
    client: Files
    """A good client certificate."""
    server: Files
    """The node's certificate: a hostile subject, trusted, and no subjectAltName."""
    trusted: Files
    """A client certificate with the hostile subject, issued by the CA the node trusts."""
    untrusted: Files
    """The same subject from a CA nobody trusts."""


@pytest.fixture(scope="module")
def hostile_pki(matrix_pki: MatrixPKI, tmp_path_factory: pytest.TempPathFactory) -> HostilePKI:
    directory = tmp_path_factory.mktemp("hostile-pki")

    def files(name: str) -> Files:
        written = identities[name].write(directory, name)
        return Files(written.chain, written.key)

    stranger = CertificateAuthority.create(HOSTILE_CN, key=KeySpec.ec())
    identities = {
        "server": matrix_pki.intermediate.issue(HOSTILE_CN),
        "trusted": matrix_pki.intermediate.issue(HOSTILE_CN),
        "untrusted": stranger.issue(HOSTILE_CN),
    }
    client = matrix_pki.files["client"]
    return HostilePKI(
        matrix_pki.ca_file,
        matrix_pki.crl_file,
        Files(client.cert, client.key),
        files("server"),
        files("trusted"),
        files("untrusted"),
    )


@pytest.fixture(scope="module")
def node(hostile_pki: HostilePKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    pki = hostile_pki
    live = start(
        tmp_path_factory.mktemp("explain-node"),
        "--explain",
        "--tls-cert",
        str(pki.server.chain),
        "--tls-key",
        str(pki.server.key),
        "--ca",
        str(pki.ca),
        "--crl",
        str(pki.crl),
    )
    try:
        yield live
    finally:
        live.stop()
    live.check_one_line_each()
    _assert_nothing_forged(live.output())


def _tls(node: LiveNode, pki: HostilePKI, files: Files) -> DicomPeer:
    return DicomPeer.tls(node.port, files.chain, files.key, pki.ca)


def _assert_nothing_forged(output: str) -> None:
    """The checks every test ends with, on everything the node (or a command) wrote."""
    assert "\x1b" not in output, output
    assert "\u202e" not in output and "\x85" not in output
    lines = output.splitlines()
    assert not [line for line in lines if line.startswith(FORGED_LINE)], output
    assert not [line for line in lines if line.lstrip("│ ").startswith(FORGED_LINE)], output


def _calling_ae_is(request: bytes, raw: bytes) -> bytes:
    """The A-ASSOCIATE-RQ with its 16-byte calling AE field set to ``raw`` (PS3.8 9.3.2:
    after the 6-byte PDU header, the protocol version, 2 reserved bytes and the called AE)."""
    assert len(raw) == 16
    return request[:26] + raw + request[42:]


def test_calling_ae_title_with_a_line_break(node: LiveNode, hostile_pki: HostilePKI) -> None:
    """An AE title is 16 bytes: what fits of the forged line arrives, and is refused."""
    raw = FORGED.encode()[:16]
    request = build_request("PLACEHOLDER", AE, [Proposal(VERIFICATION, (EXPLICIT,))]).encode()
    peer = _tls(node, hostile_pki, hostile_pki.client)
    try:
        peer.send(_calling_ae_is(request, raw))
        answer = peer.next_pdu()
        line = node.wait_for(peer.name)
    finally:
        peer.close()
    assert isinstance(answer, Abort | AssociateRJ), answer
    assert "\\n2026-01-01 00:0" in line, line
    _assert_nothing_forged(node.output())


def _store_refused(node: LiveNode, pki: HostilePKI, uid: str, sample: Path) -> tuple[str, int]:
    """Associate for CT and send one C-STORE naming ``uid`` (with a good object's data set:
    the command's UID is refused first); (the node's line, the status)."""
    _make_file(sample, pixels=1_000)
    data = b"".join(bytes(block) for block in iter_blocks(read_header(sample)))
    command = encode_command(c_store_rq(1, CT, uid))
    peer = _tls(node, pki, pki.client)
    try:
        peer.send(build_request("RAW", AE, [Proposal(CT, (EXPLICIT,))]).encode())
        assert isinstance(peer.next_pdu(), AssociateAC)
        peer.send(PDataTF((PDV(1, 3, command),)).encode())
        peer.send(PDataTF((PDV(1, 2, data),)).encode())
        response = peer.next_pdu()
        line = node.wait_for(peer.name)
    finally:
        peer.close()
    assert isinstance(response, PDataTF), response
    return line, number(decode_command(bytes(response.pdvs[0].data)), Tag.Status)


def test_refused_sop_instance_uid_with_a_line_break(
    node: LiveNode, hostile_pki: HostilePKI, tmp_path: Path
) -> None:
    line, status = _store_refused(node, hostile_pki, "1.2.3" + FORGED, tmp_path / "ct.dcm")
    assert status != Status.SUCCESS
    assert line.startswith(tuple("0123456789")) and " WARNING dicomtls." in line
    assert f"1.2.3{ESCAPED}" in line, line
    _assert_nothing_forged(node.output())


def _handshake(node: LiveNode, pki: HostilePKI, files: Files) -> tuple[str, ssl.SSLSocket | None]:
    """A TLS client presenting ``files``; (its name, the socket if the handshake held)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(pki.ca)
    context.load_cert_chain(files.chain, files.key)
    sock = tcp(node.port)
    name = peer_name(sock)
    try:
        return name, context.wrap_socket(sock)
    except (ssl.SSLError, ConnectionError):
        sock.close()
        return name, None


def test_trusted_certificate_with_a_hostile_subject(
    node: LiveNode, hostile_pki: HostilePKI
) -> None:
    """Accepted: ``--explain`` shows the certificate; then the peer gets its one line (an
    association request for another AE) and the explanation is already out."""
    name, tls = _handshake(node, hostile_pki, hostile_pki.trusted)
    assert tls is not None
    peer = DicomPeer(tls, name)
    try:
        peer.send(
            build_request("RAW", "NOT-THE-NODE", [Proposal(VERIFICATION, (EXPLICIT,))]).encode()
        )
        assert isinstance(peer.next_pdu(), AssociateRJ)
        line = node.wait_for(peer.name)
    finally:
        peer.close()
    assert "rejected" in line
    output = node.output()
    assert f"Subject Name: {HOSTILE_SUBJECT}" in output.splitlines(), output
    _assert_nothing_forged(output)


def test_untrusted_certificate_with_a_hostile_subject(
    node: LiveNode, hostile_pki: HostilePKI
) -> None:
    """Refused: the handshake failure's one line and ``--explain`` quote it escaped."""
    name, tls = _handshake(node, hostile_pki, hostile_pki.untrusted)
    if tls is not None:  # TLS 1.3: the client finishes first; the node's alert follows
        with contextlib.closing(tls):
            read_to_eof(tls)
    line = node.wait_for(name)
    assert "TLS handshake with" in line and "UNABLE_TO_GET_ISSUER_CERT_LOCALLY" in line, line
    assert f"'{HOSTILE_SUBJECT}'" in line, line
    output = node.output()
    assert f"Subject Name: {HOSTILE_SUBJECT}" in output.splitlines()
    assert f"Issuer Name: {HOSTILE_SUBJECT}" in output.splitlines()
    _assert_nothing_forged(output)


# -- the commands, shown a hostile node ----------------------------------------------------


def _client(pki: HostilePKI) -> list[str]:
    return [
        "--called-ae",
        AE,
        "--ca",
        str(pki.ca),
        "--tls-cert",
        str(pki.client.chain),
        "--tls-key",
        str(pki.client.key),
    ]


def test_echo_verbose_shows_the_nodes_subject_escaped(
    node: LiveNode, hostile_pki: HostilePKI, tmp_path: Path
) -> None:
    done = run("echo", "127.0.0.1", str(node.port), *_client(hostile_pki), "-v", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"Subject Name: {HOSTILE_SUBJECT}" in lines, done.stdout
    # In the session table rich would have taken [red] for markup: it is shown as written.
    assert any("Peer certificate" in line and HOSTILE_NAME in line for line in lines)
    _assert_nothing_forged(done.stdout + done.stderr)


def test_find_shows_the_nodes_values_escaped(
    node: LiveNode, hostile_pki: HostilePKI, tmp_path: Path
) -> None:
    """C-FIND results are the node's text: a description with markup and an ESC sequence."""
    sample = tmp_path / "ct.dcm"
    dataset = _make_file(sample, pixels=1_000)
    dataset.StudyDescription = "[red]Head" + FORGED
    dataset.save_as(sample, enforce_file_format=True)
    stored = run(
        "store", "127.0.0.1", str(node.port), *_client(hostile_pki), str(sample), cwd=tmp_path
    )
    assert stored.returncode == 0, stored.stdout + stored.stderr
    found = run(
        "find",
        "127.0.0.1",
        str(node.port),
        *_client(hostile_pki),
        "--level",
        "study",
        "-k",
        f"StudyInstanceUID={dataset.StudyInstanceUID}",
        "-k",
        "StudyDescription",
        cwd=tmp_path,
    )
    assert found.returncode == 0, found.stderr
    assert f"[red]Head{ESCAPED}" in found.stdout, found.stdout
    _assert_nothing_forged(found.stdout + found.stderr)


def test_doctor_shows_the_nodes_subject_escaped(
    node: LiveNode, hostile_pki: HostilePKI, tmp_path: Path
) -> None:
    """The node's certificate names no host: the doctor's warning quotes its subject."""
    done = run("doctor", "127.0.0.1", str(node.port), *_client(hostile_pki), cwd=tmp_path)
    assert done.returncode == 1, done.stdout  # a warning: not every step passed
    assert any(
        "certificate-chain" in line and HOSTILE_NAME in line for line in done.stdout.splitlines()
    ), done.stdout
    _assert_nothing_forged(done.stdout + done.stderr)


def test_inspect_shows_a_hostile_certificate_escaped(
    hostile_pki: HostilePKI, tmp_path: Path
) -> None:
    done = run("inspect", str(hostile_pki.untrusted.chain), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"Subject Name: {HOSTILE_SUBJECT}" in lines, done.stdout
    assert f"Issuer Name: {HOSTILE_SUBJECT}" in lines
    _assert_nothing_forged(done.stdout + done.stderr)


def _with_character_set(raw: bytes, **values: str) -> bytes:
    """An identifier of ``values`` whose Specific Character Set is ``raw``: pydicom reads
    the value when it decodes the text, and warns quoting it (``Unknown encoding ...``)."""
    from pydicom.dataset import Dataset

    from dicomtls.dimse.datasets import encode_dataset

    dataset = Dataset()
    for keyword, value in values.items():
        setattr(dataset, keyword, value)
    body = encode_dataset(dataset, EXPLICIT)
    padded = raw + b" " * (len(raw) % 2)
    element = struct.pack("<HH2sH", 0x0008, 0x0005, b"CS", len(padded)) + padded
    return element + body  # (0008,0005) sorts before the others


def test_a_character_set_quoted_by_a_library_warning_is_escaped(
    node: LiveNode, hostile_pki: HostilePKI
) -> None:
    """pydicom warns about a Specific Character Set it does not know, quoting it as the peer
    wrote it, to stderr through ``warnings`` as well as through its logger. The node's
    output is its log: the quote comes escaped, in pydicom's log lines only (the raw copy
    forged a line and sent the ESC to whoever read the log)."""
    identifier = _with_character_set(
        FORGED.encode(), QueryRetrieveLevel="STUDY", PatientName="Doe*", StudyInstanceUID=""
    )
    peer = _tls(node, hostile_pki, hostile_pki.client)
    try:
        peer.send(build_request("RAW", AE, [Proposal(STUDY_FIND, (EXPLICIT,))]).encode())
        assert isinstance(peer.next_pdu(), AssociateAC)
        talk = Conversation(peer)
        talk.send(1, c_find_rq(1, STUDY_FIND), identifier)
        final = talk.until_final()[-1]
        assert final.status == Status.SUCCESS  # the query ran, in the default repertoire
    finally:
        peer.close()
    quoted = [line for line in node.output().splitlines() if "Unknown encoding" in line]
    assert quoted, node.output()
    assert all(ESCAPED in line and " WARNING pydicom: " in line for line in quoted), quoted
    _assert_nothing_forged(node.output())


def test_find_shows_a_match_in_a_character_set_no_one_knows_escaped(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, tmp_path: Path
) -> None:
    """``dicomtls find`` against an SCP whose match names that Specific Character Set: what
    pydicom says of it reaches the user's terminal escaped, like the match itself."""
    match = _with_character_set(FORGED.encode(), QueryRetrieveLevel="STUDY", PatientName="Doe")

    def script(link: SCPLink) -> None:
        find = link.next_command()
        assert find is not None
        context = find.pdvs[0].context_id
        link.next_pdu()  # its identifier
        link.send(message_pdus(context, c_find_rsp(1, STUDY_FIND, Status.PENDING, True), match))
        link.send(message_pdus(context, c_find_rsp(1, STUDY_FIND, Status.SUCCESS, False)))
        link.release()

    scp = HostileSCP(scp_context, script).start()
    client = matrix_pki.files["client"]
    found = run(
        "find",
        "127.0.0.1",
        str(scp.port),
        "--called-ae",
        "HOSTILE",
        "--ca",
        str(matrix_pki.ca_file),
        "--tls-cert",
        str(client.cert),
        "--tls-key",
        str(client.key),
        "-k",
        "PatientName",
        cwd=tmp_path,
    )
    scp.join()
    assert found.returncode == 0, found.stderr
    assert "Doe" in found.stdout, found.stdout
    assert ESCAPED in found.stderr, found.stderr
    _assert_nothing_forged(found.stdout + found.stderr)
