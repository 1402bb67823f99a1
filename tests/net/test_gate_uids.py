"""The gate refuses a C-STORE whose UIDs are not UIDs (PS3.5 9.1), with the PS3.7 9.1.1.1.9
status, before its data set is read; the command set is the one the decoder makes of the bytes
a peer sent. (The same refusals against a real node: tests/hostile/test_store_identity.py.)"""

from __future__ import annotations

import pytest

from dicomtls.dimse.command import CommandField, decode_command, encode_command
from dicomtls.dimse.messages import c_store_rq
from dicomtls.dimse.pdv import CommandReceived
from dicomtls.dimse.sop_classes import Service
from dicomtls.dimse.status import Status
from dicomtls.net.gate import Gate
from dicomtls.ul.acse import AcceptedContext, Negotiated

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
VICTIM = "1.2.826.0.1.3680043.10.543.7"


def _negotiated(abstract_syntax: str = CT) -> Negotiated:
    return Negotiated((AcceptedContext(1, abstract_syntax, EXPLICIT),), 0, "1.2.3", None)


def _store(sop_class: str, sop_instance: str) -> CommandReceived:
    """A C-STORE-RQ as it arrives: encoded by the peer, decoded by us."""
    wire = encode_command(c_store_rq(7, sop_class, sop_instance))
    return CommandReceived(1, decode_command(wire), expects_dataset=True)


@pytest.mark.parametrize(
    "uid", [VICTIM + "\n", ".", "..", "", "1..2", "1.02", VICTIM + ".1" * 20, "../../x"]
)
@pytest.mark.parametrize("acceptor", [True, False], ids=["storage SCP", "C-GET SCU"])
def test_a_store_whose_instance_uid_is_no_uid_is_refused_0117(uid: str, acceptor: bool) -> None:
    refusal = Gate(_negotiated(), acceptor=acceptor).check(_store(CT, uid), CommandField.C_STORE_RQ)
    assert refusal is not None
    assert refusal.status == Status.INVALID_OBJECT_INSTANCE.value == 0x0117
    assert refusal.service is Service.STORE  # reported as a security event, as every refusal
    assert repr(uid) in refusal.reason  # named escaped: a newline in it cannot forge a log line


def test_valid_instance_uids_pass() -> None:
    gate = Gate(_negotiated())
    for uid in (VICTIM, "0", "2.25.329800735698586629295641978511506172918", "1.2.345"):
        assert gate.check(_store(CT, uid), CommandField.C_STORE_RQ) is None


def test_a_sop_class_uid_that_is_no_uid_is_refused_0122() -> None:
    """Negotiation accepts only SOP classes we support, all valid UIDs; if a context ever
    carried a broken abstract syntax, a C-STORE for it still names no SOP class we store."""
    broken = CT + ".01"
    refusal = Gate(_negotiated(broken)).check(_store(broken, VICTIM), CommandField.C_STORE_RQ)
    assert refusal is not None and refusal.status == Status.SOP_CLASS_NOT_SUPPORTED
    assert "leading zero" in refusal.reason


def test_access_is_decided_before_the_uids() -> None:
    """A peer the policy does not let store is told so (and audited), whatever its UIDs."""
    gate = Gate(_negotiated(), granted=frozenset({Service.ECHO}))
    refusal = gate.check(_store(CT, ".."), CommandField.C_STORE_RQ)
    assert (
        refusal is not None
        and refusal.status == Status.NOT_AUTHORIZED
        and refusal.service is Service.STORE
    )
