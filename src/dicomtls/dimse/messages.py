"""Building the command sets of the DIMSE-C services (PS3.7 section 9.3), one function each.

Each builder returns a :data:`~dicomtls.dimse.command.CommandSet` with exactly the
elements the standard requires for that message, so callers cannot forget one.
"""

from __future__ import annotations

import enum
from functools import partial

from dicomtls.dimse.command import NO_DATASET, CommandField, CommandSet, Tag
from dicomtls.dimse.uids import VERIFICATION

__all__ = [
    "Priority",
    "c_cancel_rq",
    "c_echo_rq",
    "c_echo_rsp",
    "c_find_rq",
    "c_find_rsp",
    "c_get_rq",
    "c_get_rsp",
    "c_move_rq",
    "c_move_rsp",
    "c_store_rq",
    "c_store_rsp",
]

DATASET_PRESENT = 0x0000  # any value but 0x0101; 0x0000 is what DCMTK and most peers send


class Priority(enum.IntEnum):
    MEDIUM = 0x0000
    HIGH = 0x0001
    LOW = 0x0002


def _rq(field: CommandField, sop_class: str, message_id: int, dataset: bool) -> CommandSet:
    return {
        Tag.CommandField: field,
        Tag.AffectedSOPClassUID: sop_class,
        Tag.MessageID: message_id,
        Tag.CommandDataSetType: DATASET_PRESENT if dataset else NO_DATASET,
    }


def _rsp(
    field: CommandField, sop_class: str | None, responding_to: int, status: int, dataset: bool
) -> CommandSet:
    command: CommandSet = {
        Tag.CommandField: field,
        Tag.MessageIDBeingRespondedTo: responding_to,
        Tag.CommandDataSetType: DATASET_PRESENT if dataset else NO_DATASET,
        Tag.Status: status,
    }
    if sop_class:
        command[Tag.AffectedSOPClassUID] = sop_class
    return command


def c_echo_rq(message_id: int, sop_class: str = VERIFICATION) -> CommandSet:
    return _rq(CommandField.C_ECHO_RQ, sop_class, message_id, dataset=False)


def c_echo_rsp(responding_to: int, status: int = 0, sop_class: str = VERIFICATION) -> CommandSet:
    return _rsp(CommandField.C_ECHO_RSP, sop_class, responding_to, status, dataset=False)


def c_store_rq(
    message_id: int,
    sop_class: str,
    sop_instance: str,
    priority: Priority = Priority.MEDIUM,
    move_originator: tuple[str, int] | None = None,
) -> CommandSet:
    command = _rq(CommandField.C_STORE_RQ, sop_class, message_id, dataset=True)
    command[Tag.AffectedSOPInstanceUID] = sop_instance
    command[Tag.Priority] = priority
    if move_originator is not None:
        command[Tag.MoveOriginatorApplicationEntityTitle] = move_originator[0]
        command[Tag.MoveOriginatorMessageID] = move_originator[1]
    return command


def c_store_rsp(
    responding_to: int, sop_class: str, sop_instance: str, status: int, comment: str | None = None
) -> CommandSet:
    command = _rsp(CommandField.C_STORE_RSP, sop_class, responding_to, status, dataset=False)
    command[Tag.AffectedSOPInstanceUID] = sop_instance
    if comment:
        command[Tag.ErrorComment] = _lo(comment)
    return command


def _lo(text: str) -> str:
    """``text`` as an LO value (PS3.5 6.2): 64 characters of printable ASCII at most, no
    backslash; anything else, a UID or value quoted from a peer say, becomes ``?``."""
    return "".join(ch if " " <= ch <= "~" and ch != "\\" else "?" for ch in text[:64])


def c_find_rq(message_id: int, sop_class: str, priority: Priority = Priority.MEDIUM) -> CommandSet:
    command = _rq(CommandField.C_FIND_RQ, sop_class, message_id, dataset=True)
    command[Tag.Priority] = priority
    return command


def c_find_rsp(responding_to: int, sop_class: str, status: int, has_identifier: bool) -> CommandSet:
    return _rsp(CommandField.C_FIND_RSP, sop_class, responding_to, status, dataset=has_identifier)


def c_move_rq(
    message_id: int, sop_class: str, destination: str, priority: Priority = Priority.MEDIUM
) -> CommandSet:
    command = _rq(CommandField.C_MOVE_RQ, sop_class, message_id, dataset=True)
    command[Tag.Priority] = priority
    command[Tag.MoveDestination] = destination
    return command


def c_get_rq(message_id: int, sop_class: str, priority: Priority = Priority.MEDIUM) -> CommandSet:
    command = _rq(CommandField.C_GET_RQ, sop_class, message_id, dataset=True)
    command[Tag.Priority] = priority
    return command


def _retrieve_rsp(
    field: CommandField,
    responding_to: int,
    sop_class: str,
    status: int,
    counts: tuple[int, int, int, int] | None = None,
    has_identifier: bool = False,
) -> CommandSet:
    """``counts`` are the sub-operations remaining, completed, failed and warning."""
    command = _rsp(field, sop_class, responding_to, status, has_identifier)
    if counts is not None:
        remaining, completed, failed, warning = counts
        command[Tag.NumberOfRemainingSuboperations] = remaining
        command[Tag.NumberOfCompletedSuboperations] = completed
        command[Tag.NumberOfFailedSuboperations] = failed
        command[Tag.NumberOfWarningSuboperations] = warning
    return command


# A C-MOVE-RSP and a C-GET-RSP carry the same elements (PS3.7 9.3.4.2, 9.3.3.2).
c_move_rsp = partial(_retrieve_rsp, CommandField.C_MOVE_RSP)
c_get_rsp = partial(_retrieve_rsp, CommandField.C_GET_RSP)


def c_cancel_rq(responding_to: int) -> CommandSet:
    return {
        Tag.CommandField: CommandField.C_CANCEL_RQ,
        Tag.MessageIDBeingRespondedTo: responding_to,
        Tag.CommandDataSetType: NO_DATASET,
    }
