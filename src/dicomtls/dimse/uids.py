"""What a UID is (PS3.5 9.1), checked exactly, because a peer's UID becomes a file name and a key.

A UID is one or more components of digits separated by ``.``; a component starts with a
digit other than ``0`` unless it is ``0`` itself; the whole is at most 64 characters. The
padding a UI value carries on the wire (one trailing NUL, PS3.5 6.2) is not part of it and
is stripped by the decoders before a value gets here.

The check is a full match: a pattern ending in ``$`` also matches before a trailing
newline, and ``\\d`` matches digits of every script; neither is a UID. (pydicom 3.0's
``UID.is_valid`` is such a ``$`` match: it calls ``"1.2\\n"`` valid, so it is not used here.)
"""

from __future__ import annotations

import re

__all__ = ["MAX_UID_LENGTH", "VERIFICATION", "is_valid_uid", "uid_problem"]

#: The Verification SOP class (PS3.4 Annex A): C-ECHO's abstract syntax.
VERIFICATION = "1.2.840.10008.1.1"

#: PS3.5 9.1: "the total length of a UID shall not exceed 64 characters".
MAX_UID_LENGTH = 64

_COMPONENT = r"(?:0|[1-9][0-9]*)"  # [0-9], not \d: ASCII digits only
_UID = re.compile(rf"{_COMPONENT}(?:\.{_COMPONENT})*")
_DIGITS = re.compile(r"[0-9]+")


def is_valid_uid(value: str) -> bool:
    """Whether ``value`` is a UID by PS3.5 9.1, exactly (no padding, nothing after it)."""
    return len(value) <= MAX_UID_LENGTH and _UID.fullmatch(value) is not None


def uid_problem(value: str) -> str | None:
    """None for a valid UID, else which rule of PS3.5 9.1 it breaks, for a log line."""
    if is_valid_uid(value):
        return None
    if not value:
        return "it is empty"
    if len(value) > MAX_UID_LENGTH:
        return f"it is {len(value)} characters long, more than {MAX_UID_LENGTH}"
    for number, component in enumerate(value.split("."), 1):
        if not component:
            return f"component {number} is empty"
        if _DIGITS.fullmatch(component) is None:
            return f"component {number} is not all digits 0-9"
        if component[0] == "0":
            return f"component {number} has a leading zero"
    return "it is not a UID"  # not reached: every rule is named above
