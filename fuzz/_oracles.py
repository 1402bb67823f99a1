"""What must hold for *any* input, as plain functions with asserts.

Each ``check_*`` takes untrusted bytes, drives one parser the way the node does, and
fails (AssertionError, or whatever exception escaped) when an invariant breaks:

- only the module's own error type may escape (PDUError, CommandError, MessageError);
- whatever decodes must encode again and decode to the same value;
- the negotiator always answers, answers each context once and accepts only what was offered;
- the acceptor state machine turns any byte stream into events and/or an A-ABORT, writes only
  valid PDUs, and never buffers more than one PDU of the size it allows.

The atheris targets (``fuzz/fuzz_*.py``) call these; so do the hypothesis tests, which is how
a crash found by the fuzzer becomes a regression test: add the input as an ``@example``.
"""

from __future__ import annotations

from collections.abc import Iterator

from dicomtls.dimse.command import (
    CommandError,
    command_field,
    decode_command,
    encode_command,
    has_dataset,
)
from dicomtls.dimse.pdv import CommandReceived, DatasetFragment, MessageAssembler, MessageError
from dicomtls.ul import (
    DICOM_APPLICATION_CONTEXT,
    PDU,
    PDV,
    Abort,
    AbortReason,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    PDUError,
    PDUReader,
    PresentationResult,
    RejectReasonServiceUser,
    RejectSource,
    ReleaseRP,
    decode_pdu,
)
from dicomtls.ul._wire import PDU_HEADER
from dicomtls.ul.acse import AcceptorPolicy, answer_request
from dicomtls.ul.connection import (
    Aborted,
    AssociationRequested,
    Closed,
    DataReceived,
    ReleaseRequested,
    Role,
    UpperLayer,
)
from dicomtls.ul.reader import DEFAULT_MAX_ASSOCIATE_LENGTH
from dicomtls.ul.states import State

__all__ = [
    "VERIFICATION",
    "check_acse",
    "check_answer",
    "check_assembler",
    "check_command",
    "check_pdu",
    "check_reader",
    "check_upper_layer",
    "chunks",
    "policies_for",
    "reader_bound",
]

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def chunks(data: bytes, sizes: bytes) -> Iterator[bytes]:
    """Cut ``data`` into pieces whose sizes (1..256) come from ``sizes``, cycled."""
    pos = 0
    i = 0
    while pos < len(data):
        step = (sizes[i % len(sizes)] + 1) if sizes else len(data)
        yield data[pos : pos + step]
        pos += step
        i += 1


def reader_bound(
    max_pdu_length: int, max_associate_length: int = DEFAULT_MAX_ASSOCIATE_LENGTH
) -> int:
    """The most bytes a reader may hold for one incomplete PDU."""
    return max(max_pdu_length, max_associate_length) + PDU_HEADER.size


# --- PDU codec and framing ----------------------------------------------------------------


def check_pdu(data: bytes) -> PDU | None:
    """decode_pdu raises PDUError only; whatever decodes round-trips through encode."""
    try:
        pdu = decode_pdu(data)
    except PDUError as exc:
        assert str(exc), "a PDUError must say what was wrong"
        assert isinstance(exc.reason, AbortReason), exc.reason
        return None
    wire = pdu.encode()
    again = decode_pdu(wire)
    assert again == pdu, (pdu, again)
    assert decode_pdu(again.encode()) == pdu
    if isinstance(pdu, PDataTF):
        # Only the reserved control-header bits are normalised: the size must come back.
        assert len(wire) == len(data)
    return pdu


def _drain(reader: PDUReader) -> list[object]:
    out: list[object] = []
    try:
        out.extend(reader)
    except PDUError as exc:
        out.append(("error", exc.reason))
    return out


def check_reader(stream: bytes, sizes: bytes, max_pdu_length: int) -> list[object]:
    """PDUReader: same PDUs (and error) fed whole or in pieces, each PDU equal to what
    decode_pdu makes of its own bytes, and never more buffered than one allowed PDU."""
    bound = reader_bound(max_pdu_length)
    whole = PDUReader(max_pdu_length=max_pdu_length)
    whole.feed(stream)
    expected = _drain(whole)
    assert whole.buffered <= bound

    pieces = PDUReader(max_pdu_length=max_pdu_length)
    got: list[object] = []
    for piece in chunks(stream, sizes):
        pieces.feed(piece)
        assert pieces.buffered <= bound, (pieces.buffered, bound)
        got.extend(_drain(pieces))
        if got and isinstance(got[-1], tuple):
            break
    assert got == expected, (got, expected)
    if not (got and isinstance(got[-1], tuple)):
        assert pieces.buffered == whole.buffered

    # Every PDU framed out of the stream is what decode_pdu makes of exactly its bytes.
    pos = 0
    for pdu in (p for p in expected if not isinstance(p, tuple)):
        length = int.from_bytes(stream[pos + 2 : pos + 6], "big")
        frame = stream[pos : pos + 6 + length]
        assert decode_pdu(frame) == pdu
        check_pdu(frame)
        pos += 6 + length
    return expected


# --- DIMSE command sets and message assembly ----------------------------------------------


def check_command(data: bytes) -> None:
    """decode_command and command_field raise CommandError only; decoded sets round-trip."""
    try:
        command = decode_command(data)
    except CommandError as exc:
        assert str(exc)
        return
    assert all(tag >> 16 == 0 for tag in command), command
    again = decode_command(encode_command(command))
    assert again == command, (command, again)
    try:
        command_field(command)
    except CommandError as exc:
        assert str(exc)
    assert isinstance(has_dataset(command), bool)


def pdvs_from(data: bytes) -> list[PDV]:
    """Arbitrary PDVs from bytes: [context ID, control header, length, payload...]*."""
    out: list[PDV] = []
    pos = 0
    while pos + 3 <= len(data):
        context, control, length = data[pos], data[pos + 1], data[pos + 2]
        payload = data[pos + 3 : pos + 3 + length]
        out.append(PDV(context | 1, control & 3, memoryview(payload)))
        pos += 3 + length
    return out


def check_assembler(pdvs: list[PDV]) -> list[object]:
    """MessageAssembler raises MessageError only; what it reports is consistent with the PDVs.

    After an error the association is aborted, so nothing is fed after it.
    """
    assembler = MessageAssembler()
    out: list[object] = []
    expecting_data = False
    for pdv in pdvs:
        try:
            events = list(assembler.feed([pdv]))
        except MessageError as exc:
            assert str(exc)
            out.append(("error", str(exc)))
            return out
        for event in events:
            assert event.context_id == pdv.context_id
            if isinstance(event, CommandReceived):
                assert pdv.is_command and pdv.is_last and not expecting_data
                assert event.expects_dataset == has_dataset(event.command)
                expecting_data = event.expects_dataset
            else:
                assert isinstance(event, DatasetFragment)
                assert expecting_data and not pdv.is_command
                assert bytes(event.data) == bytes(pdv.data)
                assert event.last == pdv.is_last
                expecting_data = not event.last
        out.extend(events)
        mid_command = pdv.is_command and not pdv.is_last
        assert assembler.idle == (not expecting_data and not mid_command)
    return out


# --- association negotiation ---------------------------------------------------------------


def policies_for(rq: AssociateRQ, selector: int) -> list[AcceptorPolicy]:
    """Policies that accept some, all or none of what ``rq`` offers, to reach every branch."""
    offered = [c for c in rq.presentation_contexts]
    partial: dict[str, list[str]] = {VERIFICATION: [EXPLICIT, IMPLICIT]}
    for i, context in enumerate(offered):
        if (selector >> (i % 8)) & 1:
            # Prefer a syntax the peer listed last, then one it may not have offered.
            partial[context.abstract_syntax] = [*reversed(context.transfer_syntaxes), IMPLICIT]
    called = rq.called_ae if selector & 0x100 == 0 else "ELSEWHERE"
    return [
        AcceptorPolicy(called, partial, accept_scp_role=bool(selector & 0x200)),
        AcceptorPolicy(
            "ANY",
            {c.abstract_syntax: [IMPLICIT] for c in offered},
            require_called_ae=False,
            calling_ae_allowed=lambda ae: not ae.startswith("X"),
        ),
    ]


def check_answer(rq: AssociateRQ, policy: AcceptorPolicy) -> AssociateAC | AssociateRJ:
    """answer_request never raises and always answers something we can put on the wire."""
    answer = answer_request(rq, policy)
    assert isinstance(answer, AssociateAC | AssociateRJ), answer
    wire = answer.encode()  # must not raise: the peer would make our own encoder fail
    assert decode_pdu(wire) == answer
    if isinstance(answer, AssociateRJ):
        assert answer.source == RejectSource.SERVICE_USER
        reason = answer.reason
        if reason == RejectReasonServiceUser.CALLED_AE_NOT_RECOGNIZED:
            assert policy.require_called_ae and rq.called_ae.strip() != policy.ae_title
        elif reason == RejectReasonServiceUser.CALLING_AE_NOT_RECOGNIZED:
            assert not policy.calling_ae_allowed(rq.calling_ae.strip())
        else:
            assert reason == RejectReasonServiceUser.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED
            assert rq.application_context != DICOM_APPLICATION_CONTEXT
        return answer

    offers = rq.presentation_contexts
    assert [a.id for a in answer.presentation_contexts] == [o.id for o in offers]
    accepted: set[str] = set()
    for offer, result in zip(offers, answer.presentation_contexts, strict=True):
        ours = policy.supported.get(offer.abstract_syntax)
        if result.result == PresentationResult.ACCEPTANCE:
            assert ours is not None
            assert result.transfer_syntax in offer.transfer_syntaxes, "accepted an unoffered TS"
            assert result.transfer_syntax in ours, "accepted a TS the policy does not support"
            accepted.add(offer.abstract_syntax)
        elif ours is None:
            assert result.result == PresentationResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
        else:
            assert result.result == PresentationResult.TRANSFER_SYNTAXES_NOT_SUPPORTED
            assert not set(ours) & set(offer.transfer_syntaxes)
    roles = answer.user_information.role_selections
    assert len({r.sop_class_uid for r in roles}) == len(roles), "one role answer per SOP class"
    proposed = {r.sop_class_uid: r for r in reversed(rq.user_information.role_selections)}
    for role in roles:
        assert role.sop_class_uid in accepted, "role selection for a class not accepted"
        asked = proposed[role.sop_class_uid]
        assert role.scu_role <= asked.scu_role and role.scp_role <= asked.scp_role
        assert role.scp_role <= policy.accept_scp_role
    return answer


def check_acse(data: bytes, selector: int) -> None:
    """Decode an A-ASSOCIATE-RQ (the length field made to match) and answer it."""
    if len(data) >= 6:
        data = data[:2] + (len(data) - 6).to_bytes(4, "big") + data[6:]
    pdu = check_pdu(data)
    if isinstance(pdu, AssociateRQ):
        for policy in policies_for(pdu, selector):
            check_answer(pdu, policy)


# --- the acceptor's state machine -----------------------------------------------------------


def check_upper_layer(stream: bytes, sizes: bytes, max_pdu_length: int, selector: int) -> None:
    """Drive an acceptor the way the SCP does and check every step.

    Only LocalProtocolError is documented for our own misuse, and this driver asks only for
    what the state allows, so any exception at all is a bug.
    """
    ul = UpperLayer(Role.ACCEPTOR, max_pdu_length=max_pdu_length)
    assembler = MessageAssembler()
    bound = reader_bound(max_pdu_length)
    # Events of our own calls (abort()) come out with the next receive_data, so count
    # A-ABORTs written and our Aborted events over the whole session.
    sent: list[PDU] = []
    our_aborts = 0
    for piece in chunks(stream, sizes):
        was_ended, was_broken = ul.ended, ul._reader.error is not None
        events = ul.receive_data(piece)
        if was_ended:
            assert events == [], "events after the association ended"
        written = _sent(ul)
        if was_broken:
            assert not written, "bytes after a framing error answered again"
        sent += written
        assert ul._reader.buffered <= bound, (ul._reader.buffered, bound)
        for event in events:
            if isinstance(event, Aborted):
                assert event.message and isinstance(event.reason, AbortReason)
                if not event.by_peer:
                    our_aborts += 1
                    aborts = sum(isinstance(p, Abort) for p in sent)
                    assert aborts >= our_aborts, "Aborted but no A-ABORT written"
            elif isinstance(event, Closed):
                assert ul.should_close
            elif isinstance(event, AssociationRequested) and ul.state is State.STA3:
                policy = policies_for(event.request, selector)[selector & 1]
                answer = check_answer(event.request, policy)
                if isinstance(answer, AssociateAC):
                    ul.accept(answer)
                else:
                    ul.reject(answer)
                reply = _sent(ul)
                assert reply == [answer]
                sent += reply
            elif isinstance(event, DataReceived) and ul.state in (State.STA6, State.STA7):
                try:
                    list(assembler.feed(event.pdata.pdvs))
                except MessageError:
                    ul.abort()
                    reply = _sent(ul)
                    assert [type(p) for p in reply] == [Abort]
                    sent += reply
            elif isinstance(event, ReleaseRequested) and ul.state in (
                State.STA8,
                State.STA9,
                State.STA12,
            ):
                ul.release_response()
                reply = _sent(ul)
                assert [type(p) for p in reply] == [ReleaseRP]
                sent += reply
        assert ul.state in State
    final = ul.connection_closed()
    assert ul.ended, ul.state
    assert all(isinstance(e, Aborted | Closed) for e in final), final
    assert ul.receive_data(b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00") == []


def _sent(ul: UpperLayer) -> list[PDU]:
    """What the acceptor wrote, each chunk one valid PDU."""
    return [decode_pdu(chunk) for chunk in ul.data_to_send()]
