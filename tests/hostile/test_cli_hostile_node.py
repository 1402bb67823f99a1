"""``dicomtls get`` against a node whose answers are not what they should be.

``get`` asks the node first which SOP classes a study holds (a C-FIND for SOP Classes in
Study) and proposes a context for each. A value there that is no UID (a sloppy node's
padding, or a hostile node's escape sequence) names no SOP class anyone could propose: it
is left out, said once, and the retrieval goes on with the classes that are UIDs.
"""

from __future__ import annotations

import ssl
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

from dicomtls.dimse.messages import c_find_rsp, c_get_rsp
from dicomtls.dimse.status import Status
from dicomtls.net.qr_scu import QueryModel
from dicomtls.ul.pdu import AssociateRQ

from ..cli.test_node_cli import ENV, EXE
from ..conftest import MatrixPKI
from ..node.test_storage import CT
from .dimse import message_pdus
from .scp import HostileSCP, SCPLink

STUDY = QueryModel.STUDY_ROOT
NOT_A_UID = "1.2\x1b[2J"


def _classes_in_study(*values: str) -> bytes:
    """A study-level match whose SOP Classes in Study (0008,0062) lists ``values`` as written."""
    raw = "\\".join(values).encode()
    raw += b"\x00" * (len(raw) % 2)
    element = struct.pack("<HH2sH", 0x0008, 0x0062, b"UI", len(raw)) + raw
    level = struct.pack("<HH2sH", 0x0008, 0x0052, b"CS", 6) + b"STUDY "
    return level + element


def answering_find(match: bytes) -> Callable[[SCPLink], None]:
    def script(link: SCPLink) -> None:
        find = link.next_command()
        assert find is not None
        context = find.pdvs[0].context_id
        link.next_pdu()  # its identifier
        link.send(message_pdus(context, c_find_rsp(1, STUDY.find_uid, Status.PENDING, True), match))
        link.send(message_pdus(context, c_find_rsp(1, STUDY.find_uid, Status.SUCCESS, False)))
        link.release()

    return script


def answering_get(link: SCPLink) -> None:
    get = link.next_command()
    assert get is not None
    link.next_pdu()  # its identifier
    final = c_get_rsp(1, STUDY.get_uid, Status.SUCCESS, (0, 0, 0, 0))
    link.send(message_pdus(get.pdvs[0].context_id, final))
    link.release()


def dicomtls_get(
    pki: MatrixPKI,
    scp_context: ssl.SSLContext,
    out: Path,
    find: Callable[[SCPLink], None],
    get: Callable[..., None],
    *options: str,
) -> tuple[int, str, str, SCPLink]:
    """Run ``dicomtls get`` into ``out`` against a hostile node: ``find`` answers the
    question for the study's SOP classes, ``get`` the C-GET's association; ``options`` added
    to the command. Its exit code, output, errors, and the C-GET's link as the node saw it."""
    finder = HostileSCP(scp_context, find).start()
    getter = HostileSCP(scp_context, get, server=finder.server)
    client = pki.files["client"]
    command = [
        EXE, "get", "127.0.0.1", str(finder.port), "--out", str(out),
        "--called-ae", "HOSTILE", "--ca", str(pki.ca_file),
        "--tls-cert", str(client.cert), "--tls-key", str(client.key),
        "-k", "StudyInstanceUID=1.2.3", *options,
    ]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    ) as got:
        finder.join()
        getter.start()  # the C-GET's association waits in the listen queue until now
        said, err = got.communicate(timeout=120)
    return got.returncode, said, err, getter.join()


def test_get_leaves_out_a_sop_class_that_is_not_a_uid(
    matrix_pki: MatrixPKI, scp_context: ssl.SSLContext, tmp_path: Path
) -> None:
    find = answering_find(_classes_in_study(CT, NOT_A_UID))
    code, out, err, link = dicomtls_get(
        matrix_pki, scp_context, tmp_path / "got", find, answering_get
    )
    assert code == 0, err
    assert "completed 0, failed 0" in out, out
    proposed = link.received[0]
    assert isinstance(proposed, AssociateRQ)
    syntaxes = {c.abstract_syntax for c in proposed.presentation_contexts}
    assert syntaxes == {STUDY.get_uid, CT}
    assert "\x1b" not in out + err
    lines = [line for line in err.splitlines() if "not a UID" in line]
    assert len(lines) == 1 and "1.2\\x1b[2J" in lines[0], err
