"""One association's upper layer, sans-I/O: bytes in -> events out, calls in -> bytes out.

The I/O layer owns the socket and the clock. It feeds received bytes to
:meth:`UpperLayer.receive_data`, writes whatever :meth:`UpperLayer.data_to_send`
returns, starts or stops a timer when :attr:`UpperLayer.artim_running` changes,
calls :meth:`UpperLayer.artim_expired` when it fires, and closes the transport
when :attr:`UpperLayer.should_close` becomes true. Every transition goes through
:data:`~dicomtls.ul.states.TRANSITIONS`, so the behaviour can be checked line by
line against PS3.8 Table 9-10.

Errors follow h11: :class:`LocalProtocolError` when our own user asks for
something the state forbids; a peer that breaks the protocol never raises, it
gets an A-ABORT with the standard's reason and an :class:`Aborted` event that
says what it did.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from dicomtls.ul.codes import AbortReason, AbortSource, RejectReasonACSE, RejectResult, RejectSource
from dicomtls.ul.errors import LocalProtocolError, PDUError
from dicomtls.ul.pdu import (
    PDU,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
)
from dicomtls.ul.reader import PDUReader
from dicomtls.ul.states import NEXT_STATE, TRANSITIONS, Action, Event, State

__all__ = [
    "Aborted",
    "AssociationAccepted",
    "AssociationRejected",
    "AssociationRequested",
    "Closed",
    "DataReceived",
    "ReleaseConfirmed",
    "ReleaseRequested",
    "Role",
    "ULEvent",
    "UpperLayer",
]


class Role(enum.StrEnum):
    REQUESTOR = "requestor"
    ACCEPTOR = "acceptor"


@dataclass(frozen=True)
class AssociationRequested:
    """The peer asks for an association: answer with :meth:`UpperLayer.accept` or
    :meth:`UpperLayer.reject`."""

    request: AssociateRQ


@dataclass(frozen=True)
class AssociationAccepted:
    """The peer accepted our request; data may flow."""

    accept: AssociateAC


@dataclass(frozen=True)
class AssociationRejected:
    """The peer rejected our request; the transport closes."""

    reject: AssociateRJ


@dataclass(frozen=True)
class DataReceived:
    """A P-DATA-TF arrived: the PDVs of a DIMSE message, or of part of one."""

    pdata: PDataTF


@dataclass(frozen=True)
class ReleaseRequested:
    """The peer asks to release: answer with :meth:`UpperLayer.release_response`.

    ``collision``: both sides asked at once (PS3.8 Table 9-8, AR-8).
    """

    collision: bool = False


@dataclass(frozen=True)
class ReleaseConfirmed:
    """The peer agreed to our release request."""


@dataclass(frozen=True)
class Aborted:
    """The association ended abnormally; ``by_peer`` tells who ended it, ``reason`` why."""

    source: AbortSource
    reason: AbortReason
    by_peer: bool
    message: str


@dataclass(frozen=True)
class Closed:
    """The transport is gone (or must now be closed); nothing more will happen."""


ULEvent = (
    AssociationRequested
    | AssociationAccepted
    | AssociationRejected
    | DataReceived
    | ReleaseRequested
    | ReleaseConfirmed
    | Aborted
    | Closed
)

_PDU_EVENTS: dict[type, Event] = {
    AssociateAC: Event.EVT3,
    AssociateRJ: Event.EVT4,
    AssociateRQ: Event.EVT6,
    PDataTF: Event.EVT10,
    ReleaseRQ: Event.EVT12,
    ReleaseRP: Event.EVT13,
    Abort: Event.EVT16,
}


class UpperLayer:
    """The PS3.8 upper layer of one association, for either role."""

    def __init__(self, role: Role, *, max_pdu_length: int = 0) -> None:
        self.role = role
        # The transport is already connected when this object is made:
        # a requestor has done AE-1/Evt2, an acceptor has done AE-5.
        self.state = State.STA4 if role is Role.REQUESTOR else State.STA2
        self.artim_running = role is Role.ACCEPTOR
        self.should_close = False
        self.our_max_pdu_length = max_pdu_length
        self.peer_max_pdu_length = 0
        # Our limit applies from the first byte: a P-DATA-TF before the association is
        # established is refused anyway, but only once whole, so its header must not be
        # able to make us buffer gigabytes first.
        self._reader = PDUReader(max_pdu_length=max_pdu_length)
        self._outgoing: list[bytes | memoryview] = []
        self._events: list[ULEvent] = []
        # PS3.8 Table 9-10's actions, by the standard's names. AE-1 and AE-5 (transport
        # connect, accept) happened before this object existed.
        self._actions: dict[Action, _ActionFunction] = {
            Action.AE_2: self._ae_2,
            Action.AE_3: self._ae_3,
            Action.AE_4: self._ae_4,
            Action.AE_6: self._ae_6,
            Action.AE_7: self._ae_7,
            Action.AE_8: self._ae_8,
            Action.DT_1: self._dt_1,
            Action.DT_2: self._dt_2,
            Action.AR_1: self._ar_1,
            Action.AR_2: self._ar_2,
            Action.AR_3: self._ar_3,
            Action.AR_4: self._ar_4,
            Action.AR_5: self._ar_5,
            Action.AR_6: self._ar_6,
            Action.AR_7: self._ar_7,
            Action.AR_8: self._ar_8,
            Action.AR_9: self._ar_9,
            Action.AR_10: self._ar_10,
            Action.AA_1: self._aa_1,
            Action.AA_2: self._aa_2,
            Action.AA_3: self._aa_3,
            Action.AA_4: self._aa_4,
            Action.AA_5: self._aa_5,
            Action.AA_6: self._aa_6,
            Action.AA_7: self._aa_7,
            Action.AA_8: self._aa_8,
        }

    @property
    def ended(self) -> bool:
        """Sta1 again: the association is over and the transport closed or closing."""
        return self.state is State.STA1

    # -- I/O side -------------------------------------------------------------------------

    def data_to_send(self) -> list[bytes | memoryview]:
        """PDUs waiting to be written, in order (a list, for ``writelines``). A P-DATA-TF
        comes as its headers and its PDVs' own buffers, never copied into one."""
        out, self._outgoing = self._outgoing, []
        return out

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[ULEvent]:
        """Feed received bytes; returns the events they caused."""
        if (done := self._not_accepting()) is not None:
            return done
        self._reader.feed(data)
        return self._dispatch_pdus()

    def receive_buffer(self) -> memoryview:
        """Where received bytes may be written directly (into the PDU being completed, when
        it can be); report them with :meth:`received`. The buffer-based twin of receive_data."""
        return self._reader.get_buffer()

    def received(self, count: int) -> list[ULEvent]:
        """``count`` bytes were written into the last :meth:`receive_buffer`; their events."""
        if (done := self._not_accepting()) is not None:
            return done
        self._reader.buffer_updated(count)
        return self._dispatch_pdus()

    def _not_accepting(self) -> list[ULEvent] | None:
        """The answer to bytes that can cause nothing more, or None while they can."""
        if self.ended:
            return []
        if self._reader.error is not None:
            # The stream broke and Evt19 was handled once (A-ABORT sent); a broken stream
            # has no more PDUs, so later bytes must not answer the same error again.
            return self._take_events()
        return None

    def _dispatch_pdus(self) -> list[ULEvent]:
        while not self.ended:
            try:
                pdu = self._reader.next_pdu()
            except PDUError as exc:
                self._dispatch(Event.EVT19, None, error=exc)
                break
            if pdu is None:
                break
            self._dispatch(_PDU_EVENTS[type(pdu)], pdu)
        return self._take_events()

    def connection_closed(self) -> list[ULEvent]:
        """Evt17: the transport closed under us."""
        if not self.ended:
            self._dispatch(Event.EVT17, None)
        return self._take_events()

    def artim_expired(self) -> list[ULEvent]:
        """Evt18: the ARTIM timer the I/O layer runs for us has fired."""
        if self.artim_running:
            self._dispatch(Event.EVT18, None)
        return self._take_events()

    # -- local user side --------------------------------------------------------------------

    def request(self, rq: AssociateRQ) -> None:
        """Evt2 on a connected transport: send the A-ASSOCIATE-RQ (AE-2)."""
        self._local(Event.EVT2, rq)

    def accept(self, ac: AssociateAC) -> None:
        """Evt7: answer the request with an A-ASSOCIATE-AC (AE-7)."""
        self._local(Event.EVT7, ac)

    def reject(self, rj: AssociateRJ) -> None:
        """Evt8: answer the request with an A-ASSOCIATE-RJ (AE-8)."""
        self._local(Event.EVT8, rj)

    def send_pdata(self, pdata: PDataTF) -> None:
        """Evt9: send a P-DATA-TF PDU (DT-1 in Sta6, AR-7 in Sta8); LocalProtocolError in
        any other state. Its payloads are queued as they are, not copied."""
        self._local(Event.EVT9, pdata)

    def release(self) -> None:
        """Evt11: ask to release the association (AR-1)."""
        self._local(Event.EVT11, None)

    def release_response(self) -> None:
        """Evt14: agree to the peer's release request (AR-4, or AR-9 in a collision)."""
        self._local(Event.EVT14, None)

    def abort(self, reason: AbortReason = AbortReason.REASON_NOT_SPECIFIED) -> None:
        """Evt15: abort as the service user (AA-1); harmless when already ending."""
        if (self.state, Event.EVT15) in TRANSITIONS:
            self._dispatch(Event.EVT15, Abort(AbortSource.SERVICE_USER, reason))

    def _take_events(self) -> list[ULEvent]:
        events, self._events = self._events, []
        return events

    # -- the machine ------------------------------------------------------------------------

    def _action_for(self, event: Event) -> Action:
        action = TRANSITIONS.get((self.state, event))
        if action is None:
            raise LocalProtocolError(
                f"{event} is not allowed in {self.state} ({self.state.description})"
            )
        return action

    def _local(self, event: Event, pdu: PDU | None) -> None:
        self._action_for(event)
        self._dispatch(event, pdu)

    def _dispatch(self, event: Event, pdu: PDU | None, error: PDUError | None = None) -> None:
        action = TRANSITIONS.get((self.state, event))
        if action is None:  # only local events can be missing, and _local checked them
            raise LocalProtocolError(f"{event} is not allowed in {self.state}")
        next_state = self._actions[action](pdu, event, error)
        self.state = next_state if next_state is not None else _single(NEXT_STATE[action])

    def _send(self, pdu: PDU) -> None:
        if isinstance(pdu, PDataTF):
            self._outgoing.extend(pdu.encode_parts())
        else:
            self._outgoing.append(pdu.encode())

    def _abort_by_provider(self, reason: AbortReason, message: str) -> None:
        self._send(Abort(AbortSource.SERVICE_PROVIDER, reason))
        self._events.append(Aborted(AbortSource.SERVICE_PROVIDER, reason, False, message))

    # Association establishment (PS3.8 Table 9-6)

    def _ae_2(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        assert isinstance(pdu, AssociateRQ)
        self.our_max_pdu_length = pdu.user_information.max_length
        self._reader.max_pdu_length = self.our_max_pdu_length
        self._send(pdu)

    def _ae_3(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        assert isinstance(pdu, AssociateAC)
        self._negotiated(pdu.user_information.max_length)
        self._events.append(AssociationAccepted(pdu))

    def _ae_4(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        assert isinstance(pdu, AssociateRJ)
        self.should_close = True
        self._events.extend([AssociationRejected(pdu), Closed()])

    def _ae_6(self, pdu: PDU | None, event: Event, error: PDUError | None) -> State:
        assert isinstance(pdu, AssociateRQ)
        self.artim_running = False
        if pdu.protocol_version & 0x0001 == 0:
            self._send(
                AssociateRJ(
                    RejectResult.PERMANENT,
                    RejectSource.SERVICE_PROVIDER_ACSE,
                    RejectReasonACSE.PROTOCOL_VERSION_NOT_SUPPORTED,
                )
            )
            self.artim_running = True
            return State.STA13
        self.peer_max_pdu_length = pdu.user_information.max_length
        self._events.append(AssociationRequested(pdu))
        return State.STA3

    def _ae_7(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        assert isinstance(pdu, AssociateAC)
        self._send(pdu)
        self._negotiated(self.peer_max_pdu_length, ours=pdu.user_information.max_length)

    def _ae_8(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        assert isinstance(pdu, AssociateRJ)
        self._send(pdu)
        self.artim_running = True

    def _negotiated(self, peer_max: int, ours: int | None = None) -> None:
        """Limits in both directions: we refuse PDUs above what we advertised."""
        if ours is not None:
            self.our_max_pdu_length = ours
        self.peer_max_pdu_length = peer_max
        self._reader.max_pdu_length = self.our_max_pdu_length

    # Data transfer (Table 9-7)

    def _dt_1(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        if pdu is not None:
            self._send(pdu)

    def _dt_2(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        assert isinstance(pdu, PDataTF)
        self._events.append(DataReceived(pdu))

    # Release (Table 9-8)

    def _ar_1(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        self._send(ReleaseRQ())

    def _ar_2(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        self._events.append(ReleaseRequested())

    def _ar_3(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        self.should_close = True
        self._events.extend([ReleaseConfirmed(), Closed()])

    def _ar_4(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        self._send(ReleaseRP())
        self.artim_running = True

    def _ar_5(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        self.artim_running = False
        self._events.append(Closed())

    def _ar_6(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        self._dt_2(pdu, event, error)

    def _ar_7(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        self._dt_1(pdu, event, error)

    def _ar_8(self, pdu: PDU | None, event: Event, error: PDUError | None) -> State:
        self._events.append(ReleaseRequested(collision=True))
        return State.STA9 if self.role is Role.REQUESTOR else State.STA10

    def _ar_9(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        self._send(ReleaseRP())

    def _ar_10(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        self._events.append(ReleaseConfirmed())

    # Abort (Table 9-9)

    def _aa_1(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        if isinstance(pdu, Abort):  # our user's A-ABORT request
            self._send(pdu)
            self._events.append(Aborted(pdu.source, pdu.reason, False, "aborted by us"))
        else:  # a PDU while awaiting A-ASSOCIATE-RQ
            reason = error.reason if error is not None else AbortReason.UNEXPECTED_PDU
            message = str(error) if error is not None else f"unexpected {type(pdu).__name__} first"
            self._send(Abort(AbortSource.SERVICE_USER, reason))
            self._events.append(Aborted(AbortSource.SERVICE_USER, reason, False, message))
        self.artim_running = True

    def _aa_2(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        self.artim_running = False
        self.should_close = True
        if event is Event.EVT18 and self.state is State.STA2:
            self._events.append(
                Aborted(
                    AbortSource.SERVICE_PROVIDER,
                    AbortReason.REASON_NOT_SPECIFIED,
                    False,
                    "no A-ASSOCIATE-RQ arrived before the ARTIM timer expired",
                )
            )
        elif isinstance(pdu, Abort) and self.state is State.STA2:
            self._events.append(Aborted(pdu.source, pdu.reason, True, "peer aborted"))
        self._events.append(Closed())

    def _aa_3(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        assert isinstance(pdu, Abort)
        self.should_close = True
        message = f"peer aborted ({pdu.source.name}, {pdu.reason.name})"
        self._events.extend([Aborted(pdu.source, pdu.reason, True, message), Closed()])

    def _aa_4(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        self._events.extend(
            [
                Aborted(
                    AbortSource.SERVICE_PROVIDER,
                    AbortReason.REASON_NOT_SPECIFIED,
                    True,
                    "the peer closed the connection without releasing",
                ),
                Closed(),
            ]
        )

    def _aa_5(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        self.artim_running = False
        self._events.append(Closed())

    def _aa_6(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        pass  # a PDU after we ended the association is ignored

    def _aa_7(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        self._send(Abort(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU))

    def _aa_8(self, pdu: PDU | None, event: Event, error: PDUError | None) -> None:
        if error is not None:
            self._abort_by_provider(error.reason, str(error))
        else:
            name = type(pdu).__name__ if pdu is not None else "event"
            self._abort_by_provider(
                AbortReason.UNEXPECTED_PDU,
                f"unexpected {name} in {self.state} ({self.state.description})",
            )
        self.artim_running = True


_ActionFunction = Callable[[PDU | None, Event, PDUError | None], State | None]


def _single(state: State | tuple[State, State]) -> State:
    assert isinstance(state, State), "role- or outcome-dependent actions return their state"
    return state
