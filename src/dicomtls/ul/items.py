"""Variable items of A-ASSOCIATE PDUs (PS3.8 9.3.2, 9.3.3) and user-information sub-items
(PS3.8 Annex D, PS3.7 Annex D.3.3).

Each item is a frozen dataclass with ``encode()`` (validating, raising
:class:`LocalProtocolError`) and a ``decode(view)`` classmethod taking the item's
*value* (the bytes after its 4-byte header) and raising :class:`PDUError`.
PS3.8 9.3.1 says unrecognized items are skipped; unknown user-information
sub-items are kept as :class:`RawSubItem` so that nothing a peer sent is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from dicomtls.ul._wire import (
    U16,
    U32,
    UNEXPECTED,
    decode_uid,
    encode_uid,
    item,
    iter_items,
    read_u16_prefixed,
    u16_prefixed,
)
from dicomtls.ul.codes import ItemType, PresentationResult, UserIdentityType
from dicomtls.ul.errors import LocalProtocolError, PDUError

__all__ = [
    "AsyncOpsWindow",
    "CommonExtendedNegotiation",
    "ExtendedNegotiation",
    "PresentationContextAC",
    "PresentationContextRQ",
    "RawSubItem",
    "RoleSelection",
    "UserIdentityAC",
    "UserIdentityRQ",
    "UserInformation",
]


#: The most sub-items a presentation context may hold: its abstract syntax and transfer
#: syntaxes (some 60 are defined). An A-ASSOCIATE-RQ of 1 MiB held 200,000 one-character
#: ones, 0.2 s of the event loop's time to read for each connection that sent it.
MAX_CONTEXT_SUB_ITEMS = 128

#: Item types that live at PDU or presentation-context level; anywhere else they are
#: "unexpected" (a recognized parameter in the wrong place), not merely unknown.
CONTEXT_ITEM_TYPES = frozenset(
    {0x10, 0x20, 0x21, 0x30, 0x40, 0x50},
)


def decode_items(
    view: memoryview,
    where: str,
    decoders: Mapping[int, Callable[[memoryview], Any]],
    *,
    once: Mapping[int, str],
    most: int,
) -> dict[int, list[Any]]:
    """Decode the items of ``view`` in order, each by its type's decoder; the results by type.

    ``once`` names the types that may appear only once. A PDU- or context-level item
    with no decoder here is in the wrong place (an unexpected parameter); any other item
    is unrecognized and skipped, as PS3.8 9.3.1 says. More than ``most`` items is a PDU
    error: each costs a Python object or more, read on the event loop.
    """
    found: dict[int, list[Any]] = {}
    for item_type, value in iter_items(view, where, most):
        decoder = decoders.get(item_type)
        if decoder is None:
            if item_type in CONTEXT_ITEM_TYPES:
                raise PDUError(f"item 0x{item_type:02X} is not allowed in the {where}", UNEXPECTED)
            continue
        values = found.setdefault(item_type, [])
        if values and item_type in once:
            raise PDUError(f"{where} has more than one {once[item_type]}", UNEXPECTED)
        values.append(decoder(value))
    return found


def check_context_id(context_id: int, what: str = "presentation context ID") -> None:
    """Presentation context IDs are odd integers 1..255 (PS3.8 9.3.2.2)."""
    if not isinstance(context_id, int) or not 1 <= context_id <= 255 or context_id % 2 == 0:
        raise LocalProtocolError(f"{what} {context_id!r} is not an odd integer from 1 to 255")


def _context_head(view: memoryview, item_type: int) -> tuple[int, str]:
    """The checked ID of a received presentation context item, and how messages name the item."""
    name = f"presentation context item 0x{item_type:02X}"
    if len(view) < 4:
        raise PDUError(f"{name} has {len(view)} bytes, fewer than 4")
    context_id = view[0]
    where = f"{name} (ID {context_id})"
    if context_id % 2 == 0:
        raise PDUError(f"{where} has presentation context ID {context_id}, which is not odd")
    return context_id, where


@dataclass(frozen=True, slots=True)
class PresentationContextRQ:
    """Item 0x20: one abstract syntax offered with the transfer syntaxes we can use (9.3.2.2)."""

    id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]

    item_type: ClassVar[int] = ItemType.PRESENTATION_CONTEXT_RQ

    def encode(self) -> bytes:
        check_context_id(self.id)
        if not self.transfer_syntaxes:
            raise LocalProtocolError(f"presentation context {self.id} offers no transfer syntax")
        parts = [
            bytes((self.id, 0, 0, 0)),
            item(0x30, encode_uid(self.abstract_syntax, "abstract syntax")),
        ]
        parts += [item(0x40, encode_uid(ts, "transfer syntax")) for ts in self.transfer_syntaxes]
        return item(self.item_type, b"".join(parts))

    @classmethod
    def decode(cls, view: memoryview) -> PresentationContextRQ:
        context_id, where = _context_head(view, cls.item_type)
        found = decode_items(
            view[4:],
            where,
            {
                ItemType.ABSTRACT_SYNTAX: partial(decode_uid, what=f"abstract syntax of {where}"),
                ItemType.TRANSFER_SYNTAX: partial(decode_uid, what=f"transfer syntax of {where}"),
            },
            once={ItemType.ABSTRACT_SYNTAX: "abstract syntax"},
            most=MAX_CONTEXT_SUB_ITEMS,
        )
        if ItemType.ABSTRACT_SYNTAX not in found:
            raise PDUError(f"{where} has no abstract syntax sub-item")
        if ItemType.TRANSFER_SYNTAX not in found:
            raise PDUError(f"{where} has no transfer syntax sub-item")
        abstract: str = found[ItemType.ABSTRACT_SYNTAX][0]
        transfer = tuple(found[ItemType.TRANSFER_SYNTAX])
        return cls(context_id, abstract, transfer)


@dataclass(frozen=True, slots=True)
class PresentationContextAC:
    """Item 0x21: the acceptor's answer for one context (9.3.3.2).

    When ``result`` is not ACCEPTANCE the transfer syntax "shall not be tested"; it
    decodes to ``""`` if absent or unreadable, and ``""`` encodes as an empty sub-item.
    """

    id: int
    result: PresentationResult
    transfer_syntax: str

    item_type: ClassVar[int] = ItemType.PRESENTATION_CONTEXT_AC

    def encode(self) -> bytes:
        check_context_id(self.id)
        try:
            result = PresentationResult(self.result)
        except ValueError:
            raise LocalProtocolError(
                f"presentation context {self.id} result {self.result!r} is not 0..4"
            ) from None
        if result != PresentationResult.ACCEPTANCE and self.transfer_syntax == "":
            ts = b""
        else:
            ts = encode_uid(self.transfer_syntax, "transfer syntax")
        return item(self.item_type, bytes((self.id, 0, result, 0)) + item(0x40, ts))

    @classmethod
    def decode(cls, view: memoryview) -> PresentationContextAC:
        context_id, where = _context_head(view, cls.item_type)
        try:
            result = PresentationResult(view[2])
        except ValueError:
            raise PDUError(f"{where} has result/reason {view[2]}, not one of 0..4") from None
        # Kept raw: a rejected context's transfer syntax "shall not be tested".
        found = decode_items(
            view[4:],
            where,
            {ItemType.TRANSFER_SYNTAX: memoryview},
            once={},
            most=MAX_CONTEXT_SUB_ITEMS,
        )
        raw_ts: list[memoryview] = found.get(ItemType.TRANSFER_SYNTAX, [])
        if len(raw_ts) > 1:
            raise PDUError(f"{where} has {len(raw_ts)} transfer syntax sub-items, not one")
        if result != PresentationResult.ACCEPTANCE:
            return cls(context_id, result, _untested_uid(raw_ts))
        if not raw_ts:
            raise PDUError(f"{where} accepts the context but names no transfer syntax")
        return cls(context_id, result, decode_uid(raw_ts[0], f"transfer syntax of {where}"))


def _untested_uid(raw: list[memoryview]) -> str:
    """The transfer syntax of a rejected context: ``""`` when absent or not a UID."""
    try:
        return decode_uid(raw[0], "") if raw else ""
    except PDUError:
        return ""


@dataclass(frozen=True, slots=True)
class AsyncOpsWindow:
    """Sub-item 0x53 (PS3.7 D.3.3.3): outstanding operations each side may have; 0 = unlimited."""

    invoked: int
    performed: int

    def encode(self) -> bytes:
        for name, value in (("invoked", self.invoked), ("performed", self.performed)):
            if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
                raise LocalProtocolError(f"asynchronous operations window {name} {value!r}")
        return item(0x53, U16.pack(self.invoked) + U16.pack(self.performed))

    @classmethod
    def decode(cls, view: memoryview) -> AsyncOpsWindow:
        if len(view) != 4:
            raise PDUError(f"asynchronous operations window sub-item 0x53 has length {len(view)}")
        return cls(U16.unpack_from(view, 0)[0], U16.unpack_from(view, 2)[0])


def _role(value: int, which: str, where: str) -> bool:
    if value > 1:
        raise PDUError(f"{where} has {which} role {value}, not 0 or 1")
    return value == 1


@dataclass(frozen=True, slots=True)
class RoleSelection:
    """Sub-item 0x54 (PS3.7 D.3.3.4): which of SCU/SCP each side plays for a SOP class."""

    sop_class_uid: str
    scu_role: bool
    scp_role: bool

    def encode(self) -> bytes:
        uid = u16_prefixed(encode_uid(self.sop_class_uid, "role selection SOP class"), "UID")
        return item(0x54, uid + bytes((bool(self.scu_role), bool(self.scp_role))))

    @classmethod
    def decode(cls, view: memoryview) -> RoleSelection:
        where = "SCP/SCU role selection sub-item 0x54"
        uid, pos = read_u16_prefixed(view, 0, "SOP class UID", where)
        if len(view) - pos != 2:
            raise PDUError(f"{where} has {len(view) - pos} bytes after its UID, not 2")
        return cls(
            decode_uid(uid, f"SOP class UID of {where}"),
            _role(view[pos], "SCU", where),
            _role(view[pos + 1], "SCP", where),
        )


@dataclass(frozen=True, slots=True)
class ExtendedNegotiation:
    """Sub-item 0x56 (PS3.7 D.3.3.5): service-class-specific bytes, opaque at this layer."""

    sop_class_uid: str
    service_class_application_information: bytes

    def encode(self) -> bytes:
        uid = encode_uid(self.sop_class_uid, "extended negotiation SOP class")
        return item(
            0x56, u16_prefixed(uid, "UID") + bytes(self.service_class_application_information)
        )

    @classmethod
    def decode(cls, view: memoryview) -> ExtendedNegotiation:
        where = "SOP class extended negotiation sub-item 0x56"
        uid, pos = read_u16_prefixed(view, 0, "SOP class UID", where)
        return cls(decode_uid(uid, f"SOP class UID of {where}"), bytes(view[pos:]))


@dataclass(frozen=True, slots=True)
class CommonExtendedNegotiation:
    """Sub-item 0x57 (PS3.7 D.3.3.6): the service class and related general SOP classes."""

    sop_class_uid: str
    service_class_uid: str
    related_general_sop_class_uids: tuple[str, ...] = ()

    def encode(self) -> bytes:
        related = b"".join(
            u16_prefixed(encode_uid(uid, "related general SOP class"), "UID")
            for uid in self.related_general_sop_class_uids
        )
        return item(
            0x57,
            u16_prefixed(encode_uid(self.sop_class_uid, "common extended SOP class"), "UID")
            + u16_prefixed(encode_uid(self.service_class_uid, "service class"), "UID")
            + u16_prefixed(related, "related general SOP class identification"),
        )

    @classmethod
    def decode(cls, view: memoryview) -> CommonExtendedNegotiation:
        where = "SOP class common extended negotiation sub-item 0x57"
        sop, pos = read_u16_prefixed(view, 0, "SOP class UID", where)
        service, pos = read_u16_prefixed(view, pos, "service class UID", where)
        related_raw, pos = read_u16_prefixed(view, pos, "related SOP class identification", where)
        if pos != len(view):
            raise PDUError(f"{where} has {len(view) - pos} unexplained trailing bytes")
        related: list[str] = []
        rview = memoryview(related_raw)
        rpos = 0
        while rpos < len(rview):
            uid, rpos = read_u16_prefixed(rview, rpos, "related SOP class UID", where)
            related.append(decode_uid(uid, f"related general SOP class UID of {where}"))
        return cls(
            decode_uid(sop, f"SOP class UID of {where}"),
            decode_uid(service, f"service class UID of {where}"),
            tuple(related),
        )


@dataclass(frozen=True, slots=True)
class UserIdentityRQ:
    """Sub-item 0x58 (PS3.7 D.3.3.7.1); the secondary field exists only for username+passcode."""

    type: UserIdentityType
    positive_response_requested: bool
    primary_field: bytes
    secondary_field: bytes = b""

    def __repr__(self) -> str:
        # Never print a passcode or token into a log.
        return (
            f"UserIdentityRQ(type={self.type!r}, positive_response_requested="
            f"{self.positive_response_requested!r}, primary_field=<{len(self.primary_field)} "
            f"bytes>, secondary_field=<{len(self.secondary_field)} bytes>)"
        )

    def encode(self) -> bytes:
        try:
            kind = UserIdentityType(self.type)
        except ValueError:
            raise LocalProtocolError(f"user identity type {self.type!r} is not 1..5") from None
        if self.secondary_field and kind != UserIdentityType.USERNAME_AND_PASSCODE:
            raise LocalProtocolError(
                f"user identity type {kind.name} carries no secondary field (PS3.7 D.3.3.7.1)"
            )
        return item(
            0x58,
            bytes((kind, bool(self.positive_response_requested)))
            + u16_prefixed(bytes(self.primary_field), "user identity primary field")
            + u16_prefixed(bytes(self.secondary_field), "user identity secondary field"),
        )

    @classmethod
    def decode(cls, view: memoryview) -> UserIdentityRQ:
        where = "user identity sub-item 0x58"
        if len(view) < 2:
            raise PDUError(f"{where} has {len(view)} bytes, fewer than 2")
        try:
            kind = UserIdentityType(view[0])
        except ValueError:
            raise PDUError(f"{where} has user identity type {view[0]}, not 1..5") from None
        if view[1] > 1:
            raise PDUError(f"{where} has positive-response-requested {view[1]}, not 0 or 1")
        primary, pos = read_u16_prefixed(view, 2, "primary field", where)
        secondary, pos = read_u16_prefixed(view, pos, "secondary field", where)
        if pos != len(view):
            raise PDUError(f"{where} has {len(view) - pos} unexplained trailing bytes")
        if secondary and kind != UserIdentityType.USERNAME_AND_PASSCODE:
            raise PDUError(f"{where} of type {kind.name} has a secondary field")
        return cls(kind, view[1] == 1, primary, secondary)


@dataclass(frozen=True, slots=True)
class UserIdentityAC:
    """Sub-item 0x59 (PS3.7 D.3.3.7.2): the acceptor's server response."""

    server_response: bytes

    def __repr__(self) -> str:
        return f"UserIdentityAC(server_response=<{len(self.server_response)} bytes>)"

    def encode(self) -> bytes:
        return item(0x59, u16_prefixed(bytes(self.server_response), "server response"))

    @classmethod
    def decode(cls, view: memoryview) -> UserIdentityAC:
        where = "user identity sub-item 0x59"
        response, pos = read_u16_prefixed(view, 0, "server response", where)
        if pos != len(view):
            raise PDUError(f"{where} has {len(view) - pos} unexplained trailing bytes")
        return cls(response)


@dataclass(frozen=True, slots=True)
class RawSubItem:
    """A user-information sub-item this codec does not know, kept verbatim (PS3.8 D.2 note 2)."""

    type: int
    data: bytes

    def encode(self) -> bytes:
        if not isinstance(self.type, int) or not 0 <= self.type <= 0xFF:
            raise LocalProtocolError(f"sub-item type {self.type!r} does not fit in one byte")
        if self.type in _KNOWN_SUB_ITEMS:
            raise LocalProtocolError(
                f"sub-item type 0x{self.type:02X} has its own field in UserInformation"
            )
        return item(self.type, bytes(self.data))


def _decode_version_name(view: memoryview) -> str:
    text = bytes(view).rstrip(b"\x00 ").decode("ascii", "replace")
    if not 1 <= len(text) <= 16 or any(not " " <= c <= "~" for c in text):
        raise PDUError(
            f"implementation version name {bytes(view)[:40]!r} is not 1 to 16 ASCII characters"
        )
    return text


def _encode_version_name(name: str) -> bytes:
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= 16
        or any(not " " <= c <= "~" for c in name)
    ):
        raise LocalProtocolError(
            f"implementation version name {name!r} is not 1 to 16 printable ASCII characters"
        )
    return name.encode("ascii")


@dataclass(frozen=True, slots=True)
class UserInformation:
    """Item 0x50 (PS3.8 9.3.2.3, Annex D) with one field per sub-item the standard defines.

    ``max_length`` (0x51, 0 = unlimited) and ``implementation_class_uid`` (0x52) are
    mandatory in PS3.7 D.3.3.1-2, so they are required here too. Sub-items are encoded in
    ascending type order, which PS3.8 9.3.2.3 recommends for older peers; unknown
    sub-items come last.
    """

    max_length: int
    implementation_class_uid: str
    implementation_version_name: str | None = None
    async_ops_window: AsyncOpsWindow | None = None
    role_selections: tuple[RoleSelection, ...] = ()
    extended_negotiations: tuple[ExtendedNegotiation, ...] = ()
    common_extended_negotiations: tuple[CommonExtendedNegotiation, ...] = ()
    user_identity: UserIdentityRQ | UserIdentityAC | None = None
    unknown: tuple[RawSubItem, ...] = ()

    item_type: ClassVar[int] = ItemType.USER_INFORMATION

    def encode(self) -> bytes:
        if not isinstance(self.max_length, int) or not 0 <= self.max_length <= 0xFFFFFFFF:
            raise LocalProtocolError(f"maximum length {self.max_length!r} is not 0..2**32-1")
        parts = [
            item(0x51, U32.pack(self.max_length)),
            item(0x52, encode_uid(self.implementation_class_uid, "implementation class UID")),
        ]
        if self.async_ops_window is not None:
            parts.append(self.async_ops_window.encode())
        parts += [r.encode() for r in self.role_selections]
        if self.implementation_version_name is not None:
            parts.append(item(0x55, _encode_version_name(self.implementation_version_name)))
        parts += [e.encode() for e in self.extended_negotiations]
        parts += [c.encode() for c in self.common_extended_negotiations]
        if self.user_identity is not None:
            parts.append(self.user_identity.encode())
        parts += [u.encode() for u in self.unknown]
        return item(self.item_type, b"".join(parts))

    @classmethod
    def decode(cls, view: memoryview, identity_type: int) -> UserInformation:
        """Decode the value of item 0x50; ``identity_type`` is 0x58 in an RQ, 0x59 in an AC."""
        where = "user information item 0x50"
        found, unknown = _sub_items(view, where, identity_type)
        if 0x51 not in found:
            raise PDUError(f"{where} has no maximum length sub-item 0x51 (PS3.8 D.1)")
        if 0x52 not in found:
            raise PDUError(f"{where} has no implementation class UID sub-item 0x52 (PS3.7 D.3.3.2)")
        return cls(
            max_length=found[0x51][0],
            implementation_class_uid=found[0x52][0],
            implementation_version_name=_single(found, 0x55),
            async_ops_window=_single(found, 0x53),
            role_selections=tuple(found.get(0x54, ())),
            extended_negotiations=tuple(found.get(0x56, ())),
            common_extended_negotiations=tuple(found.get(0x57, ())),
            user_identity=_single(found, identity_type),
            unknown=tuple(unknown),
        )


def _decode_max_length(view: memoryview) -> int:
    if len(view) != 4:
        raise PDUError(f"maximum length sub-item 0x51 has length {len(view)}, not 4")
    length: int = U32.unpack_from(view)[0]
    return length


#: How each user-information sub-item the standard defines is read.
_SUB_ITEM_DECODERS: dict[int, Callable[[memoryview], Any]] = {
    0x51: _decode_max_length,
    0x52: partial(decode_uid, what="implementation class UID"),
    0x53: AsyncOpsWindow.decode,
    0x54: RoleSelection.decode,
    0x55: _decode_version_name,
    0x56: ExtendedNegotiation.decode,
    0x57: CommonExtendedNegotiation.decode,
    0x58: UserIdentityRQ.decode,
    0x59: UserIdentityAC.decode,
}


def _sub_items(
    view: memoryview, where: str, identity_type: int
) -> tuple[dict[int, list[Any]], list[RawSubItem]]:
    """The sub-items decoded, by type, and the ones this codec does not know, verbatim."""
    found: dict[int, list[Any]] = {}
    unknown: list[RawSubItem] = []
    # Its 16-bit length bounds the item to 64 KiB, 16,384 sub-items: no bound of ours needed.
    for sub_type, value in iter_items(view, where, most=len(view)):
        decoder = _SUB_ITEM_DECODERS.get(sub_type)
        if decoder is None:
            unknown.append(RawSubItem(sub_type, bytes(value)))
            continue
        values = found.setdefault(sub_type, [])
        if values and sub_type in _SINGLE_SUB_ITEMS:
            raise PDUError(f"{where} has more than one sub-item 0x{sub_type:02X}", UNEXPECTED)
        if sub_type in (0x58, 0x59) and sub_type != identity_type:
            other = "A-ASSOCIATE-AC" if sub_type == 0x59 else "A-ASSOCIATE-RQ"
            raise PDUError(
                f"user identity sub-item 0x{sub_type:02X} belongs in an {other} only", UNEXPECTED
            )
        values.append(decoder(value))
    return found, unknown


def _single(found: dict[int, list[Any]], sub_type: int) -> Any:
    """The sub-item of ``sub_type`` (one that may appear once), or None when it is absent."""
    values = found.get(sub_type)
    return values[0] if values else None


_SINGLE_SUB_ITEMS = frozenset({0x51, 0x52, 0x53, 0x55, 0x58, 0x59})
_KNOWN_SUB_ITEMS = frozenset(range(0x51, 0x5A))
