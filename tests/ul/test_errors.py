"""Malformed input raises PDUError with the A-ABORT reason PS3.8 wants; misuse raises
LocalProtocolError before any byte is produced."""

from __future__ import annotations

from typing import Any

import pytest

from dicomtls.ul import (
    PDV,
    AbortReason,
    AssociateRJ,
    AssociateRQ,
    AsyncOpsWindow,
    LocalProtocolError,
    PDataTF,
    PDUError,
    PresentationContextRQ,
    RawSubItem,
    RejectReasonServiceUser,
    RejectResult,
    RejectSource,
    RemoteProtocolError,
    UserIdentityRQ,
    UserIdentityType,
    UserInformation,
    decode_pdu,
)
from tests.ul.test_pdu_bytes import ASSOCIATE_RQ, ASSOCIATE_RQ_BYTES

INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE
UNEXPECTED = AbortReason.UNEXPECTED_PDU_PARAMETER

HEADER_AND_FIXED = ASSOCIATE_RQ_BYTES[:74]
APP_CONTEXT = b"\x10\x00\x00\x151.2.840.10008.3.1.1.1"
CONTEXT = (
    b"\x20\x00\x00\x2e\x01\x00\x00\x00"
    b"\x30\x00\x00\x11"
    b"1.2.840.10008.1.1"
    b"\x40\x00\x00\x11"
    b"1.2.840.10008.1.2"
)
USER_INFO = b"\x50\x00\x00\x13\x51\x00\x00\x04\x00\x00\x40\x00\x52\x00\x00\x071.2.3.4"


def rq(*items: bytes, called: bytes = b"ANY-SCP         ") -> bytes:
    """An A-ASSOCIATE-RQ with the given variable items and a correct PDU length."""
    body = b"\x00\x01\x00\x00" + called + b"ECHOSCU         " + bytes(32) + b"".join(items)
    return b"\x01\x00" + len(body).to_bytes(4, "big") + body


def test_helper_builds_a_valid_request() -> None:
    assert decode_pdu(rq(APP_CONTEXT, CONTEXT, USER_INFO)) == ASSOCIATE_RQ.__class__(
        called_ae="ANY-SCP",
        calling_ae="ECHOSCU",
        presentation_contexts=ASSOCIATE_RQ.presentation_contexts,
        user_information=UserInformation(16384, "1.2.3.4"),
    )


def test_unknown_items_are_skipped_as_ps38_931_says() -> None:
    pdu = decode_pdu(rq(APP_CONTEXT, b"\x33\x00\x00\x02zz", CONTEXT, USER_INFO))
    assert isinstance(pdu, AssociateRQ)


REMOTE_CASES = [
    pytest.param(
        b"\x08\x00\x00\x00\x00\x00", AbortReason.UNRECOGNIZED_PDU, "PDU type 0x08", id="pdu-type"
    ),
    pytest.param(b"\x01\x00\x00", INVALID, "too few for a 6-byte PDU header", id="short-header"),
    pytest.param(
        rq(APP_CONTEXT, b"\x20\x00\x01\x2c\x01\x00\x00\x00" + bytes(20)),
        INVALID,
        "item 0x20 length 300 runs past the end of the A-ASSOCIATE-RQ (24 bytes left)",
        id="item-runs-past",
    ),
    pytest.param(
        rq(APP_CONTEXT, CONTEXT, USER_INFO, b"\x50"),
        INVALID,
        "too few for an item header",
        id="item-header-cut",
    ),
    pytest.param(rq(CONTEXT, USER_INFO), INVALID, "no application context", id="no-app-context"),
    pytest.param(rq(APP_CONTEXT, USER_INFO), INVALID, "no presentation context", id="no-context"),
    pytest.param(rq(APP_CONTEXT, CONTEXT), INVALID, "no user information", id="no-user-info"),
    pytest.param(
        rq(APP_CONTEXT, APP_CONTEXT, CONTEXT, USER_INFO),
        UNEXPECTED,
        "more than one application",
        id="two-app-contexts",
    ),
    pytest.param(
        rq(APP_CONTEXT, CONTEXT, USER_INFO, USER_INFO),
        UNEXPECTED,
        "more than one user information",
        id="two-user-infos",
    ),
    pytest.param(
        rq(APP_CONTEXT, b"\x21\x00\x00\x08\x01\x00\x00\x00\x40\x00\x00\x00", USER_INFO),
        UNEXPECTED,
        "item 0x21 is not allowed in the A-ASSOCIATE-RQ",
        id="ac-context-in-rq",
    ),
    pytest.param(
        rq(
            APP_CONTEXT,
            CONTEXT.replace(b"\x20\x00\x00\x2e\x01", b"\x20\x00\x00\x2e\x02"),
            USER_INFO,
        ),
        INVALID,
        "ID 2, which is not odd",
        id="even-context-id",
    ),
    pytest.param(
        rq(APP_CONTEXT, b"\x20\x00\x00\x03\x01\x00\x00", USER_INFO),
        INVALID,
        "presentation context item 0x20 has 3 bytes, fewer than 4",
        id="short-context-rq",
    ),
    pytest.param(
        b"\x02" + rq(APP_CONTEXT, b"\x21\x00\x00\x02\x01\x00", USER_INFO)[1:],
        INVALID,
        "presentation context item 0x21 has 2 bytes, fewer than 4",
        id="short-context-ac",
    ),
    pytest.param(
        b"\x02"
        + rq(APP_CONTEXT, b"\x21\x00\x00\x08\x04\x00\x00\x00\x40\x00\x00\x00", USER_INFO)[1:],
        INVALID,
        "presentation context item 0x21 (ID 4) has presentation context ID 4, which is not odd",
        id="even-context-id-ac",
    ),
    pytest.param(
        rq(APP_CONTEXT, CONTEXT, CONTEXT, USER_INFO),
        INVALID,
        "repeats presentation context ID(s) [1]",
        id="repeated-context-id",
    ),
    pytest.param(
        rq(APP_CONTEXT, CONTEXT, USER_INFO, called=b" " * 16),
        INVALID,
        "called AE title",
        id="blank-called-ae",
    ),
    pytest.param(
        rq(APP_CONTEXT, CONTEXT.replace(b"1.2.840.10008.1.1", b"1.2.840.10008.x.1"), USER_INFO),
        INVALID,
        "is not a UID",
        id="bad-uid",
    ),
    pytest.param(
        rq(APP_CONTEXT, CONTEXT, b"\x50\x00\x00\x0b\x52\x00\x00\x071.2.3.4"),
        INVALID,
        "no maximum length sub-item",
        id="no-max-length",
    ),
    pytest.param(
        rq(
            APP_CONTEXT,
            CONTEXT,
            b"\x50\x00\x00\x0f\x51\x00\x00\x03\x00\x40\x00\x52\x00\x00\x041.23",
        ),
        INVALID,
        "maximum length sub-item 0x51 has length 3",
        id="short-max-length",
    ),
    pytest.param(
        rq(
            APP_CONTEXT,
            CONTEXT,
            USER_INFO[:3] + b"\x1b" + USER_INFO[4:] + b"\x51\x00\x00\x04\x00\x00\x00\x00",
        ),
        UNEXPECTED,
        "more than one sub-item 0x51",
        id="two-max-lengths",
    ),
    pytest.param(
        rq(APP_CONTEXT, CONTEXT, USER_INFO[:3] + b"\x17" + USER_INFO[4:] + b"\x59\x00\x00\x00"),
        UNEXPECTED,
        "0x59 belongs in an A-ASSOCIATE-AC only",
        id="identity-ac-in-rq",
    ),
    pytest.param(
        rq(APP_CONTEXT), INVALID, "has no presentation context item 0x20", id="only-app-context"
    ),
    pytest.param(
        b"\x01\x00\x00\x00\x00\x10" + bytes(16),
        INVALID,
        "fewer than its 68 fixed bytes",
        id="short-associate",
    ),
    pytest.param(b"\x03\x00\x00\x00\x00\x04\x00\x03\x01\x01", INVALID, "result 3", id="rj-result"),
    pytest.param(b"\x03\x00\x00\x00\x00\x04\x00\x01\x04\x01", INVALID, "source 4", id="rj-source"),
    pytest.param(
        b"\x03\x00\x00\x00\x00\x04\x00\x01\x01\x05",
        INVALID,
        "reason 5 is not defined for source SERVICE_USER",
        id="rj-reserved-reason",
    ),
    pytest.param(
        b"\x03\x00\x00\x00\x00\x05\x00\x01\x01\x01\x00", INVALID, "fixes it at 4", id="rj-length"
    ),
    pytest.param(
        b"\x07\x00\x00\x00\x00\x04\x00\x00\x01\x00", INVALID, "source 1", id="abort-source"
    ),
    pytest.param(
        b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x03", INVALID, "reason 3", id="abort-reason"
    ),
    pytest.param(
        b"\x05\x00\x00\x00\x00\x04\x00\x00\x00",
        INVALID,
        "declares PDU length 4 but 3",
        id="release-cut",
    ),
    pytest.param(
        b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        INVALID,
        "but 5 bytes follow",
        id="release-trailing",
    ),
    pytest.param(b"\x04\x00\x00\x00\x00\x00", INVALID, "carries no PDV", id="pdata-empty"),
    pytest.param(
        b"\x04\x00\x00\x00\x00\x05\x00\x00\x00\x01\x01",
        INVALID,
        "too few for a PDV",
        id="pdata-short-pdv",
    ),
    pytest.param(
        b"\x04\x00\x00\x00\x00\x06\x00\x00\x00\x01\x01\x00",
        INVALID,
        "item length 1 leaves no room",
        id="pdv-length-1",
    ),
    pytest.param(
        b"\x04\x00\x00\x00\x00\x07\x00\x00\x00\x09\x01\x00\xff",
        INVALID,
        "PDV item length 9 runs past the end of the P-DATA-TF (3 bytes left)",
        id="pdv-runs-past",
    ),
    pytest.param(
        b"\x04\x00\x00\x00\x00\x06\x00\x00\x00\x02\x02\x00",
        INVALID,
        "context ID 2 is not odd",
        id="pdv-even-id",
    ),
]


@pytest.mark.parametrize(("wire", "reason", "message"), REMOTE_CASES)
def test_malformed_pdus(wire: bytes, reason: AbortReason, message: str) -> None:
    with pytest.raises(PDUError) as info:
        decode_pdu(wire)
    assert info.value.reason == reason
    assert message in str(info.value)


def test_error_classes_follow_h11() -> None:
    assert issubclass(PDUError, RemoteProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)


def _rq(**changes: Any) -> AssociateRQ:
    """ASSOCIATE_RQ's essentials with ``changes``: field values a peer might send, wrong ones too."""
    fields: dict[str, Any] = {
        "called_ae": "ANY-SCP",
        "calling_ae": "ECHOSCU",
        "presentation_contexts": ASSOCIATE_RQ.presentation_contexts,
        "user_information": ASSOCIATE_RQ.user_information,
    }
    fields.update(changes)
    return AssociateRQ(**fields)


LOCAL_CASES = [
    pytest.param(_rq(called_ae="A" * 17), "called AE title", id="ae-too-long"),
    pytest.param(_rq(calling_ae="BAD\\AE"), "calling AE title", id="ae-backslash"),
    pytest.param(_rq(calling_ae="TAB\tAE"), "calling AE title", id="ae-control"),
    pytest.param(_rq(called_ae="   "), "called AE title", id="ae-blank"),
    pytest.param(
        _rq(application_context="1." * 32 + "1"), "application context name", id="uid-65-chars"
    ),
    pytest.param(_rq(application_context="1.2.abc"), "not a UID", id="uid-letters"),
    pytest.param(_rq(application_context="1..2"), "not a UID", id="uid-empty-component"),
    pytest.param(_rq(protocol_version=0x10000), "protocol version", id="protocol-version"),
    pytest.param(
        _rq(presentation_contexts=()), "at least one presentation context", id="no-contexts"
    ),
    pytest.param(
        _rq(presentation_contexts=(PresentationContextRQ(2, "1.2", ("1.2",)),)),
        "odd integer",
        id="even-id",
    ),
    pytest.param(
        _rq(presentation_contexts=(PresentationContextRQ(1, "1.2", ()),)),
        "no transfer syntax",
        id="no-ts",
    ),
    pytest.param(
        _rq(presentation_contexts=(PresentationContextRQ(1, "1.2", ("1.2",)),) * 2),
        "repeats presentation context ID",
        id="repeated-id",
    ),
    pytest.param(
        _rq(user_information=UserInformation(-1, "1.2")), "maximum length", id="max-length"
    ),
    pytest.param(
        _rq(user_information=UserInformation(0, "1.2", implementation_version_name="x" * 17)),
        "version name",
        id="version-name",
    ),
    pytest.param(
        _rq(user_information=UserInformation(0, "1.2", async_ops_window=AsyncOpsWindow(70000, 1))),
        "window",
        id="async-window",
    ),
    pytest.param(
        _rq(
            user_information=UserInformation(
                0, "1.2", user_identity=UserIdentityRQ(UserIdentityType.USERNAME, False, b"u", b"p")
            )
        ),
        "no secondary field",
        id="identity-secondary",
    ),
    pytest.param(
        _rq(user_information=UserInformation(0, "1.2", unknown=(RawSubItem(0x51, b""),))),
        "own field",
        id="raw-known-type",
    ),
    pytest.param(
        _rq(user_information=UserInformation(0, "1.2", unknown=(RawSubItem(0xA0, bytes(70000)),))),
        "at most 65535",
        id="item-too-long",
    ),
    pytest.param(PDataTF(()), "at least one PDV", id="pdata-empty"),
    pytest.param(PDataTF((PDV(1, 4, b""),)), "message control header", id="pdv-mch"),
    pytest.param(PDataTF((PDV(256, 0, b""),)), "odd integer", id="pdv-context-id"),
    pytest.param(
        AssociateRJ(
            RejectResult.PERMANENT,
            RejectSource.SERVICE_PROVIDER_ACSE,
            RejectReasonServiceUser.CALLED_AE_NOT_RECOGNIZED,
        ),
        "A-ASSOCIATE-RJ",
        id="rj-reason-of-other-source",
    ),
]


@pytest.mark.parametrize(("pdu", "message"), LOCAL_CASES)
def test_misuse_raises_local_protocol_error(
    pdu: AssociateRQ | PDataTF | AssociateRJ, message: str
) -> None:
    with pytest.raises(LocalProtocolError) as info:
        pdu.encode()
    assert message in str(info.value)
    assert not isinstance(info.value, RemoteProtocolError)


def test_too_many_presentation_contexts_is_one_short_sentence() -> None:
    """20,000 contexts (what a 1 MB request can carry) are named by their count, not listed."""
    from dicomtls.ul.errors import PDUError
    from dicomtls.ul.pdu import _check_unique_ids

    ids = [1 + 2 * (i % 128) for i in range(20_000)]
    with pytest.raises(PDUError) as caught:
        _check_unique_ids(ids, "A-ASSOCIATE-RQ", local=False)
    assert str(caught.value) == (
        "A-ASSOCIATE-RQ has 20000 presentation contexts; PS3.8 allows at most 128 (odd IDs 1-255)"
    )
