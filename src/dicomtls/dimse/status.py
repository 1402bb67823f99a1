"""DIMSE status codes (PS3.7 Annex C) with their names and categories.

A status is a 16-bit number; people need its name and whether it means success,
pending, warning, cancel or failure. Ranges (0xA7xx, 0xCxxx) are service-specific,
so the category follows the standard's general rules for unlisted codes.
"""

from __future__ import annotations

import enum

__all__ = ["AnsweredStatus", "Category", "Status", "status_category", "status_name"]


class Category(enum.StrEnum):
    """What a status means, whatever its code: PS3.7 C.1's five kinds."""

    SUCCESS = "success"
    PENDING = "pending"
    CANCEL = "cancel"
    WARNING = "warning"
    FAILURE = "failure"


class AnsweredStatus(int):
    """A status as a peer answered it, with the Error Comment (0000,0902) it may give: the
    reason for a failure in its own words, which a bare 0xA700 does not say. An ``int``, so
    it compares and prints as the status always did."""

    comment: str | None

    def __new__(cls, status: int, comment: str | None = None) -> AnsweredStatus:
        answered = super().__new__(cls, status)
        answered.comment = comment
        return answered


class Status(enum.IntEnum):
    """The statuses this toolkit sends or meets most, by their standard names."""

    SUCCESS = 0x0000
    PENDING = 0xFF00
    PENDING_WITH_WARNINGS = 0xFF01
    CANCEL = 0xFE00
    # warnings
    ATTRIBUTE_LIST_ERROR = 0x0107
    ATTRIBUTE_VALUE_OUT_OF_RANGE = 0x0116
    COERCION_OF_DATA_ELEMENTS = 0xB000
    ELEMENTS_DISCARDED = 0xB006
    DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING = 0xB007
    # general failures (PS3.7 C.4)
    NO_SUCH_ATTRIBUTE = 0x0105
    INVALID_ATTRIBUTE_VALUE = 0x0106
    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    NO_SUCH_SOP_INSTANCE = 0x0112
    NO_SUCH_EVENT_TYPE = 0x0113
    NO_SUCH_ARGUMENT = 0x0114
    INVALID_ARGUMENT_VALUE = 0x0115
    INVALID_OBJECT_INSTANCE = 0x0117
    NO_SUCH_SOP_CLASS = 0x0118
    CLASS_INSTANCE_CONFLICT = 0x0119
    MISSING_ATTRIBUTE = 0x0120
    MISSING_ATTRIBUTE_VALUE = 0x0121
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    NO_SUCH_ACTION = 0x0123
    NOT_AUTHORIZED = 0x0124
    DUPLICATE_INVOCATION = 0x0210
    UNRECOGNIZED_OPERATION = 0x0211
    MISTYPED_ARGUMENT = 0x0212
    RESOURCE_LIMITATION = 0x0213
    # service-specific failures (PS3.4 B.2.3, C.4, ...)
    OUT_OF_RESOURCES = 0xA700
    OUT_OF_RESOURCES_NUMBER_OF_MATCHES = 0xA701
    OUT_OF_RESOURCES_SUBOPERATIONS = 0xA702
    MOVE_DESTINATION_UNKNOWN = 0xA801
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    UNABLE_TO_PROCESS = 0xC001


_NAMES = {
    0xB000: "coercion of data elements / sub-operations complete with failures",
    0xA700: "out of resources",
    0xA701: "out of resources: unable to calculate number of matches",
    0xA702: "out of resources: unable to perform sub-operations",
    0xA801: "move destination unknown",
    0xA900: "data set does not match SOP class",
    0xC000: "cannot understand",
    0x0122: "SOP class not supported",
    0x0110: "processing failure",
    0x0124: "not authorized",
    0x0211: "unrecognized operation",
}


def status_category(code: int) -> Category:
    """Classify any status code by the standard's rules (PS3.7 C.1)."""
    if code == 0x0000:
        return Category.SUCCESS
    if code in (0xFF00, 0xFF01):
        return Category.PENDING
    if code == 0xFE00:
        return Category.CANCEL
    if code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
        return Category.WARNING
    return Category.FAILURE


def status_name(code: int) -> str:
    """A readable name for ``code``, e.g. ``0xA700 out of resources (failure)``."""
    if code in _NAMES:
        name = _NAMES[code]
    else:
        try:
            name = Status(code).name.lower().replace("_", " ")
        except ValueError:
            name = "unknown status"
    return f"0x{code:04X} {name} ({status_category(code)})"
