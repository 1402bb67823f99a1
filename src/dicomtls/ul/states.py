"""The DICOM upper-layer state machine of PS3.8 section 9.2, as one data table.

Theory of operation: an association is always in one of the standard's thirteen
states (Sta1-Sta13). Every event (Evt1-Evt19: a PDU arrived, the local user asked
for something, the transport closed, the ARTIM timer fired) is looked up with the
current state in :data:`TRANSITIONS`, which is PS3.8 Table 9-10 transcribed row by
row, and names the action (AE-n, DT-n, AR-n, AA-n) to perform. The action decides
the next state (:data:`NEXT_STATE`).

Two rules, kept from h11's state module:
- everything that affects transitions lives in this file;
- this file does not know which role we play (the two role-dependent branches,
  AE-6 and AR-8, are resolved by the caller, which the table marks).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["NEXT_STATE", "TRANSITIONS", "Action", "Event", "State"]


class State(enum.StrEnum):
    """PS3.8 Tables 9-1 to 9-5."""

    STA1 = "Sta1"
    STA2 = "Sta2"
    STA3 = "Sta3"
    STA4 = "Sta4"
    STA5 = "Sta5"
    STA6 = "Sta6"
    STA7 = "Sta7"
    STA8 = "Sta8"
    STA9 = "Sta9"
    STA10 = "Sta10"
    STA11 = "Sta11"
    STA12 = "Sta12"
    STA13 = "Sta13"

    @property
    def description(self) -> str:
        return _STATE_TEXT[self]


_STATE_TEXT = {
    State.STA1: "Idle",
    State.STA2: "Transport connection open (awaiting A-ASSOCIATE-RQ PDU)",
    State.STA3: "Awaiting local A-ASSOCIATE response primitive",
    State.STA4: "Awaiting transport connection opening to complete",
    State.STA5: "Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU",
    State.STA6: "Association established and ready for data transfer",
    State.STA7: "Awaiting A-RELEASE-RP PDU",
    State.STA8: "Awaiting local A-RELEASE response primitive",
    State.STA9: "Release collision requestor side; awaiting A-RELEASE response",
    State.STA10: "Release collision acceptor side; awaiting A-RELEASE-RP PDU",
    State.STA11: "Release collision requestor side; awaiting A-RELEASE-RP PDU",
    State.STA12: "Release collision acceptor side; awaiting A-RELEASE response primitive",
    State.STA13: "Awaiting transport connection close indication",
}


class Event(enum.StrEnum):
    """PS3.8 Table 9-10, the events."""

    EVT1 = "Evt1"  # A-ASSOCIATE request (local user)
    EVT2 = "Evt2"  # transport connect confirmation
    EVT3 = "Evt3"  # A-ASSOCIATE-AC PDU received
    EVT4 = "Evt4"  # A-ASSOCIATE-RJ PDU received
    EVT5 = "Evt5"  # transport connection indication
    EVT6 = "Evt6"  # A-ASSOCIATE-RQ PDU received
    EVT7 = "Evt7"  # A-ASSOCIATE response primitive (accept)
    EVT8 = "Evt8"  # A-ASSOCIATE response primitive (reject)
    EVT9 = "Evt9"  # P-DATA request primitive
    EVT10 = "Evt10"  # P-DATA-TF PDU received
    EVT11 = "Evt11"  # A-RELEASE request primitive
    EVT12 = "Evt12"  # A-RELEASE-RQ PDU received
    EVT13 = "Evt13"  # A-RELEASE-RP PDU received
    EVT14 = "Evt14"  # A-RELEASE response primitive
    EVT15 = "Evt15"  # A-ABORT request primitive
    EVT16 = "Evt16"  # A-ABORT PDU received
    EVT17 = "Evt17"  # transport connection closed indication
    EVT18 = "Evt18"  # ARTIM timer expired
    EVT19 = "Evt19"  # unrecognized or invalid PDU received


class Action(enum.StrEnum):
    """PS3.8 Tables 9-6 to 9-9, the actions."""

    AE_1 = "AE-1"  # issue TRANSPORT CONNECT request
    AE_2 = "AE-2"  # send A-ASSOCIATE-RQ PDU
    AE_3 = "AE-3"  # issue A-ASSOCIATE confirmation (accept)
    AE_4 = "AE-4"  # issue A-ASSOCIATE confirmation (reject), close transport
    AE_5 = "AE-5"  # issue transport connection response, start ARTIM
    AE_6 = "AE-6"  # stop ARTIM; indicate A-ASSOCIATE, or send A-ASSOCIATE-RJ and start ARTIM
    AE_7 = "AE-7"  # send A-ASSOCIATE-AC PDU
    AE_8 = "AE-8"  # send A-ASSOCIATE-RJ PDU, start ARTIM
    DT_1 = "DT-1"  # send P-DATA-TF PDU
    DT_2 = "DT-2"  # issue P-DATA indication
    AR_1 = "AR-1"  # send A-RELEASE-RQ PDU
    AR_2 = "AR-2"  # issue A-RELEASE indication
    AR_3 = "AR-3"  # issue A-RELEASE confirmation, close transport
    AR_4 = "AR-4"  # send A-RELEASE-RP PDU, start ARTIM
    AR_5 = "AR-5"  # stop ARTIM
    AR_6 = "AR-6"  # issue P-DATA indication (while awaiting A-RELEASE-RP)
    AR_7 = "AR-7"  # send P-DATA-TF PDU (while awaiting local A-RELEASE response)
    AR_8 = "AR-8"  # issue A-RELEASE indication (release collision)
    AR_9 = "AR-9"  # send A-RELEASE-RP PDU
    AR_10 = "AR-10"  # issue A-RELEASE confirmation
    AA_1 = "AA-1"  # send A-ABORT PDU (service-user source), start or restart ARTIM
    AA_2 = "AA-2"  # stop ARTIM if running, close transport
    AA_3 = "AA-3"  # issue A-ABORT or A-P-ABORT indication, close transport
    AA_4 = "AA-4"  # issue A-P-ABORT indication
    AA_5 = "AA-5"  # stop ARTIM
    AA_6 = "AA-6"  # ignore PDU
    AA_7 = "AA-7"  # send A-ABORT PDU
    AA_8 = "AA-8"  # send A-ABORT PDU (service-provider source), indicate A-P-ABORT, start ARTIM


S, E, A = State, Event, Action
_ALL_PDU_STATES = (S.STA3, S.STA5, S.STA6, S.STA7, S.STA8, S.STA9, S.STA10, S.STA11, S.STA12)


def _row(event: Event, default: Action, **overrides: Action) -> dict[tuple[State, Event], Action]:
    """A table row for a received PDU: ``default`` in every association state unless overridden."""
    row = {(state, event): default for state in _ALL_PDU_STATES}
    row[(S.STA2, event)] = A.AA_1
    row[(S.STA13, event)] = A.AA_6
    for name, action in overrides.items():
        row[(S(name.replace("STA", "Sta")), event)] = action
    return row


#: PS3.8 Table 9-10: (state, event) -> action. A pair not listed is not allowed.
TRANSITIONS: Mapping[tuple[State, Event], Action] = MappingProxyType(
    {
        (S.STA1, E.EVT1): A.AE_1,
        (S.STA4, E.EVT2): A.AE_2,
        **_row(E.EVT3, A.AA_8, STA5=A.AE_3),
        **_row(E.EVT4, A.AA_8, STA5=A.AE_4),
        (S.STA1, E.EVT5): A.AE_5,
        **_row(E.EVT6, A.AA_8, STA2=A.AE_6, STA13=A.AA_7),
        (S.STA3, E.EVT7): A.AE_7,
        (S.STA3, E.EVT8): A.AE_8,
        (S.STA6, E.EVT9): A.DT_1,
        (S.STA8, E.EVT9): A.AR_7,
        **_row(E.EVT10, A.AA_8, STA6=A.DT_2, STA7=A.AR_6),
        (S.STA6, E.EVT11): A.AR_1,
        **_row(E.EVT12, A.AA_8, STA6=A.AR_2, STA7=A.AR_8),
        **_row(E.EVT13, A.AA_8, STA7=A.AR_3, STA10=A.AR_10, STA11=A.AR_3),
        (S.STA8, E.EVT14): A.AR_4,
        (S.STA9, E.EVT14): A.AR_9,
        (S.STA12, E.EVT14): A.AR_4,
        **{(state, E.EVT15): A.AA_1 for state in _ALL_PDU_STATES},
        (S.STA4, E.EVT15): A.AA_2,
        **{(state, E.EVT16): A.AA_3 for state in _ALL_PDU_STATES},
        (S.STA2, E.EVT16): A.AA_2,
        (S.STA13, E.EVT16): A.AA_2,
        **{(state, E.EVT17): A.AA_4 for state in (*_ALL_PDU_STATES, S.STA4)},
        (S.STA2, E.EVT17): A.AA_5,
        (S.STA13, E.EVT17): A.AR_5,
        (S.STA2, E.EVT18): A.AA_2,
        (S.STA13, E.EVT18): A.AA_2,
        **{(state, E.EVT19): A.AA_8 for state in _ALL_PDU_STATES},
        (S.STA2, E.EVT19): A.AA_1,
        (S.STA13, E.EVT19): A.AA_7,
    }
)

#: The state each action leads to; AE-6 and AR-8 depend on the outcome or the role.
NEXT_STATE: Mapping[Action, State | tuple[State, State]] = MappingProxyType(
    {
        A.AE_1: S.STA4,
        A.AE_2: S.STA5,
        A.AE_3: S.STA6,
        A.AE_4: S.STA1,
        A.AE_5: S.STA2,
        A.AE_6: (S.STA3, S.STA13),  # acceptable -> Sta3, rejected by the provider -> Sta13
        A.AE_7: S.STA6,
        A.AE_8: S.STA13,
        A.DT_1: S.STA6,
        A.DT_2: S.STA6,
        A.AR_1: S.STA7,
        A.AR_2: S.STA8,
        A.AR_3: S.STA1,
        A.AR_4: S.STA13,
        A.AR_5: S.STA1,
        A.AR_6: S.STA7,
        A.AR_7: S.STA8,
        A.AR_8: (S.STA9, S.STA10),  # association-requestor -> Sta9, acceptor -> Sta10
        A.AR_9: S.STA11,
        A.AR_10: S.STA12,
        A.AA_1: S.STA13,
        A.AA_2: S.STA1,
        A.AA_3: S.STA1,
        A.AA_4: S.STA1,
        A.AA_5: S.STA1,
        A.AA_6: S.STA13,
        A.AA_7: S.STA13,
        A.AA_8: S.STA13,
    }
)
